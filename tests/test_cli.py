"""`keras-tx` end to end on tiny data: train, use, evaluate, bad input, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40)
TINY_GPT = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--context", "16", "--batch-size", "4",
            "--eval-batches", "2", "--no-tensorboard", "--verbose", "0", "--warmup-steps", "2"]


def keras_tx(*args, check=True, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "keras_tx.cli", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def keras_tx_here(*args):
    """`keras-tx ARGS` in this process, for refusals (which load nothing that lingers): a CompletedProcess, as
    `keras_tx` returns. The process-level promise (one line on stderr, no TensorFlow chatter) is checked by the
    subprocess runs and tests/test_first_contact.py."""
    import contextlib
    import io

    from keras_tx import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def one_line_error(result):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "input.txt"
    path.write_text(CORPUS)
    return path


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("runs") / "gpt"
    keras_tx("train", "gpt", "--text-file", corpus, "--steps", 8, "--eval-interval", 4, "--out", out, *TINY_GPT)
    return out


def test_train_gpt_writes_a_model_directory(gpt_dir):
    metadata = json.loads((gpt_dir / "metadata.json").read_text())
    assert metadata["kind"] == "language_model" and metadata["architecture"] == "gpt"
    assert metadata["command"].startswith("keras-tx train gpt")
    assert metadata["metrics"]["val_loss"] > 0 and metadata["parameters"] > 0
    history = json.loads((gpt_dir / "history.json").read_text())
    assert [r["step"] for r in history] == [4, 8]
    assert history[-1]["loss"] < history[0]["loss"] or history[-1]["val_loss"] < history[0]["val_loss"]
    assert (gpt_dir / "tokenizer.json").exists() and not (gpt_dir / "backup").exists()


def test_generate(gpt_dir, capsys):
    out = keras_tx("generate", gpt_dir, "--prompt", "All:", "--max-new-tokens", 20, "--sampler", "greedy").stdout
    assert out.startswith("All:") and len(out.rstrip("\n")) >= 4 + 20 - 1
    from keras_tx import cli

    for sampler in ("top_k", "top_p", "random", "beam"):  # in-process: the process itself is checked above
        argv = ["generate", str(gpt_dir), "--prompt", "Sp", "--max-new-tokens", "5", "--sampler", sampler,
                "--seed", "1"]
        assert cli.main(argv) == 0 and capsys.readouterr().out.startswith("Sp")


def test_generate_longer_than_the_context(gpt_dir):
    out = keras_tx("generate", gpt_dir, "--prompt", "All:", "--max-new-tokens", 40, "--sampler", "greedy").stdout
    assert len(out.rstrip("\n")) >= 44 - 1


def test_generate_trims_a_long_prompt_and_says_so(gpt_dir):
    result = keras_tx("generate", gpt_dir, "--prompt", "speak " * 20, "--max-new-tokens", 4)
    assert "only its last" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prompt", "Zürich"], "not in the vocabulary"),
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "All", "--max-new-tokens", "999999"], "--max-new-tokens"),
    ],
)
def test_generate_bad_input(gpt_dir, args, message):
    assert message in one_line_error(keras_tx_here("generate", gpt_dir, *args))


def test_not_a_model_directory(tmp_path):
    assert "is not a directory" in one_line_error(keras_tx_here("generate", tmp_path / "missing", "--prompt", "a"))
    (tmp_path / "empty").mkdir()
    assert "no model.keras" in one_line_error(keras_tx_here("generate", tmp_path / "empty", "--prompt", "a"))


def test_truncated_model_file(gpt_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("metadata.json", "tokenizer.json"):
        (broken / name).write_bytes((gpt_dir / name).read_bytes())
    data = (gpt_dir / "model.keras").read_bytes()
    (broken / "model.keras").write_bytes(data[: len(data) // 2])
    assert "could not be loaded" in one_line_error(keras_tx("generate", broken, "--prompt", "a", check=False))


def test_evaluate_prints_one_json_line(gpt_dir, corpus):
    line = keras_tx("evaluate", gpt_dir, "--text-file", corpus, "--batches", 2).stdout.strip()
    assert json.loads(line)["val_loss"] > 0


def test_missing_text_file(tmp_path):
    result = keras_tx("train", "gpt", "--text-file", tmp_path / "nope.txt", "--out", tmp_path / "o", *TINY_GPT,
                      check=False)
    one_line_error(result)


def test_train_lstm_on_the_embedded_default(tmp_path):
    out = tmp_path / "lstm"
    keras_tx("train", "lstm", "--units", 16, "--embedding-dim", 8, "--context", 16, "--batch-size", 4, "--steps", 2,
             "--eval-interval", 2, "--eval-batches", 1, "--no-tensorboard", "--verbose", 0, "--out", out)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["dataset"] == "pydoc_topics" and metadata["architecture"] == "lstm"
    assert keras_tx("generate", out, "--prompt", "The", "--max-new-tokens", 5).stdout.startswith("The")


def test_kill_9_and_rerun_resumes_to_the_same_weights(tmp_path, corpus):
    args = ["train", "gpt", "--text-file", corpus, "--steps", 12, "--eval-interval", 2, *TINY_GPT, "--deterministic"]
    keras_tx(*args, "--out", tmp_path / "straight")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "keras_tx.cli", *map(str, args), "--out", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "backup" / "latest").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.keras").exists(), "the run finished before it could be killed"
    result = keras_tx(*args, "--out", killed)
    assert "Resuming from the backup at step" in result.stdout
    import importlib

    import keras

    importlib.import_module("keras_tx.models")  # registers GPT for loading

    weights = [keras.saving.load_model(d / "model.keras").get_weights() for d in (tmp_path / "straight", killed)]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "resnet"
    keras_tx("train", "resnet", "--epochs", 1, "--width", 4, "--blocks-per-stage", 1, "--batch-size", 64,
             "--no-tensorboard", "--verbose", 0, "--out", out)
    return out


def test_classify_images_of_any_mode_and_size(resnet_dir, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, mode, size in (("rgba.png", "RGBA", (300, 200)), ("grey.jpg", "L", (17, 33)), ("big.png", "RGB", (2000, 1500))):
        channels = {"RGBA": 4, "L": 1, "RGB": 3}[mode]
        pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(), mode).save(tmp_path / name)
        paths.append(tmp_path / name)
    lines = keras_tx("classify", resnet_dir, *paths).stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.count(" 0.") >= 1 for line in lines)
    line = json.loads(keras_tx("evaluate", resnet_dir).stdout)
    assert 0 <= line["test_accuracy"] <= 1


def test_classify_a_file_that_is_not_an_image(resnet_dir, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    assert "not an image" in one_line_error(keras_tx("classify", resnet_dir, tmp_path / "notes.png", check=False))


def test_wrong_kind_of_model(resnet_dir):
    assert "not a language model" in one_line_error(keras_tx("generate", resnet_dir, "--prompt", "a", check=False))
