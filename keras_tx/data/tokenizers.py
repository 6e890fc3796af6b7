"""Tokenizers: text <-> token ids.

`CharTokenizer` is the tokenizer of char-level language models (nanoGPT's shakespeare_char): every distinct
character of the training corpus is one token, numbered in sorted order. It is lossless on its corpus, needs
no training beyond collecting the characters, and keeps the vocabulary small (65 symbols for tiny_shakespeare),
so a model's output layer is small too. The price is long sequences: one token per character.

Every tokenizer a model directory holds is saved one way (`save_tokenizer` / `load_tokenizer`): a JSON file,
`tokenizer.json` (`source_tokenizer.json` and `target_tokenizer.json` for translation), whose "class_name" says
which tokenizer it is, and its vocabulary files beside it:

    CharTokenizer        tokenizer.json holds the characters
    BytePairTokenizer    vocab.json and merges.txt (GPT-2's files; keras_tx.data.bpe)
    WordPieceTokenizer   vocab.txt, one piece a line; the JSON is keras-hub's tokenizer config (casing, special
                         tokens) plus "vocabulary_file"
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
        return write_file(path, json.dumps({"class_name": "CharTokenizer", "vocabulary": self.vocabulary},
                                           ensure_ascii=False))

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


WORDPIECE_VOCABULARY_FILE = "vocab.txt"


def write_file(path, text):
    """Write `text` to `path` through a temporary file renamed into place: a crash never leaves half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def save_tokenizer(tokenizer, directory, prefix=""):
    """Write `directory/{prefix}tokenizer.json`, which names the tokenizer's class, and its vocabulary files beside
    it (`{prefix}vocab.txt` for WordPiece). Returns the path of the JSON file.

    Args:
        tokenizer: a `CharTokenizer`, a `keras_tx.data.bpe.BytePairTokenizer` or a keras-hub `WordPieceTokenizer`.
        directory: the model directory.
        prefix: "source_" and "target_" for the two tokenizers of a translation model.
    """
    from keras_tx.data.bpe import BytePairTokenizer

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, prefix + FILENAME)
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.save(path)
    if isinstance(tokenizer, BytePairTokenizer):
        if prefix:
            raise ValueError("A BytePairTokenizer is saved as tokenizer.json, vocab.json and merges.txt: no prefix.")
        return tokenizer.save(directory)
    if type(tokenizer).__name__ not in ("WordPieceTokenizer", "BertTokenizer"):
        raise ValueError(f"keras-tx saves CharTokenizer, BytePairTokenizer and WordPieceTokenizer, not "
                         f"{type(tokenizer).__name__}.")
    import keras

    vocabulary_file = prefix + WORDPIECE_VOCABULARY_FILE
    write_file(os.path.join(directory, vocabulary_file), "".join(f"{token}\n" for token in tokenizer.get_vocabulary()))
    config = keras.saving.serialize_keras_object(tokenizer)
    return write_file(path, json.dumps({**config, "vocabulary_file": vocabulary_file}, indent=2, ensure_ascii=False))


def load_tokenizer(path, prefix=""):
    """The tokenizer `save_tokenizer` wrote: `path` is its JSON file, or the directory holding
    `{prefix}tokenizer.json`. A directory with only a `vocab.txt` (written before tokenizer.json existed) gives a
    lowercasing BERT WordPiece tokenizer.
    """
    missing = ValueError(f"No tokenizer at {path!r}: no {prefix}{FILENAME}, no {prefix}{WORDPIECE_VOCABULARY_FILE}.")
    if os.path.isdir(path):
        directory, path = path, os.path.join(path, prefix + FILENAME)
        legacy = os.path.join(directory, prefix + WORDPIECE_VOCABULARY_FILE)
        if not os.path.isfile(path) and os.path.isfile(legacy):
            from keras_tx.data.wordpiece import make_wordpiece_tokenizer

            return make_wordpiece_tokenizer(_read_lines(legacy))
    directory = os.path.dirname(path)
    if not os.path.isfile(path):
        raise missing
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        class_name = config.get("class_name", "CharTokenizer")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a tokenizer file: {error}.") from None
    if class_name == "CharTokenizer":
        return CharTokenizer.load(path)
    if class_name == "BytePairTokenizer":
        from keras_tx.data.bpe import BytePairTokenizer

        return BytePairTokenizer.load(path)
    if class_name in ("WordPieceTokenizer", "BertTokenizer"):
        import keras

        vocabulary_file = os.path.join(directory, config.pop("vocabulary_file", prefix + WORDPIECE_VOCABULARY_FILE))
        if not os.path.isfile(vocabulary_file):
            raise ValueError(f"{directory} has no tokenizer vocabulary ({os.path.basename(vocabulary_file)} is "
                             "missing).")
        tokenizer = keras.saving.deserialize_keras_object(config)
        tokenizer.set_vocabulary(_read_lines(vocabulary_file))  # a list, not a path: allowed in safe mode
        return tokenizer
    raise ValueError(f"{path!r} holds a {class_name}; keras-tx reads CharTokenizer, BytePairTokenizer and "
                     "WordPieceTokenizer files.")


def _read_lines(path):
    with open(path, encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file]
