import json
import os

import numpy as np
import pytest

from keras_tx.data import CharTokenizer
from keras_tx.data.text import embedded_text

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_vocabulary_is_the_sorted_characters():
    tokenizer = CharTokenizer.from_text(TEXT)
    assert tokenizer.vocabulary == sorted(set(TEXT))
    assert tokenizer.vocabulary_size == len(set(TEXT)) == len(tokenizer)
    assert tokenizer.vocabulary[0] == "\n"  # sorted: newline, space, punctuation, capitals, lower case


def test_round_trip():
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = tokenizer.encode(TEXT)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int32 and ids.shape == (len(TEXT),)
    assert ids.min() >= 0 and ids.max() < tokenizer.vocabulary_size
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.decode(ids.tolist()) == TEXT
    assert tokenizer.decode(ids[None, :]) == TEXT  # a (1, T) batch, as generate returns it
    assert tokenizer.encode("").shape == (0,)


def test_round_trip_on_the_embedded_corpus():
    text = embedded_text()
    tokenizer = CharTokenizer.from_text(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unknown_characters_are_named_not_dropped():
    tokenizer = CharTokenizer.from_text(TEXT)
    with pytest.raises(ValueError) as error:
        tokenizer.encode("hear me, Zoë!\t")
    message = str(error.value)
    assert "not in the vocabulary" in message
    for character in ("'Z'", "'ë'", "'!'", "'\\t'"):
        assert character in message, message
    assert "'h'" not in message  # only the unknown ones


def test_decode_rejects_ids_outside_the_vocabulary():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"Token ids must be in \[0, vocabulary size\): the vocabulary has 3 tokens, "
                                         r"got id 7"):
        tokenizer.decode([0, 3, 7])


def test_save_and_load(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT + "é—")
    path = tokenizer.save(str(tmp_path))
    assert path == os.path.join(str(tmp_path), "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["vocabulary"] == tokenizer.vocabulary
    for source in (str(tmp_path), path):  # the directory or the file
        loaded = CharTokenizer.load(source)
        assert loaded.vocabulary == tokenizer.vocabulary
        assert loaded.decode(loaded.encode(TEXT)) == TEXT
    explicit = tokenizer.save(str(tmp_path / "chars.json"))
    assert CharTokenizer.load(explicit).vocabulary == tokenizer.vocabulary


def test_bad_files_and_vocabularies_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="No tokenizer file"):
        CharTokenizer.load(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a CharTokenizer file"):
        CharTokenizer.load(str(tmp_path))
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="one character"):
        CharTokenizer(["ab"])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
