"""The demo in a real browser: `streamlit run apps/demo.py` on the tiny models, driven by headless Chromium.

What AppTest cannot see: the page renders, typing and clicking reach the script, an upload goes through the
server. Screenshots are kept in artifacts/ (git-ignored) for a person to look at.
"""

import os

import pytest
from PIL import Image

from browser import CHROMIUM, Chromium, StreamlitServer
from tests.apps.conftest import APPS

ARTIFACTS = os.path.join(os.path.dirname(APPS), "artifacts")

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is not installed (apt-get install -y chromium; CI installs it in .ci/run)",
)


@pytest.fixture(scope="module")
def page(demo_models):
    """Chromium showing the demo, served from the tiny models; both stopped at the end, even after a failure.
    The server's log goes to artifacts/browser_streamlit.log."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    log = os.path.join(ARTIFACTS, "browser_streamlit.log")
    with StreamlitServer(demo_models, log_path=log) as server, Chromium() as browser:
        browser.open(server.url)
        browser.wait_for_text("Generate", timeout=240)  # the first run imports TensorFlow and loads the GPT
        yield browser


def go_to(page, name, text):
    """Open a page of the demo from the sidebar (each test does: under pytest-xdist they may run anywhere)."""
    page.click(name, "[data-testid=stSidebar] label")
    page.wait_for_text(text, timeout=180)


def test_typing_a_prompt_and_generating_shows_text(page):
    go_to(page, "Text generation", "Generate")
    page.screenshot(os.path.join(ARTIFACTS, "browser_start.png"))
    page.type("textarea", "to be or")
    page.wait_until("document.querySelector('textarea').value === 'to be or'", what="the prompt to be typed")
    page.click("Generate")
    page.wait_for_text("tokens/s", timeout=180)
    output = page.evaluate("[...document.querySelectorAll('[data-testid=stCode] code')]"
                           ".filter(e => !e.closest('[data-testid=stSidebar]')).map(e => e.innerText)")
    assert output and output[0].startswith("to be or") and len(output[0]) > len("to be or") + 100
    page.screenshot(os.path.join(ARTIFACTS, "browser_text.png"))


def test_uploading_an_image_shows_predictions(page, tmp_path):
    image = tmp_path / "shirt.png"
    Image.new("RGB", (60, 40), (200, 30, 30)).save(image)
    go_to(page, "Image classification", "A test image")
    page.click("Upload an image", "label")
    page.upload([image])
    page.wait_for_text("ViT attention rollout", timeout=180)
    text = page.text()
    assert "shirt.png" in text and "resized from 60x40 to 16x16" in text
    assert page.evaluate("document.querySelectorAll('[data-testid=stVegaLiteChart]').length") == 2
    page.screenshot(os.path.join(ARTIFACTS, "browser_image.png"))


def test_a_bad_upload_is_a_message_not_a_trace(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    go_to(page, "Image classification", "A test image")
    page.click("Upload an image", "label")
    page.upload([bad])
    page.wait_for_text("notes.png is not an image", timeout=120)
    assert "Traceback" not in page.text()
    page.screenshot(os.path.join(ARTIFACTS, "browser_bad_upload.png"))
