"""`keras-tx train igpt`, `keras-tx complete` and `keras-tx evaluate` on an image GPT, end to end on tiny data."""

import gzip
import json
import math
import struct

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import keras_tx, keras_tx_here, one_line_error

TINY_IGPT = ["--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--num-colors", "8", "--epochs", "2",
             "--batch-size", "64", "--warmup-steps", "2", "--test-size", "64", "--no-tensorboard", "--verbose", "0"]
GRID = 8  # the digits' 16x16 images become an 8x8 token grid by default


@pytest.fixture(scope="module")
def igpt_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "igpt"
    keras_tx("train", "igpt", *TINY_IGPT, "--out", out)
    return out


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    """A digit as a user would have it: RGBA, 80x80, not the training size."""
    from sklearn.datasets import load_digits

    pixels = np.kron(load_digits().images[3] * (255 / 16), np.ones((10, 10))).astype("uint8")  # (80, 80)
    path = tmp_path_factory.mktemp("images") / "digit.png"
    Image.fromarray(pixels).convert("RGBA").save(path)
    return path


def tiles(path, count):
    """The `count` tiles of a completion grid PNG, each (GRID, GRID) at one value per token-grid pixel."""
    image = np.asarray(Image.open(path))  # (h * scale, (count * (GRID + 1) - 1) * scale)
    scale = image.shape[1] // (count * (GRID + 1) - 1)
    assert image.shape == (GRID * scale, (count * (GRID + 1) - 1) * scale)
    cells = image[::scale, ::scale]  # one value per grid pixel (blocks are uniform)
    return [cells[:, i * (GRID + 1) : i * (GRID + 1) + GRID] for i in range(count)]


def test_train_igpt_writes_a_model_directory(igpt_dir):
    metadata = json.loads((igpt_dir / "metadata.json").read_text())
    assert metadata["kind"] == "image_gpt" and metadata["architecture"] == "igpt"
    assert metadata["command"].startswith("keras-tx train igpt") and metadata["dataset"] == "digits"
    assert metadata["token_grid"] == [GRID, GRID] and metadata["image_shape"] == [16, 16, 1]
    assert metadata["num_colors"] == 8 and len(metadata["config"]["palette"]) == 8
    metrics = metadata["metrics"]
    assert 0 < metrics["test_nll_nats_per_pixel"] < math.log(9) + 0.5  # near or below a uniform guess
    assert metrics["test_nll_bits_per_pixel"] == pytest.approx(metrics["test_nll_nats_per_pixel"] / math.log(2),
                                                               abs=1e-3)
    history = json.loads((igpt_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history[-1]["loss"] < history[0]["loss"]
    assert (igpt_dir / "model.keras").exists() and not (igpt_dir / "backup").exists()


def test_evaluate_prints_the_test_nll(igpt_dir):
    line = json.loads(keras_tx("evaluate", igpt_dir).stdout)
    metadata = json.loads((igpt_dir / "metadata.json").read_text())
    assert line["test_images"] == 64
    assert line["test_nll_nats_per_pixel"] == pytest.approx(metadata["metrics"]["test_nll_nats_per_pixel"], abs=1e-3)


def test_complete_keeps_the_given_rows_and_is_reproducible(igpt_dir, digit_png, tmp_path):
    args = ["complete", igpt_dir, digit_png, "--keep-rows", 3, "--num-samples", 3, "--seed", 5]
    assert "wrote" in keras_tx(*args, "--out", tmp_path / "a.png").stdout
    keras_tx(*args, "--out", tmp_path / "b.png")
    given, kept, *completions = tiles(tmp_path / "a.png", 5)
    np.testing.assert_array_equal(kept[:3], given[:3])
    assert (kept[3:] == 128).all()  # the rows to be completed, shown grey
    for completion in completions:
        np.testing.assert_array_equal(completion[:3], given[:3])
    np.testing.assert_array_equal(*(np.asarray(Image.open(tmp_path / name)) for name in ("a.png", "b.png")))


def test_complete_never_overwrites_without_force(igpt_dir, digit_png, tmp_path):
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's own file")
    message = one_line_error(keras_tx("complete", igpt_dir, digit_png, "--out", out, check=False))
    assert "exists" in message and out.read_bytes() == b"the user's own file"
    keras_tx("complete", igpt_dir, digit_png, "--out", out, "--num-samples", 1, "--force")
    assert len(tiles(out, 3)) == 3


def test_complete_bad_input(igpt_dir, digit_png, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    data = digit_png.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    for image, message in (("notes.png", "not an image"), ("truncated.png", "not an image"),
                           ("missing.png", "no such file")):
        result = keras_tx_here("complete", igpt_dir, tmp_path / image, "--out", tmp_path / "out.png")
        assert message in one_line_error(result)
        assert not (tmp_path / "out.png").exists()
    result = keras_tx_here("complete", igpt_dir, digit_png, "--out", tmp_path / "out.png", "--num-samples", 0)
    assert "--num-samples" in one_line_error(result)
    result = keras_tx_here("complete", igpt_dir, digit_png, "--out", tmp_path / "no" / "out.png")
    assert "does not exist" in one_line_error(result)


def _write_idx(path, array):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype("uint8").tobytes())


def test_a_source_with_only_a_test_split_is_cut_80_20(tmp_path):
    """shared/datasets/mnist holds only the test set: iGPT needs no labels, so it trains on part of it."""
    from keras_tx.tasks.image_completion import default_token_grid, image_gpt_data

    images = np.arange(10 * 28 * 28).reshape(10, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    train, test, split = image_gpt_data(str(tmp_path))
    assert len(train) == 8 and len(test) == 2 and "test split only" in split
    np.testing.assert_array_equal(test[..., 0], images[8:])
    assert default_token_grid(train.shape[1:3]) == 14 and default_token_grid((8, 8)) == 8
