"""GPT-2's byte-level byte-pair encoding (BPE): text <-> token ids, in plain Python.

`BytePairTokenizer` is GPT-2's tokenizer as OpenAI's encoder.py defines it. Text is UTF-8 bytes; every byte is
first shown as one printable character (`bytes_to_unicode`: "a" stays "a", the space becomes "Ġ", the newline
"Ċ"), so any text is a string over 256 symbols and nothing is ever unknown. The text is cut into pre-tokens by
GPT-2's pattern (`PATTERN`: contractions, a letter run with at most one leading space, a digit run, a run of
other characters, whitespace), and within each pre-token the merges are applied, the lowest-ranked adjacent pair
first, every occurrence of it at once, until no adjacent pair has a rank. Merges never cross pre-tokens, so
" world" is one token but "o w" never is. Special tokens (by default "<|endoftext|>") are kept whole where they
occur in text, as keras-hub and Hugging Face do. `keras_tx.data.graph_bpe.GraphBytePair` is the same tokenizer
in core TensorFlow ops, for exported SavedModels.

keras-hub 0.32's `GPT2Tokenizer` is not this tokenizer everywhere: its two code paths disagree with GPT-2 and with
each other. Eagerly (the default in Python, and what `GPT2CausalLM.generate` uses) it runs the Hugging Face
`tokenizers` library with `pre_tokenizers.Split(pattern=<a str>)`, which that library reads as a literal string,
not a regex (huggingface/tokenizers#1565): no pre-tokenization happens, so merges cross word boundaries (with the
merge "o Ġ", "hello world" gives "oĠ") and whitespace runs merge differently. Inside a tf.function or tf.data it
emulates GPT-2's pattern with TF-Text's regex_split but cuts the last character off a whitespace run at the end
of the text ("x   " gives "ĠĠ", "Ġ" where GPT-2 keeps "ĠĠĠ" whole). keras-tx follows GPT-2, as Hugging Face's
`ByteLevel` pre-tokenizer does; on ordinary prose all of them agree. tests/test_bpe.py pins both keras-hub
differences.
"""

import json
import os

import numpy as np
import regex

from keras_tx import validation

FILENAME = "tokenizer.json"
VOCABULARY_FILENAME = "vocab.json"
MERGES_FILENAME = "merges.txt"
END_TOKEN = "<|endoftext|>"
# GPT-2's pre-tokenization pattern (encoder.py), for the `regex` package (Unicode classes, look-ahead).
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_CACHE_SIZE = 100_000  # words remembered by `BytePairTokenizer._bpe`; the cache starts over when full


def bytes_to_unicode():
    """GPT-2's byte -> character map: {byte value: one-character string}, printable characters only.

    Printable Latin-1 bytes map to themselves; the other 68 (control characters, the space, ...) to the
    characters from U+0100 on, in order, so that no token shows whitespace or control characters.

    Example:
    >>> table = bytes_to_unicode()
    >>> len(table), table[ord("a")], table[ord(" ")], table[ord("\\n")]
    (256, 'a', 'Ġ', 'Ċ')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return dict(sorted(table.items()))


def _split_merge(line):
    parts = line.split(" ")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"A merge must be two tokens separated by one space, got {line!r}.")
    return parts[0], parts[1]


class BytePairTokenizer:
    """GPT-2's byte-level BPE tokenizer: pre-tokenize with GPT-2's pattern, then apply merges by rank.

    Args:
        vocabulary: {token: id}, ids 0 to len - 1 each once; tokens are strings over `bytes_to_unicode`'s
            characters and must include all 256 of them.
        merges: the merges, lowest rank first, each "a b" (two tokens and one space); "#version" lines are
            skipped. Both tokens and their concatenation must be in the vocabulary.
        special_tokens: tokens kept whole where they occur in text; each must be in the vocabulary.

    Example:
    >>> chars = list(bytes_to_unicode().values())
    >>> vocabulary = {c: i for i, c in enumerate(chars + ["lo", "Ġw", "<|endoftext|>"])}
    >>> tokenizer = BytePairTokenizer(vocabulary, ["l o", "Ġ w"])
    >>> ids = tokenizer.encode("lo world<|endoftext|>")
    >>> [tokenizer.id_to_token(i) for i in ids]
    ['lo', 'Ġw', 'o', 'r', 'l', 'd', '<|endoftext|>']
    >>> tokenizer.decode(ids)
    'lo world<|endoftext|>'
    """

    def __init__(self, vocabulary, merges, special_tokens=(END_TOKEN,)):
        if not isinstance(vocabulary, dict) or not vocabulary:
            raise ValueError("The vocabulary must be a non-empty dict of token -> id.")
        size = len(vocabulary)
        ids = list(vocabulary.values())
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < size]
        if bad:
            raise ValueError(f"Vocabulary ids must be integers in [0, {size}), got {bad[:10]}.")
        if len(set(ids)) != size:
            raise ValueError("The vocabulary gives the same id to more than one token.")
        byte_chars = bytes_to_unicode()
        missing = [c for c in byte_chars.values() if c not in vocabulary]
        if missing:
            raise ValueError(f"The vocabulary lacks {len(missing)} of the 256 byte characters, e.g. {missing[:5]}.")
        pairs = [_split_merge(m) for m in merges if not m.startswith("#version")]
        unknown = sorted({t for a, b in pairs for t in (a, b, a + b) if t not in vocabulary})
        if unknown:
            raise ValueError(f"{len(unknown)} merge token(s) are not in the vocabulary, e.g. {unknown[:5]}.")
        special_tokens = list(special_tokens or ())
        absent = [t for t in special_tokens if t not in vocabulary]
        if absent:
            raise ValueError(f"Special tokens {absent} are not in the vocabulary.")
        self.vocabulary = {str(t): int(i) for t, i in vocabulary.items()}
        self.merges = [f"{a} {b}" for a, b in pairs]
        self.special_tokens = special_tokens
        self.tokens = [None] * size  # id -> token
        for token, i in self.vocabulary.items():
            self.tokens[i] = token
        self.byte_encoder = byte_chars
        self.byte_decoder = {c: b for b, c in byte_chars.items()}
        self.ranks = {pair: rank for rank, pair in enumerate(pairs)}
        # Longest first, so that a special token that begins another never cuts it.
        specials = sorted(set(special_tokens), key=lambda t: (-len(t), t))
        self._special_pattern = regex.compile("(" + "|".join(map(regex.escape, specials)) + ")") if specials else None
        self._pattern = regex.compile(PATTERN)
        self._cache = {}
        special_set = set(special_tokens)
        # Each token's bytes: a token spelled in byte characters is those bytes; a special token (or any other)
        # is its own UTF-8 text.
        self._token_bytes = [
            bytes(self.byte_decoder[c] for c in t)
            if t not in special_set and all(c in self.byte_decoder for c in t) else t.encode("utf-8")
            for t in self.tokens
        ]

    @classmethod
    def from_keras_hub(cls, tokenizer, special_tokens=(END_TOKEN,)):
        """The tokenizer of a `keras_hub.tokenizers.BytePairTokenizer` (or `GPT2Tokenizer`): its vocabulary and
        merges. Special tokens missing from its vocabulary are left out."""
        vocabulary = dict(tokenizer.vocabulary)
        merges = [m for m in tokenizer.merges if not m.startswith("#version")]
        return cls(vocabulary, merges, [t for t in special_tokens if t in vocabulary])

    @property
    def vocabulary_size(self):
        return len(self.tokens)

    def __len__(self):
        return self.vocabulary_size

    @property
    def end_token_id(self):
        """The id of "<|endoftext|>", None if the vocabulary has none."""
        return self.vocabulary.get(END_TOKEN)

    def token_to_id(self, token):
        """The id of `token`; a token outside the vocabulary raises a ValueError."""
        if token not in self.vocabulary:
            raise ValueError(f"Token {token!r} is not in the vocabulary.")
        return self.vocabulary[token]

    def id_to_token(self, id):
        """The token of `id`; an id outside [0, vocabulary_size) raises a ValueError."""
        id = int(validation.token_ids(int(id), self.vocabulary_size))
        return self.tokens[id]

    def pre_tokenize(self, text):
        """The pre-tokens of `text` (special tokens whole), each of which is encoded on its own.

        Example:
        >>> tokenizer = BytePairTokenizer({c: i for i, c in enumerate(bytes_to_unicode().values())}, [], ())
        >>> tokenizer.pre_tokenize("It's  2 cats!!\\n")
        ['It', "'s", ' ', ' 2', ' cats', '!!', '\\n']
        """
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
        segments = self._special_pattern.split(text) if self._special_pattern else [text]
        words = []
        for i, segment in enumerate(segments):  # odd positions: the special tokens split out
            words.extend([segment] if i % 2 else self._pattern.findall(segment))
        return words

    def _bpe(self, word):
        """The token ids of one pre-token: its bytes as characters, merged pair by pair, lowest rank first."""
        if word in self._cache:
            return self._cache[word]
        symbols = [self.byte_encoder[b] for b in word.encode("utf-8")]
        while len(symbols) > 1:
            pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):  # every occurrence of the pair, left to right
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocabulary[s] for s in symbols]
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def encode(self, text):
        """Token ids of `text` as an int32 numpy array.

        Example:
        >>> tokenizer = BytePairTokenizer({c: i for i, c in enumerate(bytes_to_unicode().values())}, [], ())
        >>> tokenizer.encode("hi!").tolist()
        [104, 105, 33]
        """
        special = set(self.special_tokens)
        ids = []
        for word in self.pre_tokenize(text):
            if word in special:
                ids.append(self.vocabulary[word])
            else:
                ids.extend(self._bpe(word))
        return np.asarray(ids, dtype="int32")

    def decode(self, ids):
        """The text of token ids (a list, a numpy array or a tensor of ints); bytes that are not UTF-8 become
        U+FFFD.

        Example:
        >>> tokenizer = BytePairTokenizer({c: i for i, c in enumerate(bytes_to_unicode().values())}, [], ())
        >>> tokenizer.decode([104, 105, 33])
        'hi!'
        """
        ids = validation.token_ids(np.asarray(ids).reshape(-1), self.vocabulary_size)
        return b"".join(self._token_bytes[i] for i in ids.tolist()).decode("utf-8", errors="replace")

    def save(self, directory):
        """Write vocab.json, merges.txt (GPT-2's file formats) and tokenizer.json (which names them) to
        `directory`.

        Returns:
            The path of tokenizer.json.
        """
        os.makedirs(directory, exist_ok=True)
        config = {
            "class_name": "BytePairTokenizer",
            "vocabulary": VOCABULARY_FILENAME,
            "merges": MERGES_FILENAME,
            "special_tokens": self.special_tokens,
        }
        files = (
            (VOCABULARY_FILENAME, json.dumps(self.vocabulary, ensure_ascii=False)),
            (MERGES_FILENAME, "".join(f"{line}\n" for line in ["#version: 0.2", *self.merges])),
            (FILENAME, json.dumps(config, ensure_ascii=False)),  # last: it names the other two
        )
        from keras_tx.data.tokenizers import write_file

        for name, text in files:
            write_file(os.path.join(directory, name), text)  # a crash never leaves half a file
        return os.path.join(directory, FILENAME)

    @classmethod
    def load(cls, directory):
        """Read a tokenizer written by `save` (the directory, or its tokenizer.json); merges.txt may lack the
        "#version" line.

        Example:
        >>> import tempfile
        >>> tokenizer = BytePairTokenizer({c: i for i, c in enumerate(bytes_to_unicode().values())}, [], ())
        >>> with tempfile.TemporaryDirectory() as d:
        ...     BytePairTokenizer.load(tokenizer.save(d)).vocabulary_size
        256
        """
        path = os.path.join(directory, FILENAME) if os.path.isdir(directory) else str(directory)
        if not os.path.isfile(path):
            raise ValueError(f"No tokenizer file at {path!r} (expected the {FILENAME} of BytePairTokenizer.save).")
        folder = os.path.dirname(path)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            if config.get("class_name") != "BytePairTokenizer":
                raise ValueError(f"{path!r} holds a {config.get('class_name')}, not a BytePairTokenizer.")
            with open(os.path.join(folder, config["vocabulary"]), encoding="utf-8") as f:
                vocabulary = json.load(f)
            with open(os.path.join(folder, config["merges"]), encoding="utf-8") as f:
                merges = [line.rstrip("\r\n") for line in f]
            special_tokens = config.get("special_tokens", [END_TOKEN])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path!r} is not a BytePairTokenizer file: {error}.") from None
        return cls(vocabulary, [m for m in merges if m], special_tokens)

    def __repr__(self):
        return f"BytePairTokenizer(vocabulary_size={self.vocabulary_size}, merges={len(self.merges)})"
