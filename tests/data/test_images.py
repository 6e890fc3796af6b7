import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from keras_tx.data import images as data

SHARED = "/work/shared/datasets"
RNG = np.random.default_rng(0)


def _write_idx(path, array):
    """MNIST's IDX format: 0, 0, type 0x08 (uint8), ndim, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype("uint8").tobytes())


# ---------------------------------------------------------------------------------------------------- sources


def test_idx_loader_on_generated_files(tmp_path):
    x = RNG.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1, 0], np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    loaded = data.load_idx(str(tmp_path))
    np.testing.assert_array_equal(loaded.x_train, x[..., None])
    np.testing.assert_array_equal(loaded.y_train, y)
    assert loaded.x_test is None and loaded.y_test is None  # no t10k files: that split is absent
    assert loaded.class_names == data.DIGIT_CLASSES
    assert data.load_image_data(str(tmp_path)).x_train.shape == (5, 4, 3, 1)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"not an idx file")
    with pytest.raises(ValueError, match="is not an IDX file"):
        data.read_idx(str(bad))
    with pytest.raises(ValueError, match="holds no IDX"):
        data.load_idx(str(tmp_path / "empty_dir_that_is_not_there"))


@pytest.mark.parametrize(
    "name,train,test,first_class",
    [("fashion_mnist", 60000, 10000, "T-shirt/top"), ("mnist", None, 10000, "0")],
)
def test_idx_loader_on_the_shared_files(name, train, test, first_class):
    directory = os.path.join(SHARED, name)
    if not os.path.exists(os.path.join(directory, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"{directory} is not on this machine (the shared datasets are only mounted on the dev box)")
    loaded = data.load_idx(directory)
    assert (None if loaded.x_train is None else len(loaded.x_train)) == train  # mnist ships only t10k images
    assert loaded.x_test.shape == (test, 28, 28, 1) and loaded.x_test.dtype == np.uint8
    assert set(np.unique(loaded.y_test)) == set(range(10))
    assert loaded.class_names[0] == first_class


def test_npz_loader(tmp_path):
    arrays = {
        "x_train": RNG.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        "y_train": np.arange(6) % 3,
        "x_test": RNG.random((2, 8, 8, 3)).astype("float32"),  # floats in [0, 1] are scaled to 0..255
        "y_test": np.array([[0], [2]]),
    }
    np.savez(tmp_path / "d.npz", **arrays)
    loaded = data.load_image_data(str(tmp_path / "d.npz"))
    assert loaded.x_train.shape == (6, 8, 8, 1) and loaded.x_test.shape == (2, 8, 8, 3)
    assert loaded.x_test.dtype == np.uint8 and loaded.y_test.tolist() == [0, 2]
    assert loaded.class_names == ["0", "1", "2"]
    np.savez(tmp_path / "bad.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="lacks"):
        data.load_npz(str(tmp_path / "bad.npz"))


def test_image_folder_loader(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("ignored: not an image suffix")
    loaded = data.load_image_data(str(tmp_path), image_size=8, channels=3)
    assert loaded.class_names == ["cat", "dog"]
    assert loaded.x_train.shape == (8, 8, 8, 3) and loaded.x_test.shape == (2, 8, 8, 3)
    assert sorted(loaded.y_test.tolist()) == [0, 1]


def test_tfds_path_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):  # never the network
        loaded = data.load_image_data("fashion_mnist")
    assert loaded.x_train.shape == (6, 28, 28, 1) and loaded.x_train.dtype == np.uint8
    assert loaded.y_test.shape == (6,) and loaded.class_names == data.FASHION_MNIST_CLASSES


def test_tfds_without_data_fails_at_once_with_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="download=True"):
        data.load_tfds("mnist", data_dir=str(tmp_path))


def test_digits_default_is_offline_and_upscaled():
    loaded = data.load_image_data("digits")
    assert loaded.x_train.shape[1:] == (16, 16, 1) and len(loaded.x_train) + len(loaded.x_test) == 1797
    assert loaded.x_train.dtype == np.uint8 and loaded.x_train.max() == 255
    assert loaded.class_names == data.DIGIT_CLASSES
    assert data.load_digits_images(image_size=28).x_test.shape[1:] == (28, 28, 1)
    again = data.load_digits_images()
    np.testing.assert_array_equal(again.y_test, loaded.y_test)  # the split is fixed


# ---------------------------------------------------------------------------------------------------- pipeline


def test_image_dataset_scales_batches_and_augments_reproducibly():
    x = RNG.integers(0, 256, (10, 16, 16, 1), dtype=np.uint8)
    y = np.arange(10) % 3
    plain = data.image_dataset(x, y, batch_size=4)
    images, labels = next(iter(plain))
    assert tuple(images.shape) == (4, 16, 16, 1) and images.dtype.name == "float32"
    np.testing.assert_allclose(images.numpy(), x[:4] / 255.0, atol=1e-6)
    assert labels.numpy().tolist() == y[:4].tolist()
    assert [len(b[0]) for b in plain] == [4, 4, 2]

    first = [b[0].numpy() for b in data.image_dataset(x, y, 4, augment=True, shuffle=True, seed=3)]
    assert all(0 <= b.min() and b.max() <= 1 for b in first)
    assert not np.allclose(np.concatenate(first), x / 255.0)  # crops moved the pixels
    second = [b[0].numpy() for b in data.image_dataset(x, y, 4, augment=True, shuffle=True, seed=3)]
    np.testing.assert_array_equal(np.concatenate(second), np.concatenate(first))  # same seed, same epoch
    images_only = next(iter(data.image_dataset(x, None, 4, augment=True, flip=True, seed=3)))
    assert tuple(images_only.shape) == (4, 16, 16, 1)


# ---------------------------------------------------------------------------------------------------- files


def _save(path, array, mode=None, **kwargs):
    Image.fromarray(array, mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return str(path)


@pytest.mark.parametrize("channels", [1, 3])
def test_load_image_file_any_mode(tmp_path, channels):
    files = {
        "rgba.png": _save(tmp_path / "rgba.png", RNG.integers(0, 256, (40, 30, 4), dtype=np.uint8)),
        "grey.png": _save(tmp_path / "grey.png", RNG.integers(0, 256, (30, 30), dtype=np.uint8)),
        "grey.jpg": _save(tmp_path / "grey.jpg", RNG.integers(0, 256, (30, 30), dtype=np.uint8)),
        "rgb.jpg": _save(tmp_path / "rgb.jpg", RNG.integers(0, 256, (50, 60, 3), dtype=np.uint8)),
        "16bit.png": _save(tmp_path / "16bit.png", RNG.integers(0, 65535, (20, 20), dtype=np.uint16)),
    }
    Image.fromarray(RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P").save(tmp_path / "palette.png")
    files["palette.png"] = str(tmp_path / "palette.png")
    for name, path in files.items():
        pixels = data.load_image_file(path, 28, channels)
        assert pixels.shape == (28, 28, channels) and pixels.dtype == np.float32, name
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.max() > 0.2, name


def test_transparent_pixels_become_the_background(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent...
    rgba[2:6, 2:6, 3] = 255  # ...except a square in the middle
    path = _save(tmp_path / "t.png", rgba, "RGBA")
    pixels = data.load_image_file(path, 8, channels=1)[..., 0]
    assert pixels[0, 0] == 0.0 and pixels[4, 4] == 1.0
    assert data.load_image_file(path, 8, channels=1, background=255)[0, 0, 0] == 1.0


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_load_image_file_huge(tmp_path, suffix):
    path = tmp_path / f"huge.{suffix}"
    Image.new("RGB", (6000, 4000), (200, 10, 10)).save(path)  # 24 megapixels
    pixels = data.load_image_file(str(path), 32, 3)
    assert pixels.shape == (32, 32, 3)
    np.testing.assert_allclose(pixels[16, 16], np.array([200, 10, 10]) / 255.0, atol=0.03)
    assert pixels[0, 16].max() == 0.0  # 6000x4000 padded to a square, not squashed: the top rows are padding


def test_non_image_file_is_a_one_line_value_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not pixels")
    with pytest.raises(ValueError) as info:
        data.load_image_file(str(path), 28, 1)
    message = str(info.value)
    assert str(path) in message and "not an image" in message and "\n" not in message
    with pytest.raises(ValueError, match="no such file"):
        data.load_image_file(str(tmp_path / "missing.png"), 28, 1)
