"""Tokenizers: text <-> token ids.

`CharTokenizer` is the tokenizer of char-level language models (nanoGPT's shakespeare_char): every distinct
character of the training corpus is one token, numbered in sorted order. It is lossless on its corpus, needs
no training beyond collecting the characters, and keeps the vocabulary small (65 symbols for tiny_shakespeare),
so a model's output layer is small too. The price is long sequences: one token per character.
"""

import json
import os

import numpy as np

from keras_tx import validation

FILENAME = "tokenizer.json"


class CharTokenizer:
    """One token per character, ids in sorted character order.

    Args:
        vocabulary: the characters, each a string of length 1, no duplicates; id i is `vocabulary[i]`.

    Example:
    >>> tokenizer = CharTokenizer.from_text("hello world")
    >>> tokenizer.vocabulary_size
    8
    >>> ids = tokenizer.encode("hello")
    >>> ids.tolist(), tokenizer.decode(ids)
    ([3, 2, 4, 4, 5], 'hello')
    """

    def __init__(self, vocabulary):
        vocabulary = list(vocabulary)
        if not vocabulary:
            raise ValueError("The vocabulary is empty: a CharTokenizer needs at least one character.")
        bad = [c for c in vocabulary if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"Every vocabulary entry must be one character, got {bad[:10]!r}.")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("The vocabulary has duplicate characters.")
        self.vocabulary = vocabulary
        self._ids = {c: i for i, c in enumerate(vocabulary)}

    @classmethod
    def from_text(cls, text):
        """The tokenizer whose vocabulary is every character that occurs in `text`.

        Example:
        >>> CharTokenizer.from_text("abca").vocabulary
        ['a', 'b', 'c']
        """
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
        return cls(sorted(set(text)))

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def __len__(self):
        return self.vocabulary_size

    def encode(self, text):
        """Token ids of `text` as an int32 numpy array; characters outside the vocabulary raise a ValueError.

        Example:
        >>> CharTokenizer.from_text("ab").encode("ba").tolist()
        [1, 0]
        """
        try:
            return np.fromiter((self._ids[c] for c in text), dtype="int32", count=len(text))
        except KeyError:
            unknown = sorted(set(text) - set(self._ids))
            shown = ", ".join(repr(c) for c in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
            raise ValueError(
                f"{len(unknown)} character(s) are not in the vocabulary of this tokenizer "
                f"({self.vocabulary_size} characters): {shown}."
            ) from None

    def decode(self, ids):
        """The text of token ids (a list, a numpy array or a tensor of ints).

        Example:
        >>> CharTokenizer.from_text("ab").decode([1, 0, 1])
        'bab'
        """
        ids = validation.token_ids(np.asarray(ids).reshape(-1), self.vocabulary_size)
        return "".join(self.vocabulary[i] for i in ids.tolist())

    def save(self, path):
        """Write the vocabulary as JSON to `path`, or to `path/tokenizer.json` when `path` is a directory.

        Returns:
            The path of the file written.
        """
        if os.path.isdir(path) or not str(path).endswith(".json"):
            os.makedirs(path, exist_ok=True)
            path = os.path.join(path, FILENAME)
        tmp = f"{path}.tmp-{os.getpid()}"  # written, then renamed: a crash never leaves half a file
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"class_name": "CharTokenizer", "vocabulary": self.vocabulary}, f, ensure_ascii=False)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by `save` (the file, or the directory holding tokenizer.json).

        Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     CharTokenizer.load(CharTokenizer.from_text("abc").save(d)).vocabulary
        ['a', 'b', 'c']
        """
        if os.path.isdir(path):
            path = os.path.join(path, FILENAME)
        if not os.path.isfile(path):
            raise ValueError(f"No tokenizer file at {path!r} (expected a {FILENAME} written by CharTokenizer.save).")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            vocabulary = config["vocabulary"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path!r} is not a CharTokenizer file: {error}.") from None
        if config.get("class_name", "CharTokenizer") != "CharTokenizer":
            raise ValueError(f"{path!r} holds a {config['class_name']}, not a CharTokenizer.")
        return cls(vocabulary)

    def __repr__(self):
        return f"CharTokenizer(vocabulary_size={self.vocabulary_size})"


def load_tokenizer(path):
    """The tokenizer a model directory holds, by the "class_name" of its tokenizer.json: a `CharTokenizer`, or a
    `keras_tx.data.bpe.BytePairTokenizer` (GPT-2's byte-level BPE, with vocab.json and merges.txt beside it).

    Args:
        path: the model directory, or its tokenizer.json.
    """
    path = os.path.join(path, FILENAME) if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise ValueError(f"No tokenizer file at {path!r}.")
    try:
        with open(path, encoding="utf-8") as f:
            class_name = json.load(f).get("class_name", "CharTokenizer")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a tokenizer file: {error}.") from None
    if class_name == "BytePairTokenizer":
        from keras_tx.data.bpe import BytePairTokenizer

        return BytePairTokenizer.load(os.path.dirname(path))
    if class_name != "CharTokenizer":
        raise ValueError(f"{path!r} holds a {class_name}; a language model reads a CharTokenizer or a "
                         "BytePairTokenizer.")
    return CharTokenizer.load(path)
