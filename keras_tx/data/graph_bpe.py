"""GPT-2's byte-level BPE (`keras_tx.data.bpe.BytePairTokenizer`) as TensorFlow graph ops, core ops only.

Exported SavedModels must serve in stock TF Serving, which has no TF-Text ops, so this uses only `tf.strings`
(RE2 regexes), `tf.lookup.StaticHashTable`, ragged ops and a `tf.while_loop`. It gives the token ids of
`BytePairTokenizer.encode` (tests/test_bpe.py checks them against it and against Hugging Face's GPT-2 tokenizer).

Pre-tokenization without look-ahead. GPT-2's pattern ends in `\\s+(?!\\S)|\\s+`: a whitespace run followed by a
non-space gives all but its last character to one pre-token, and the last one starts the next pre-token (" world"
keeps its space); a run at the end of the text stays whole. RE2 has no look-ahead, so the text is cut in three
passes, each inserting a marker byte, 0xFF, which never occurs in UTF-8, and splitting on it before the next
regex runs (the regexes only ever see valid UTF-8):
    1. around special tokens ("a<|endoftext|>b" -> "a", "<|endoftext|>", "b");
    2. before the last whitespace character of every run followed by a non-space ("a   b" -> "a  ", " b");
    3. after every match of GPT-2's pattern with `\\s+` in place of `\\s+(?!\\S)|\\s+`: after pass 2, a whitespace
       run followed by a non-space is one character long, and then the two agree.
RE2's `\\s` is ASCII only, so whitespace is spelled out as the characters that Python's `regex` (GPT-2's
encoder.py) counts as `\\s`.

Merges for all words at once. Each distinct pre-token becomes a row of byte characters (`bytes_to_unicode`) in a
(W, L) string matrix. Each round of the loop looks up the rank of every adjacent pair ("a" + " " + "b" in a
table), takes each row's lowest rank and merges every occurrence of that pair in the row (a run "a a a" of the
pair "a a" merges its 1st and 2nd symbols, not the 2nd and 3rd: alternate pairs from the start of each run). The
loop stops when no row has a ranked pair; rounds <= the longest word's byte length.
"""

import functools

import regex
import tensorflow as tf

from keras_tx.data.bpe import bytes_to_unicode
from keras_tx.data.graph_text import _id_table, _string_table

_MARKER = b"\xff"  # never in UTF-8 text: the separator inserted between pieces
_NO_RANK = 2**31 - 1


@functools.lru_cache(maxsize=None)
def _whitespace():
    """An RE2 character class body of the characters that Python's `regex` matches with `\\s`."""
    every_character = "".join(map(chr, range(0x110000)))
    return "".join(f"\\x{{{ord(m.group()):X}}}" for m in regex.finditer(r"\s", every_character))


def _re2_literal(text):
    """An RE2 pattern that matches exactly `text`: every character but ASCII letters and digits as \\x{...}."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)


def _rank_table(merges):
    """"a b" -> rank (int32), -1 for pairs that are not merges."""
    keys, ranks = (list(merges), list(range(len(merges)))) if merges else ([""], [-1])  # a table can't be empty
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.string), tf.constant(ranks, tf.int32), tf.string, tf.int32
    )
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def _split(strings):
    """Split the 1-D `strings` on the marker: a (N, None) RaggedTensor."""
    return tf.strings.split(strings, sep=_MARKER)


class GraphBytePair(tf.Module):
    """A `BytePairTokenizer` in core TensorFlow ops: texts -> token ids and back.

    Args:
        tokenizer: a `keras_tx.data.bpe.BytePairTokenizer` (its vocabulary, merges and special tokens are copied).

    Example:
    >>> from keras_tx.data.bpe import BytePairTokenizer, bytes_to_unicode
    >>> chars = list(bytes_to_unicode().values())
    >>> tokenizer = BytePairTokenizer({c: i for i, c in enumerate(chars + ["Ġw", "<|endoftext|>"])}, ["Ġ w"])
    >>> graph = GraphBytePair(tokenizer)
    >>> ids = graph.encode(tf.constant("a  world<|endoftext|>"))
    >>> ids.numpy().tolist() == tokenizer.encode("a  world<|endoftext|>").tolist()
    True
    >>> graph.decode(ids).numpy().decode()
    'a  world<|endoftext|>'
    """

    def __init__(self, tokenizer):
        super().__init__(name="byte_pair")
        self.special_tokens = sorted(set(tokenizer.special_tokens), key=lambda t: (-len(t), t))
        self.token_table = _id_table(tokenizer.tokens)
        self.rank_table = _rank_table(tokenizer.merges)
        self.byte_table = _string_table({bytes([b]): c for b, c in tokenizer.byte_encoder.items()}, "")
        self.token_bytes = tf.constant(tokenizer._token_bytes)  # id -> the token's bytes, for decode
        ws = _whitespace()
        self.special_pattern = "|".join(map(_re2_literal, self.special_tokens))
        self.last_space_pattern = f"([{ws}])([^{ws}])"
        self.word_pattern = (
            f"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{{L}}+| ?\\p{{N}}+| ?[^{ws}\\p{{L}}\\p{{N}}]+|[{ws}]+"
        )

    def _is_special(self, strings):
        if not self.special_tokens:
            return tf.zeros_like(strings, dtype=tf.bool)
        return tf.reduce_any(tf.equal(strings[:, None], tf.constant(self.special_tokens)[None, :]), axis=1)

    def words(self, texts):
        """Texts (B,) -> pre-tokens (B, None), GPT-2's pattern with special tokens whole (see the module doc)."""
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
        if self.special_tokens:  # 1. special tokens become pieces of their own
            texts = tf.strings.regex_replace(texts, self.special_pattern, _MARKER + b"\\0" + _MARKER)
        pieces = _split(texts)  # (B, S)
        flat = pieces.flat_values
        special = self._is_special(flat)
        # 2. the last whitespace character before a non-space starts a new piece
        cut = tf.where(special, flat, tf.strings.regex_replace(flat, self.last_space_pattern, _MARKER + b"\\1\\2"))
        parts = _split(cut)  # (S, P)
        flat = parts.flat_values
        special = self._is_special(flat)
        # 3. a marker after every pre-token
        cut = tf.where(special, flat, tf.strings.regex_replace(flat, self.word_pattern, b"\\0" + _MARKER))
        words = _split(cut)  # (P, W)
        words = tf.RaggedTensor.from_row_splits(tf.RaggedTensor.from_row_splits(words, parts.row_splits),
                                                pieces.row_splits)  # (B, S, P, W)
        words = words.merge_dims(1, 3)
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def tokenize(self, texts):
        """Texts (B,) string -> token ids, a (B, None) int32 RaggedTensor."""
        words = self.words(texts)
        flat = words.flat_values
        special = self._is_special(flat)
        unique, index = tf.unique(tf.where(special, "", flat))  # special tokens: no bytes to merge
        ids = tf.gather(self._merge(unique), index)  # (W, None)
        special_ids = tf.ragged.boolean_mask(self.token_table.lookup(flat)[:, None], special[:, None])  # (W, 0|1)
        ids = tf.concat([special_ids, ids], axis=1)
        return tf.RaggedTensor.from_row_splits(ids, words.row_splits).merge_dims(1, 2)

    def encode(self, text):
        """A scalar string -> its token ids (N,) int32."""
        return self.tokenize(tf.reshape(text, [1])).flat_values

    def decode(self, ids):
        """Token ids (N,) int32 -> the scalar text; bytes that are not UTF-8 become U+FFFD."""
        text = tf.strings.reduce_join(tf.gather(self.token_bytes, ids))
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")

    def _merge(self, words):
        """BPE of every word of `words` (W,) at once: (W, None) int32 ids (see the module doc)."""
        symbols = self.byte_table.lookup(tf.strings.bytes_split(words))  # (W, None) byte characters
        lengths = tf.cast(symbols.row_lengths(), tf.int32)
        symbols = tf.pad(symbols.to_tensor(""), [[0, 0], [0, 1]], constant_values="")  # (W, L), L >= 1
        num_words, width = tf.shape(symbols)[0], tf.shape(symbols)[1]
        column = tf.range(width)[None, :]  # (1, L)
        row = tf.range(num_words)[:, None]  # (W, 1)

        def body(symbols, lengths, merged_any):
            left, right = symbols[:, :-1], symbols[:, 1:]  # (W, L - 1) adjacent pairs
            ranks = self.rank_table.lookup(tf.strings.join([left, right], separator=" "))
            ranks = tf.where((ranks >= 0) & (column[:, 1:] < lengths[:, None]), ranks, _NO_RANK)
            best = tf.reduce_min(ranks, axis=1, keepdims=True)  # (W, 1)
            match = (ranks == best) & (best < _NO_RANK)  # every occurrence of each row's best pair
            # Overlapping occurrences ("a a a" for the pair "a a"): keep the 1st, 3rd, ... of each run.
            position = tf.broadcast_to(column[:, :-1], tf.shape(match))
            run = tf.cumsum(tf.cast(~match, tf.int32), axis=1) + row * width  # one id per run, unique across rows
            start = tf.math.unsorted_segment_min(
                tf.reshape(tf.where(match, position, width), [-1]), tf.reshape(run, [-1]), num_words * width
            )
            take = match & ((position - tf.gather(start, run)) % 2 == 0)  # (W, L - 1): merge pair i, i + 1
            no = tf.zeros([num_words, 1], tf.bool)
            take_left = tf.concat([take, no], axis=1)  # (W, L): symbol i absorbs symbol i + 1
            absorbed = tf.concat([no, take], axis=1)  # (W, L): symbol i was absorbed by i - 1
            joined = tf.strings.join([symbols, tf.concat([symbols[:, 1:], tf.fill([num_words, 1], "")], 1)])
            merged = tf.where(take_left, joined, symbols)
            keep = ~absorbed & (column < lengths[:, None])
            symbols = tf.ragged.boolean_mask(merged, keep).to_tensor("", shape=[num_words, width])
            lengths = lengths - tf.reduce_sum(tf.cast(take, tf.int32), axis=1)
            return symbols, lengths, tf.reduce_any(take)

        def cond(symbols, lengths, merged_any):
            return merged_any

        symbols, lengths, _ = tf.while_loop(cond, body, (symbols, lengths, tf.constant(True)))
        ids = self.token_table.lookup(symbols)
        return tf.RaggedTensor.from_tensor(ids, lengths=lengths)
