"""The Streamlit demo (apps/demo.py) through streamlit.testing's AppTest: every page's happy path and each bad
input, which must end in a message on the page, never in an exception. Models: tests/apps/conftest.py."""

import io
import json
import os
import shutil

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import demo_lib
from tests.apps.conftest import APPS
from tests.bad_inputs import BY_SURFACE, IMAGES, ids

APP = os.path.join(APPS, "demo.py")
TIMEOUT = 180  # seconds per script run: the first one imports TensorFlow and compiles on a shared 2-core machine


@pytest.fixture
def app(demo_models, monkeypatch):
    """A function: the demo on `folder` (default: the tiny models) showing `page`, after its first run."""

    def start(page="Text generation", folder=demo_models):
        monkeypatch.setenv("KERAS_TX_MODELS", folder)
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        if page != "Text generation":
            at.sidebar.radio(key="page").set_value(page).run()
        assert_clean(at)
        return at

    return start


def assert_clean(at, errors=False):
    """No exception on the page (and no error message, unless `errors`)."""
    assert not at.exception, [e.value for e in at.exception]
    if not errors:
        assert not at.error, [e.value for e in at.error]


def error_text(at):
    assert_clean(at, errors=True)
    assert len(at.error) == 1, [e.value for e in at.error]
    return at.error[0].value


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ sidebar


def test_sidebar_names_the_model_and_its_quality(app, demo_models):
    at = app()
    assert f"`{demo_models}`" in at.sidebar.caption[0].value
    assert at.sidebar.markdown[0].value.startswith("**gpt_shakespeare** · gpt")
    with open(os.path.join(demo_models, "gpt_shakespeare", "metadata.json")) as file:
        val_loss = json.load(file)["metrics"]["val_loss"]
    assert at.sidebar.metric[0].label == "validation loss"
    assert at.sidebar.metric[0].value == f"{val_loss:.4f}"
    assert at.sidebar.radio(key="page").options == [
        "Text generation", "Masked prediction", "Image classification", "Image completion", "Translation"
    ]


@pytest.mark.parametrize(
    "page, command",
    [
        ("Text generation", "keras-tx train gpt --text-file ../shared/datasets/tiny_shakespeare/input.txt"),
        ("Masked prediction", "keras-tx train bert --data-dir ../shared/datasets/sst2"),
        ("Image classification", "keras-tx train resnet --data-dir ../shared/datasets/fashion_mnist"),
    ],
)
def test_a_missing_model_shows_the_command_that_trains_it(app, tmp_path, page, command):
    at = app(page, folder=str(tmp_path))
    assert at.warning, "no message about the missing model"
    commands = [c.value for c in at.code]
    assert any(c.startswith(command) and str(tmp_path) in c for c in commands), commands
    options = at.sidebar.radio(key="page").options
    assert "Image completion" not in options and "Translation" not in options  # optional: only with a model


def test_a_broken_model_directory_shows_its_own_training_command(app, demo_models, tmp_path):
    broken = tmp_path / "gpt_shakespeare"
    broken.mkdir()
    shutil.copy(os.path.join(demo_models, "gpt_shakespeare", "metadata.json"), broken)  # but no model.keras
    at = app(folder=str(tmp_path))
    assert any("--text-file" in c.value and "--steps 4" in c.value for c in at.code)


def test_a_model_that_does_not_load_is_explained(demo_models, tmp_path, monkeypatch):
    shutil.copytree(os.path.join(demo_models, "gpt_shakespeare"), tmp_path / "gpt_shakespeare")
    (tmp_path / "gpt_shakespeare" / "model.keras").write_bytes(b"truncated")
    monkeypatch.setenv("KERAS_TX_MODELS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "could not be loaded" in error_text(at)
    assert any("--steps 4" in c.value for c in at.code)


# ------------------------------------------------------------------------------------------- text generation


def generate(at, prompt=None, **settings):
    if prompt is not None:
        at.text_area(key="prompt").set_value(prompt)
    for key, value in settings.items():
        widget = {"sampler": at.selectbox, "max_new_tokens": at.number_input, "seed": at.number_input}[key]
        widget(key=key).set_value(value)
    at.button(key="generate").click().run()
    return at


def generated(at):
    return at.code[0].value


@pytest.mark.parametrize("sampler", ["top_k", "greedy", "top_p", "beam"])
def test_generation_streams_text_and_reports_speed(app, sampler):
    at = generate(app(), "to be", sampler=sampler, max_new_tokens=8)
    assert_clean(at)
    text = generated(at)
    assert text.startswith("to be") and len(text) == len("to be") + 8
    assert any("8 tokens in" in c.value and "tokens/s" in c.value for c in at.caption)


def test_generation_is_reproducible_with_a_seed(app):
    at = generate(app(), "to be", seed=7, max_new_tokens=20)
    first = generated(at)
    assert generated(generate(at)) == first
    assert generated(generate(at, seed=8)) != first


def test_generation_goes_past_the_context(app):
    at = generate(app(), "to be", max_new_tokens=40, sampler="greedy")  # the tiny model's context is 16
    assert_clean(at)
    assert len(generated(at)) == 45


def test_text_is_streamed_token_by_token_and_equals_generate_ids(demo_models):
    from keras_tx import tasks

    task = tasks.load(os.path.join(demo_models, "gpt_shakespeare"))
    ids, _ = task.prompt_ids("to be", 40)
    pieces = list(task.stream(ids, 40, sampler="greedy"))
    assert [count for _, count in pieces] == [1] * 40  # past the context of 16 too: in chunks, still one by one
    expected = task.generate_ids(ids, 40, sampler="greedy")
    assert "".join(piece for piece, _ in pieces) == task.tokenizer.decode(expected[len(ids):])


def test_an_empty_prompt_is_refused(app):
    assert "empty" in error_text(generate(app(), ""))


def test_unknown_characters_are_named(app):
    message = error_text(generate(app(), "to be Ωmega"))
    assert "'Ω'" in message and "'m'" not in message


def test_a_long_prompt_is_trimmed_and_the_page_says_so(app):
    at = generate(app(), "to be or not to be " * 10, max_new_tokens=5)
    assert_clean(at)
    assert "only its last" in at.info[0].value
    assert len(generated(at)) < 190


def test_max_new_tokens_is_bounded_by_the_widget(app):
    at = app()
    widget = at.number_input(key="max_new_tokens")
    assert widget.max == demo_lib.MAX_NEW_TOKENS
    widget.set_value(10**9)
    at.run()
    assert at.number_input(key="max_new_tokens").value <= demo_lib.MAX_NEW_TOKENS


# ----------------------------------------------------------------------------------------- masked prediction


def charts(at):
    return at.get("vega_lite_chart")


def chart_rows(chart):
    """The data of an Altair chart on the page, as a list of dicts (Streamlit sends it as Arrow IPC)."""
    import pyarrow

    (dataset,) = chart.proto.datasets
    return pyarrow.ipc.open_stream(dataset.data.data).read_all().to_pylist()


def test_masked_prediction_shows_candidates_and_attention(app):
    at = app("Masked prediction")
    at.text_input(key="masked_text").set_value("the cat [MASK] on the [mask] .").run()
    at.slider(key="mask_top_k").set_value(3).run()
    assert_clean(at)
    assert len(charts(at)) == 3  # one chart per [MASK] ([mask] counts too), then the attention heat map
    assert [len(chart_rows(chart)) for chart in charts(at)[:2]] == [3, 3]
    at.selectbox(key="layer").set_value(2).run()
    at.selectbox(key="head").set_value(1).run()
    assert_clean(at)
    rows = chart_rows(charts(at)[-1])
    assert len(rows) == 9 * 9  # [CLS] the cat [MASK] on the [MASK] . [SEP]
    assert {r["query"] for r in rows} >= {"0 [CLS]", "3 [MASK]", "8 [SEP]"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("the cat sat on the mat .", "no [MASK]"),
        ("[MASK] [MASK] [MASK] [MASK]", "At most 3"),
        ("the cat " * 20 + "[MASK]", "max_length=32"),
    ],
)
def test_bad_masked_text_gets_a_message(app, text, expected):
    at = app("Masked prediction")
    at.text_input(key="masked_text").set_value(text).run()
    assert expected in error_text(at)
    assert not charts(at)


# --------------------------------------------------------------------------------------- image classification


def predictions_shown(at):
    assert_clean(at)
    titles = [json.loads(c.proto.spec)["title"] for c in charts(at)]
    assert [t.split(":")[0] for t in titles] == ["ViT", "ResNet"], titles
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert captions[0] == "what the models see" and captions[1].startswith("ViT attention rollout")
    return at


def upload(at, name, data, mime="image/png"):
    at.radio(key="image_source").set_value("Upload an image").run()
    at.file_uploader(key="upload").set_value((name, data, mime)).run()
    return at


def test_a_test_image_is_classified_by_both_models(app):
    at = predictions_shown(app("Image classification"))
    assert at.markdown[0].value.startswith("True class of test image 0:")
    at.number_input(key="test_index").set_value(5).run()
    predictions_shown(at)
    assert at.markdown[0].value.startswith("True class of test image 5:")


@pytest.mark.parametrize(
    "name, image, note",
    [
        ("grey.png", Image.new("L", (16, 16), 128), None),  # already what the models take
        ("photo.png", Image.new("RGB", (60, 40), (200, 30, 30)), "resized from 60x40 to 16x16"),
        ("logo.png", Image.new("RGBA", (32, 32), (0, 0, 255, 100)), "transparency (RGBA)"),
        ("palette.png", Image.new("P", (16, 16), 3), "colours (P) become grey"),
    ],
)
def test_uploaded_images_of_any_mode_are_classified(app, name, image, note):
    at = predictions_shown(upload(app("Image classification"), name, png(image)))
    infos = [i.value for i in at.info]
    assert (note is None and not infos) or any(note in i for i in infos), infos


def test_a_huge_photo_is_scaled_down(app):
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 4000), (10, 200, 10)).save(buffer, format="JPEG")
    at = predictions_shown(upload(app("Image classification"), "huge.jpg", buffer.getvalue(), "image/jpeg"))
    assert "from 6000x4000 to 16x16" in at.info[0].value


def test_a_decompression_bomb_is_refused(app):
    bomb = png(Image.new("1", (20000, 20000)))  # 400 million pixels in a few kB
    message = error_text(upload(app("Image classification"), "bomb.png", bomb))
    assert "bomb.png" in message and "too large" in message


def test_a_file_that_is_not_an_image_is_named(app):
    message = error_text(upload(app("Image classification"), "notes.png", b"this is not a picture"))
    assert message.startswith("notes.png is not an image")
    assert not charts(app("Image classification").radio(key="image_source").set_value("Upload an image").run())


def test_a_file_over_the_size_limit_is_refused(app):
    data = b"\0" * (demo_lib.MAX_UPLOAD_MB * 2**20 + 1)
    assert f"up to {demo_lib.MAX_UPLOAD_MB} MB" in error_text(upload(app("Image classification"), "big.png", data))


def test_one_missing_classifier_leaves_the_other(app, demo_models, tmp_path):
    shutil.copytree(os.path.join(demo_models, "resnet_fashion_mnist"), tmp_path / "resnet_fashion_mnist")
    at = app("Image classification", folder=str(tmp_path))
    assert any(c.value.startswith("keras-tx train vit") for c in at.code)
    titles = [json.loads(c.proto.spec)["title"] for c in charts(at)]
    assert [t.split(":")[0] for t in titles] == ["ResNet"]
    assert [i.proto.imgs[0].caption for i in at.get("image")] == ["what the models see"]  # no rollout without ViT


# ------------------------------------------------------------------------------------------- image completion


def test_image_gpt_completes_a_test_image(app):
    at = app("Image completion")
    at.slider(key="keep_rows").set_value(2)
    at.slider(key="num_samples").set_value(2)
    at.button(key="complete").click().run()
    assert_clean(at)
    captions = [img.caption for image in at.get("image") for img in image.proto.imgs]
    assert captions == ["input (quantized)", "completion 1", "completion 2"]


# ---------------------------------------------------------------------------------------------- the launcher


def test_demo_runner_starts_streamlit_on_the_models(monkeypatch, tmp_path):
    from keras_tx import cli, demo_runner

    started = {}

    class FakeProcess:
        def __init__(self, command, env, cwd):
            started.update(command=command, env=env, cwd=cwd)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(demo_runner.subprocess, "Popen", FakeProcess)
    assert cli.main(["demo", "--port", "8765", "--models", str(tmp_path)]) == 0
    command = started["command"]
    assert command[1:5] == ["-m", "streamlit", "run", demo_runner.APP]
    assert command[command.index("--server.port") + 1] == "8765"
    assert command[command.index("--server.address") + 1] == "localhost"
    assert command[command.index("--server.headless") + 1] == "true"
    assert started["env"]["KERAS_TX_MODELS"] == str(tmp_path)
    assert started["cwd"] == demo_runner.REPO


def test_demo_runner_without_the_app_says_why(monkeypatch, tmp_path, capsys):
    from keras_tx import cli, demo_runner

    monkeypatch.setattr(demo_runner, "APP", str(tmp_path / "apps" / "demo.py"))
    with pytest.raises(ValueError, match="installed without its repository"):
        demo_runner.run()
    assert cli.main(["demo"]) == 2
    assert "installed without its repository" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a directory"):
        monkeypatch.setattr(demo_runner, "APP", __file__)
        demo_runner.run(models_dir=str(tmp_path / "nowhere"))


def test_models_folder_defaults_to_saved_models(monkeypatch):
    monkeypatch.delenv("KERAS_TX_MODELS", raising=False)
    assert demo_lib.models_dir() == os.path.join(os.path.dirname(APPS), "saved_models")
    monkeypatch.setenv("KERAS_TX_MODELS", "/somewhere")
    assert demo_lib.models_dir() == "/somewhere"


# ------------------------------------------------------------------------------------------------ translation


@pytest.fixture
def translation(app, demo_models):
    if not os.path.isdir(os.path.join(demo_models, "transformer_multi30k")):
        pytest.skip("keras_tx.data.translation is not importable: no translation model to show")
    return app("Translation")


def translate(at, text, **settings):
    at.text_area(key="source_text").set_value(text)
    for key, value in settings.items():
        {"sampler": at.radio(key="translation_sampler"), "truncate": at.checkbox(key="truncate")}[key].set_value(value)
    at.button(key="translate").click().run()
    return at


@pytest.mark.parametrize("sampler", ["greedy", "beam"])
def test_translation_translates(translation, sampler):
    at = translate(translation, "ein mann fahrt fahrrad .", sampler=sampler)
    assert_clean(at)
    assert [m.value for m in at.main.markdown] == ["**Translation**"] and isinstance(at.main.code[0].value, str)


@pytest.mark.parametrize("text, expected", [("", "empty"), ("ein mann " * 5, "max_source_length=6")])
def test_bad_source_text_gets_a_message(translation, text, expected):
    assert expected in error_text(translate(translation, text))


def test_a_long_source_can_be_cut_to_fit(translation):
    assert_clean(translate(translation, "ein mann " * 5, truncate=True))


# --------------------------------------------------------------------------- the bad-input battery, on the page


@pytest.mark.parametrize("case", BY_SURFACE["demo"], ids=ids(BY_SURFACE["demo"]))
def test_bad_input_battery(app, demo_models, case):
    """tests/bad_inputs.py: a message with the sentence the CLI and the API give, or, where they accept the input,
    the page's answer."""
    kind, value = case.demo
    if kind == "generate":
        at = generate(app(), value, max_new_tokens=5)
    elif kind == "mask":
        at = app("Masked prediction")
        at.text_input(key="masked_text").set_value(value).run()
    elif kind == "upload":
        at = upload(app("Image classification"), f"{value}.png", IMAGES[value]())
    else:
        if not os.path.isdir(os.path.join(demo_models, "transformer_multi30k")):
            pytest.skip("no translation model in the demo's test models")
        at = translate(app("Translation"), value)
    if case.expect is None:
        assert_clean(at)
        assert charts(at) or at.code
    else:
        assert case.expect in error_text(at)


def test_imported_models_are_listed_beside_the_others(app, demo_models, tmp_path):
    """`keras-tx demo --models FOLDER DIR`: a model directory `keras-tx import` wrote appears beside a folder's
    models, and its page generates what keras-hub's GPT2CausalLM does (the <|endoftext|> start token left out)."""
    import keras_hub

    from keras_tx import cli, tasks
    from tests import tiny_presets

    preset = tiny_presets.gpt2_preset(str(tmp_path / "preset"))
    out = str(tmp_path / "gpt2")
    assert cli.main(["import", preset, "--out", out]) == 0
    at = app(folder=os.pathsep.join([demo_models, out]))
    at.sidebar.selectbox(key="model_Language model").set_value("gpt2").run()
    assert_clean(at)
    assert any("imported from" in c.value and "byte-level BPE" in c.value for c in at.caption)
    at = generate(at, "Hello world", sampler="greedy", max_new_tokens=8)
    assert_clean(at)
    lm = keras_hub.models.GPT2CausalLM.from_preset(preset)
    lm.compile(sampler="greedy")
    ids, _ = tasks.load(out).prompt_ids("Hello world", 8)
    assert generated(at) == lm.generate("Hello world", max_length=len(ids) + 8)


def test_the_hint_for_a_missing_model_is_its_makefile_command():
    from tests.test_shipped_commands import RUNTIME, _arguments, _makefile_commands

    makefile = [_arguments(line, drop=tuple(RUNTIME)) for line in _makefile_commands()]
    for name, command in demo_lib.TRAINING_COMMANDS.items():
        assert _arguments(command.format(out="x"), drop=tuple(RUNTIME)) in makefile, name
