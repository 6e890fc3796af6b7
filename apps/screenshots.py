"""Screenshots of the demo's pages for the docs, taken in headless Chromium once each page has rendered.

    python apps/screenshots.py                      # saved_models/ -> docs/demo_{text,mask,image,completion,translation}.png
    python apps/screenshots.py --models DIR --out DIR --prompt "ROMEO:"

Needs /usr/bin/chromium (Debian: apt-get install -y chromium). Starts its own Streamlit server on a free
127.0.0.1 port and stops it, and the browser, when done.
"""

import argparse
import os
import sys
import time

from browser import Chromium, StreamlitServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def settle(browser, seconds=2.0):
    """Charts draw after their element appears: wait until every Vega chart has its canvas, then a little more."""
    browser.wait_until(
        "[...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
        ".every(c => c.querySelector('canvas, svg'))", what="the charts to draw"
    )
    time.sleep(seconds)


def click_when_there(browser, label, timeout=60):
    """Click a button that a page may still be drawing."""
    deadline = time.time() + timeout
    while True:
        try:
            return browser.click(label, "button")
        except LookupError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def take(models_dir, out_dir, prompt, sentence, max_new_tokens):
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with StreamlitServer(models_dir) as server, Chromium(width=1400, height=1100) as browser:
        browser.open(server.url)
        browser.wait_for_text("Text generation", timeout=300)

        browser.wait_for_text("Generate", timeout=300)
        browser.type("textarea", prompt)
        browser.type('input[aria-label^="Max new tokens"]', str(max_new_tokens))
        browser.click("Generate")
        browser.wait_for_text("tokens/s", timeout=300)
        written.append(browser.screenshot(os.path.join(out_dir, "demo_text.png")))

        browser.click("Masked prediction", "[data-testid=stSidebar] label")
        browser.wait_for_text("A sentence with one or more [MASK]", timeout=300)
        if sentence:
            browser.type('input[aria-label^="A sentence"]', sentence)
        browser.wait_for_text("Attention", timeout=300)
        settle(browser)
        written.append(browser.screenshot(os.path.join(out_dir, "demo_mask.png")))

        browser.click("Image classification", "[data-testid=stSidebar] label")
        browser.wait_for_text("True class of test image", timeout=300)
        settle(browser)
        written.append(browser.screenshot(os.path.join(out_dir, "demo_image.png")))

        # The optional pages, when their models are in the folder.
        if "Image completion" in browser.text():
            browser.click("Image completion", "[data-testid=stSidebar] label")
            browser.wait_for_text("Rows given", timeout=300)
            click_when_there(browser, "Complete")
            browser.wait_for_text("completion 1", timeout=300)
            browser.wait_until("[...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", 120, what="the images to load")
            time.sleep(1)
            written.append(browser.screenshot(os.path.join(out_dir, "demo_completion.png")))
        if "Translation" in browser.text():
            browser.click("Translation", "[data-testid=stSidebar] label")
            browser.wait_for_text("Source text", timeout=300)
            click_when_there(browser, "Translate")
            browser.wait_until("!!document.querySelector('[data-testid=stMain] [data-testid=stCode]')", 300, what="the translation")
            browser.idle()
            written.append(browser.screenshot(os.path.join(out_dir, "demo_translation.png")))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=os.path.join(REPO, "saved_models"), help="folder of model directories")
    parser.add_argument("--out", default=os.path.join(REPO, "docs"), help="where the PNGs go")
    parser.add_argument("--prompt", default="ROMEO:", help="the text-generation prompt")
    parser.add_argument("--sentence", default=None, help="the masked sentence (default: the page's)")
    parser.add_argument("--max-new-tokens", type=int, default=300)
    args = parser.parse_args(argv)
    for path in take(args.models, args.out, args.prompt, args.sentence, args.max_new_tokens):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
