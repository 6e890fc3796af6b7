import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_tx.data import CharTokenizer, language_model_dataset, load_text, split_text
from keras_tx.data.text import embedded_text


def test_embedded_default_needs_nothing():
    text = load_text()
    assert text == embedded_text() == load_text("pydoc_topics")
    assert len(text) > 400_000
    assert len(CharTokenizer.from_text(text).vocabulary) < 200  # small enough for a char model


def test_text_file_and_data_dir(tmp_path):
    (tmp_path / "input.txt").write_text("To be, or not to be.\n", encoding="utf-8")
    assert load_text(text_file=str(tmp_path / "input.txt")) == "To be, or not to be.\n"
    assert load_text(data_dir=str(tmp_path)) == "To be, or not to be.\n"
    with pytest.raises(ValueError, match="does not exist"):
        load_text(text_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="No input.txt"):
        load_text(data_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="not both"):
        load_text("tiny_shakespeare", text_file=str(tmp_path / "input.txt"))


def test_tfds_dataset_with_mock_data():
    with tfds.testing.mock_data(num_examples=3):
        text = load_text("tiny_shakespeare")
    assert isinstance(text, str) and len(text) > 0


def test_tfds_without_data_fails_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"'tiny_shakespeare' is not prepared in .*download=True"):
        load_text("tiny_shakespeare", data_dir=str(tmp_path))  # download=False: no network, no retries
    with pytest.raises(ValueError, match="not a TensorFlow Datasets dataset"):
        load_text("no_such_dataset_anywhere", data_dir=str(tmp_path))


def test_split_is_ninety_ten_in_order():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, validation = split_text(text)
    assert (len(train), len(validation)) == (900, 100)
    assert train + validation == text
    train, validation = split_text(text, validation_fraction=0.25)
    assert (len(train), len(validation)) == (750, 250)
    with pytest.raises(ValueError, match="validation_fraction"):
        split_text(text, 1.5)


def test_windows_are_shifted_by_one():
    ids = np.arange(1000) % 97
    dataset = language_model_dataset(ids, sequence_length=16, batch_size=4, shuffle=False)
    assert dataset.element_spec[0].shape.as_list() == [4, 16]  # static shapes, for XLA
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == (1000 - 16) // 16 // 4  # non-overlapping windows, incomplete batch dropped
    for x, y in batches:
        assert x.dtype == np.int32 and x.shape == y.shape == (4, 16)
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x, y = batches[0]
    np.testing.assert_array_equal(x[0], ids[:16])
    np.testing.assert_array_equal(y[0], ids[1:17])
    np.testing.assert_array_equal(x[1], ids[16:32])  # in order


def test_validation_is_deterministic_and_training_is_seeded():
    ids = np.arange(2001) % 101  # 200 windows of 10 (+1), 25 batches of 8: none dropped

    def first_inputs(dataset):
        return np.concatenate([x for x, _ in dataset.as_numpy_iterator()])

    validation = language_model_dataset(ids, 10, 8, shuffle=False)
    np.testing.assert_array_equal(first_inputs(validation), first_inputs(validation))
    train = language_model_dataset(ids, 10, 8, seed=1)
    epoch_1, epoch_2 = first_inputs(train), first_inputs(train)
    assert not np.array_equal(epoch_1, epoch_2)  # reshuffled every epoch...
    np.testing.assert_array_equal(first_inputs(language_model_dataset(ids, 10, 8, seed=1)), epoch_1)  # ...by seed
    assert sorted(map(tuple, epoch_1)) == sorted(map(tuple, first_inputs(validation)))  # same windows


def test_stride_and_errors():
    ids = np.arange(100)
    overlapping = language_model_dataset(ids, 10, 1, shuffle=False, stride=1, drop_remainder=False)
    assert sum(1 for _ in overlapping) == 90
    with pytest.raises(ValueError, match="too few"):
        language_model_dataset(ids[:5], 10, 1)
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        language_model_dataset(ids, 10, 64)
    with pytest.raises(ValueError, match="1-D"):
        language_model_dataset(ids.reshape(10, 10), 4, 2)
