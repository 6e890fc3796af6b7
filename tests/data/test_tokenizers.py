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


def test_every_tokenizer_is_saved_one_way(tmp_path):
    """save_tokenizer / load_tokenizer: a JSON file naming the class, the vocabulary files beside it; the same
    tokens after the round trip, for characters, GPT-2's BPE and WordPiece (with a prefix, as translation has)."""
    import json

    from keras_tx.data.bpe import BytePairTokenizer, bytes_to_unicode
    from keras_tx.data.tokenizers import load_tokenizer, save_tokenizer
    from keras_tx.data.wordpiece import make_wordpiece_tokenizer

    text = "The cat sat, naïvely."
    byte_level = {c: i for i, c in enumerate(list(bytes_to_unicode().values()) + ["Ġc", "Ġca", "<|endoftext|>"])}
    wordpiece = make_wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", ",",
                                          ".", "na", "##ive", "##ly"], lowercase=True, strip_accents=True)
    cases = [(CharTokenizer.from_text(text), "", {"tokenizer.json"}),
             (BytePairTokenizer(byte_level, ["Ġ c", "Ġc a"]), "", {"tokenizer.json", "vocab.json", "merges.txt"}),
             (wordpiece, "", {"tokenizer.json", "vocab.txt"}),
             (wordpiece, "source_", {"source_tokenizer.json", "source_vocab.txt"})]
    for tokenizer, prefix, files in cases:
        folder = tmp_path / f"{type(tokenizer).__name__}{prefix}"
        path = save_tokenizer(tokenizer, str(folder), prefix=prefix)
        assert set(os.listdir(folder)) == files and os.path.basename(path) == prefix + "tokenizer.json"
        assert json.loads(open(path, encoding="utf-8").read())["class_name"] == type(tokenizer).__name__
        for where in (str(folder), path):
            loaded = load_tokenizer(where, prefix=prefix) if where == str(folder) else load_tokenizer(where)
            assert type(loaded) is type(tokenizer)
            encode = getattr(tokenizer, "encode", tokenizer)
            np.testing.assert_array_equal(np.asarray(getattr(loaded, "encode", loaded)(text)), np.asarray(encode(text)))
    with open(tmp_path / "other.json", "w") as file:
        json.dump({"class_name": "SentencePieceTokenizer"}, file)
    with pytest.raises(ValueError, match="holds a SentencePieceTokenizer; keras-tx reads"):
        load_tokenizer(str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match="No tokenizer at .*no tokenizer.json, no vocab.txt"):
        load_tokenizer(str(tmp_path / "nowhere"))


def test_translation_directories_of_the_earlier_format_still_read(tmp_path):
    """Before tokenizer files had one format, translation wrote the two vocabularies and translator.json."""
    import json

    from keras_tx.data.translation import (RESERVED_TOKENS, load_translation_tokenizers, make_translation_tokenizer,
                                           save_translation_tokenizers)

    vocabulary = list(RESERVED_TOKENS) + ["ein", "hund", "a", "dog", "."]
    source, target = make_translation_tokenizer(vocabulary, lowercase=True), make_translation_tokenizer(vocabulary,
                                                                                                         False)
    save_translation_tokenizers(str(tmp_path / "new"), source, target)
    assert sorted(os.listdir(tmp_path / "new")) == ["source_tokenizer.json", "source_vocab.txt",
                                                    "target_tokenizer.json", "target_vocab.txt"]
    old = tmp_path / "old"
    old.mkdir()
    for side in ("source", "target"):
        (old / f"{side}_vocab.txt").write_text("".join(f"{t}\n" for t in vocabulary), encoding="utf-8")
    (old / "translator.json").write_text(json.dumps({"source_lowercase": True, "target_lowercase": False}))
    for folder in (tmp_path / "new", old):
        loaded = load_translation_tokenizers(str(folder))
        assert [t.lowercase for t in loaded] == [True, False]
        assert [t.get_vocabulary() for t in loaded] == [vocabulary, vocabulary]
        np.testing.assert_array_equal(loaded[0]("Ein Hund ."), source("Ein Hund ."))
