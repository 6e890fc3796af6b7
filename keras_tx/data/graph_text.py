"""Tokenizers as TensorFlow graph ops (core ops only), for the exported signatures: characters and WordPiece.

The exported SavedModels must serve in a process with neither keras-tx, Keras, keras-hub nor TF-Text (stock TF
Serving has no TF-Text ops), so each tokenizer of `keras_tx.data` has its graph form here, checked against it in
tests/test_export.py.

Tokenization in core ops. The char tokenizer is `tf.strings.unicode_split` and a `tf.lookup.StaticHashTable`.
WordPiece (keras-hub's `WordPieceTokenizer`, which runs TF-Text's FastWordpieceTokenizer) is rebuilt from
`tf.strings` ops: split on whitespace, control characters, punctuation and CJK characters (RE2 patterns, the
special tokens kept whole), NFKC case folding and accent stripping by per-character tables computed from
TF-Text at export time, and greedy longest-match-first with "##" continuation pieces in a vectorized
`tf.while_loop`. It gives keras-hub's token ids (tests/test_export.py checks it on edge cases) for text in
NFC form, which is what nearly all text is; a decomposed accent (e + U+0301) folds per character here, where
keras-hub would compose it first.
"""

import functools
import re

import tensorflow as tf

_SENTINEL = b"\xff"  # never a UTF-8 character: "not in the table"

# keras-hub's split rules as RE2 patterns: whitespace and control characters are dropped, punctuation (every
# non-alphanumeric ASCII character too) and CJK ideographs become words of their own.
_WHITESPACE = r"\s|\p{Cc}|\p{Cf}"
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}"
_CJK = "|".join(
    f"[\\x{{{low}}}-\\x{{{high}}}]"
    for low, high in (("4E00", "9FFF"), ("3400", "4DBF"), ("20000", "2A6DF"), ("2A700", "2B73F"),
                      ("2B740", "2B81F"), ("2B820", "2CEAF"), ("F900", "FAFF"), ("2F800", "2FA1F"))
)


def _code_points():
    """The code points whose case folding or decomposition can change them, as one-character strings.

    All of planes 0 and 1 but surrogates and private use, the CJK compatibility ideographs of plane 2 and the tags
    and variation selectors of plane 14. The rest of planes 2 and 3 are CJK ideographs that neither fold nor
    decompose; leaving them out halves the work.
    """
    ranges = (range(0, 0xD800), range(0xF900, 0x20000), range(0x2F800, 0x2FA20), range(0xE0000, 0xE1000))
    return [chr(c) for r in ranges for c in r]


@functools.lru_cache(maxsize=None)
def _character_map(operation):
    """{character: replacement} for every character that `operation` changes, computed with TF-Text.

    "casefold" is TF-Text's `case_fold_utf8` (NFKC_Casefold: "ß" -> "ss", "Ａ" -> "a", soft hyphen -> ""),
    "strip_accents" is NFD followed by removing nonspacing marks ("é" -> "e"), what keras-hub applies.
    """
    import tensorflow_text as tf_text  # export time only: the SavedModel gets a plain table

    characters = _code_points()
    strings = tf.constant(characters)
    if operation == "casefold":
        mapped = tf_text.case_fold_utf8(strings)
    else:
        mapped = tf.strings.regex_replace(tf_text.normalize_utf8(strings, "NFD"), r"\p{Mn}", "")
    return {c: m.decode("utf-8") for c, m in zip(characters, mapped.numpy().tolist()) if m.decode("utf-8") != c}


def _string_table(mapping, default):
    keys, values = list(mapping), list(mapping.values())
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.string), tf.constant(values, tf.string), tf.string, tf.string
    )
    return tf.lookup.StaticHashTable(initializer, default_value=default)


def _id_table(tokens):
    """token -> id (int32), -1 for anything else; a repeated token keeps its last id, as keras-hub's map does."""
    ids = {token: i for i, token in enumerate(tokens)}
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(ids), tf.string), tf.constant(list(ids.values()), tf.int32), tf.string, tf.int32
    )
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def _map_characters(table, strings):
    """Replace each character of each string of the 1-D `strings` by its entry in `table`, if it has one."""
    characters = tf.strings.unicode_split(strings, "UTF-8")  # (N, None)

    def lookup(flat):
        mapped = table.lookup(flat)
        return tf.where(tf.equal(mapped, _SENTINEL), flat, mapped)

    return tf.strings.reduce_join(tf.ragged.map_flat_values(lookup, characters), axis=-1)


class CharVocabulary(tf.Module):
    """A `CharTokenizer`'s vocabulary as graph ops: text <-> ids, unknown characters left out.

    Args:
        vocabulary: the tokenizer's characters; id i is `vocabulary[i]`.

    Example:
    >>> vocabulary = CharVocabulary(["a", "b", "c"])
    >>> ids, unknown = vocabulary.encode(tf.constant("cab?"))
    >>> ids.numpy().tolist(), int(unknown), vocabulary.decode(ids).numpy()
    ([2, 0, 1], 1, b'cab')
    """

    def __init__(self, vocabulary):
        super().__init__(name="char_vocabulary")
        self.characters = list(vocabulary)
        self.table = _id_table(self.characters)

    def encode(self, text):
        """(ids (N,) int32 of the known characters of the scalar `text`, how many characters were unknown)."""
        characters = tf.strings.unicode_split(text, "UTF-8")  # invalid bytes become U+FFFD, which is unknown
        ids = self.table.lookup(characters)
        known = ids >= 0
        return tf.boolean_mask(ids, known), tf.size(ids) - tf.reduce_sum(tf.cast(known, tf.int32))

    def decode(self, ids):
        return tf.strings.reduce_join(tf.gather(tf.constant(self.characters), ids))


class WordPiece(tf.Module):
    """keras-hub's `WordPieceTokenizer` (split, fold case, strip accents, WordPiece) in core TensorFlow ops.

    Args:
        tokenizer: a `keras_hub.tokenizers.WordPieceTokenizer` (its vocabulary and settings are copied).
        extra_special_tokens: more strings to keep whole in text, e.g. ("[MASK]",) for fill-mask.

    Example:
    >>> wordpiece = WordPiece(tokenizer)
    >>> wordpiece.tokenize(tf.constant(["The cat sat."])).to_list() == [tokenizer("The cat sat.").tolist()]
    True
    """

    def __init__(self, tokenizer, extra_special_tokens=()):
        super().__init__(name="wordpiece")
        if not tokenizer.split:
            raise ValueError("Only WordPiece tokenizers that split their input (split=True) can be exported.")
        self.vocabulary = list(tokenizer.get_vocabulary())
        self.suffix_indicator = tokenizer.suffix_indicator
        self.unknown_id = tokenizer.token_to_id(tokenizer.oov_token)
        self.max_bytes_per_word = 100  # TF-Text's FastWordpieceTokenizer: longer words are [UNK]
        special = list(extra_special_tokens)
        if tokenizer.special_tokens_in_strings:  # keras-hub then keeps its special tokens whole in text
            special += list(tokenizer.special_tokens) + list(tokenizer.get_config().get("special_tokens") or [])
        self.special_tokens = sorted(set(special), key=lambda t: (-len(t), t))  # longest first: "[MASK]" before "["
        keep = [_PUNCTUATION] + ([_CJK] if tokenizer.split_on_cjk else [])
        if self.special_tokens:
            keep = ["|".join(re.escape(t) for t in self.special_tokens)] + keep
        self.keep_pattern = "|".join(keep)
        self.token_table = _id_table(self.vocabulary)
        self.casefold_table = _string_table(_character_map("casefold"), _SENTINEL) if tokenizer.lowercase else None
        self.accent_table = (
            _string_table(_character_map("strip_accents"), _SENTINEL) if tokenizer.strip_accents else None
        )

    def words(self, texts):
        """Texts (B,) -> words (B, None): what WordPiece is applied to, normalized as keras-hub does."""
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
        if self.accent_table is not None:
            texts = _map_characters(self.accent_table, texts)
        # Punctuation, CJK and special tokens become words of their own; whitespace and controls separate words.
        texts = tf.strings.regex_replace(texts, self.keep_pattern, r" \0 ")
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        words = tf.strings.split(texts, sep=" ")
        words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
        if self.casefold_table is not None:
            flat = words.flat_values
            folded = _map_characters(self.casefold_table, flat)
            if self.special_tokens:  # special tokens keep their case ("[MASK]", not "[mask]")
                special = tf.reduce_any(tf.equal(flat[:, None], tf.constant(self.special_tokens)[None, :]), axis=1)
                folded = tf.where(special, flat, folded)
            words = words.with_flat_values(folded)
            words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)  # a word of ignorables vanishes
        return words

    def tokenize(self, texts):
        """Texts (B,) string -> token ids, a (B, None) int32 RaggedTensor."""
        words = self.words(texts)
        pieces = self._word_pieces(words.flat_values)  # (W, L + 1), each row its pieces then -1s
        per_word = tf.RaggedTensor.from_tensor(pieces, padding=-1)
        return tf.RaggedTensor.from_row_splits(per_word, words.row_splits).merge_dims(1, 2)

    def _word_pieces(self, words):
        """Greedy longest-match-first WordPiece of every word of `words` (W,) at once.

        Each round of the loop finds, for every word not yet done, the longest vocabulary entry that starts
        where the previous piece ended ("##"-prefixed after the first piece): all candidate ends are looked up
        together, the longest hit wins. A word where no entry matches, or longer than 100 bytes, is [UNK].
        """
        too_long = tf.strings.length(words) > self.max_bytes_per_word
        words = tf.where(too_long, "", words)  # [UNK] anyway: keep them out of the (W, L) candidate matrix
        _, offsets = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        offsets = tf.cast(offsets, tf.int32)
        lengths = tf.cast(offsets.row_lengths(), tf.int32)  # characters per word, (W,)
        num_words, longest = tf.size(words), tf.reduce_max(tf.concat([lengths, [0]], 0))
        column = tf.range(longest + 1)[None, :]  # (1, L + 1)
        # boundaries[w, j]: the byte offset of character j of word w; from j = length on, the word's byte length.
        byte_lengths = tf.strings.length(words)[:, None]  # int32
        boundaries = tf.where(column < lengths[:, None], tf.pad(offsets.to_tensor(0), [[0, 0], [0, 1]]), byte_lengths)
        ends = tf.range(1, longest + 1)[None, :]  # candidate end characters (1, L)
        words_matrix = tf.broadcast_to(words[:, None], [num_words, longest])

        def body(round_, start, done, unknown, pieces):
            start_bytes = tf.gather(boundaries, start, batch_dims=1)[:, None]  # (W, 1)
            candidates = tf.strings.substr(
                words_matrix, tf.broadcast_to(start_bytes, [num_words, longest]),
                tf.maximum(boundaries[:, 1:] - start_bytes, 0),
            )  # (W, L): the text from `start` to every possible end
            candidates = tf.where(start[:, None] > 0, self.suffix_indicator + candidates, candidates)
            ids = self.token_table.lookup(candidates)
            ids = tf.where((ends > start[:, None]) & (ends <= lengths[:, None]), ids, -1)
            best = tf.reduce_max(tf.where(ids >= 0, ends, 0), axis=1)  # the longest match's end, 0: none
            found = best > 0
            active = tf.logical_not(done)
            piece = tf.gather(ids, tf.maximum(best - 1, 0), batch_dims=1)
            pieces = tf.where(column == round_, tf.where(active & found, piece, -1)[:, None], pieces)
            unknown = unknown | (active & tf.logical_not(found))
            start = tf.where(active & found, best, start)
            done = done | tf.logical_not(found) | (start >= lengths)
            return round_ + 1, start, done, unknown, pieces

        def cond(round_, start, done, unknown, pieces):
            return tf.logical_not(tf.reduce_all(done))

        start = tf.zeros([num_words], tf.int32)
        pieces = -tf.ones([num_words, longest + 1], tf.int32)
        state = (tf.constant(0), start, (lengths == 0) | too_long, too_long, pieces)
        _, _, _, unknown, pieces = tf.while_loop(cond, body, state)
        unknown_row = tf.where(column == 0, self.unknown_id, -1)  # (1, L + 1): [UNK] alone
        return tf.where(unknown[:, None], unknown_row, pieces)

    def detokenize(self, ids):
        """Token ids (B, None) ragged -> texts (B,): tokens joined by spaces, "##" pieces glued to the previous one."""
        tokens = tf.gather(tf.constant(self.vocabulary), ids)  # (B, None) ragged strings
        position = tf.ragged.range(ids.row_lengths())
        indicator = self.suffix_indicator

        def join(flat_tokens, flat_position):
            suffix = tf.strings.regex_full_match(flat_tokens, re.escape(indicator) + ".+") & (flat_position > 0)
            rest = tf.strings.regex_replace(flat_tokens, "^" + re.escape(indicator), "")
            return tf.where(flat_position == 0, flat_tokens, tf.where(suffix, rest, " " + flat_tokens))

        pieces = tokens.with_flat_values(join(tokens.flat_values, tf.cast(position.flat_values, tf.int32)))
        return tf.strings.reduce_join(pieces, axis=-1)


# keras_tx.data.translation's detokenizing rules in RE2, which has no look-ahead and an ASCII-only \w: word
# characters are spelled out, and the word-internal rule runs twice, since each match consumes the character
# after the hyphen or apostrophe ("a - b - c": "a-b - c", then "a-b-c").
_WORD = r"[\p{L}\p{N}_]"
_DETOKENIZE_RULES = (
    (r" ([.,!?;:%)\]}])", r"\1"),
    (r"([(\[{$]) ", r"\1"),
    (f"({_WORD}) ([-'’/]) ({_WORD})", r"\1\2\3"),
    (f"({_WORD}) ([-'’/]) ({_WORD})", r"\1\2\3"),
)


def target_texts(wordpiece, tokens, end_id):
    """Target ids (B, T) -> texts (B,), as `Translator.decode_targets`: up to the first [END] or padding, pieces
    joined, punctuation, hyphens and apostrophes attached by the detokenizing rules, then stripped."""
    stop = tf.cumsum(tf.cast((tokens == end_id) | (tokens == 0), tf.int32), axis=1) > 0
    texts = wordpiece.detokenize(tf.ragged.boolean_mask(tokens, tf.logical_not(stop)))
    for pattern, rewrite in _DETOKENIZE_RULES:
        texts = tf.strings.regex_replace(texts, pattern, rewrite)
    return tf.strings.strip(texts)
