"""SavedModel export: a trained model directory -> a TensorFlow SavedModel whose signatures do the whole job.

The last step of the pipeline `data/ -> models/ -> training.py -> saved_models/<name>/ -> export.py`. An export
can be served by a stock TF Serving binary and loaded with `tf.saved_model.load` in a process that has neither
keras-tx nor keras nor keras-hub: tokenization, the cached decoding loops, image decoding and resizing are all
TensorFlow ops inside the graph, and only core ops (no TF-Text custom ops), so nothing but TensorFlow is needed.

    keras-tx export runs/gpt serving/gpt/1          # or keras_tx.export.export("runs/gpt", "serving/gpt/1")

Signatures by kind of model directory (every tensor is int32, float32 or string; shapes, B = batch):

    language_model (GPT, LSTM, RNN; char tokenizer)
      serving_default  token_ids (B, T)                        -> logits (B, T, V)
      generate         prompt (), max_new_tokens (), temperature (), seed () int64
                                                               -> text (), completion (), token_ids (N,)
    masked_lm (BERT; WordPiece)
      serving_default  token_ids, segment_ids, padding_mask (B, T), mask_positions (B, P) -> logits (B, P, V)
      fill_mask        text () with [MASK]s, top_k ()          -> tokens (M, k) string, token_ids (M, k),
                                                                  scores (M, k) (probabilities, best first)
    image_classifier (ViT, ResNet)
      serving_default  images (B, H, W, C) floats in [0, 1]    -> logits (B, K), probabilities (B, K)
      classify         image_bytes (B,) PNG/JPEG/GIF/BMP files -> labels (B, K) string, class_ids (B, K),
                                                                  probabilities (B, K), all classes, best first
    translation (Seq2SeqTransformer written by keras_tx.data.translation.Translator.save)
      serving_default  encoder_token_ids (B, S), decoder_token_ids (B, T) -> logits (B, T, V)
      translate        text (B,)                               -> translation (B,), token_ids (B, max_target_length)

Bad input gets the decision, and the sentence, of the CLI and the Python API (`keras_tx.validation`), as an
InvalidArgument error: invalid UTF-8, empty or over-long text, more than 64 texts or images, token ids outside the
vocabulary, prompt characters the model does not know, max_new_tokens outside [1, 2000], a temperature that is
negative or not finite, a negative seed, a text without [MASK] (any case) or with more than the model takes, top_k
< 1, a text to translate longer than the model reads or with no word it knows, an image file over 20 MiB, not a
PNG/JPEG/GIF/BMP, or over 25 megapixels by its header (checked before it is decoded). An empty batch of images or
texts gets an empty answer.

- `generate`: temperature 0 is greedy decoding (the same tokens as `keras-tx generate --sampler greedy`); above 0
  each token is drawn from softmax(logits / temperature) by keras_tx.generation's own loop, whose random numbers
  are a hash of (seed, step): the same seed gives the same text, and the text of `keras-tx generate --sampler
  random` with that seed and temperature. A GPT continues past its context in chunks, re-reading the last
  half-context, as `keras-tx generate` does.
- `fill_mask`: top_k above the vocabulary size gives the whole vocabulary; a text longer than the model's
  max_length is an InvalidArgument error that says so.
- `classify`: transparency is flattened onto black, grey, RGB and CMYK are converted like PIL does, the image is
  resized (antialiased bilinear) into the model's size keeping its aspect ratio and padded with black, as
  `keras-tx classify` does with PIL; EXIF rotation is not applied. Images already at the model's size give the
  CLI's probabilities exactly.

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
import os
import re
import shutil

import tensorflow as tf

from keras_tx import generation, sampling
from keras_tx import graph_checks as guard
from keras_tx import validation

# ------------------------------------------------------------------------------------------------ text ops

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


# ------------------------------------------------------------------------------------------ language models


def _generate_ids(model, prompt_ids, new_tokens, temperature, seed):
    """prompt ids (P,) -> prompt + `new_tokens` ids, as `keras_tx.generation.generate_long` makes them with the
    sampler "random" (temperature 0: greedy) and this seed: the same chunks past a GPT's context
    (`generation.next_chunk`), the same loop (`generation.sample_loop`, traced here as graph ops) and so the same
    random numbers. A recurrent model has no context and runs in one chunk.
    """
    context = getattr(model, "max_length", None)
    settings, seed = sampling.settings("random", temperature), sampling.seed_words(seed)

    def body(tokens, done):
        chunk, start = generation.next_chunk(context, tf.size(tokens), new_tokens - done)
        window = tokens[start:][None]  # (1, W)
        cache = model.initial_cache(1, tf.size(window) + chunk)
        out, _ = generation.sample_loop(model.call_with_cache, window, cache, chunk, seed, settings, done)
        return tf.concat([tokens, out[0, tf.size(window):]], 0), done + chunk

    tokens, _ = tf.while_loop(
        lambda tokens, done: done < new_tokens, body, (prompt_ids, tf.constant(0)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([])),
    )
    return tokens


def language_model_endpoints(task):
    """The signatures of a text-generation task (`keras_tx.tasks.TextGeneration`)."""
    model, tokenizer = task.model, task.tokenizer
    vocabulary = CharVocabulary(tokenizer.vocabulary)

    def serving_default(token_ids):
        token_ids = guard.checked(token_ids, guard.token_id_check(token_ids, len(tokenizer.vocabulary)))
        return {"logits": tf.cast(model(token_ids, training=False), tf.float32)}

    def generate(prompt, max_new_tokens, temperature, seed):
        # The decisions of TextGeneration.prompt_ids and generation._check (keras_tx.validation), in graph ops.
        checks = guard.text_checks(prompt[None], "The prompt", blank_ok=True) + [
            guard.require((max_new_tokens >= 1) & (max_new_tokens <= validation.MAX_NEW_TOKENS),
                     f"max_new_tokens {validation.integer_range(1, validation.MAX_NEW_TOKENS)}."),
            guard.require(tf.math.is_finite(temperature) & (temperature >= 0), validation.TEMPERATURE + "."),
            guard.require(seed >= 0, f"seed {validation.integer_range(0, 2**63 - 1)}."),
        ]
        with tf.control_dependencies(checks):
            ids, unknown = vocabulary.encode(prompt)
        ids = guard.checked(ids, guard.require(tf.equal(unknown, 0), validation.UNKNOWN_CHARACTERS + "."))
        tokens = _generate_ids(model, ids, max_new_tokens, temperature, seed)
        completion = vocabulary.decode(tokens[tf.size(ids):])
        return {"text": tf.strings.join([prompt, completion]), "completion": completion, "token_ids": tokens}

    endpoints = [
        ("serving_default", serving_default, [tf.TensorSpec([None, None], tf.int32, name="token_ids")]),
        ("generate", generate, [
            tf.TensorSpec([], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]),
    ]
    return model, [vocabulary], endpoints


# ------------------------------------------------------------------------------------------------- BERT


def masked_lm_endpoints(task):
    """The signatures of a masked-LM task (`keras_tx.tasks.MaskedLM`)."""
    from keras_tx.data.wordpiece import CLS, MASK, SEP
    from keras_tx.models.bert import INPUT_NAMES

    model = task.model
    tokenizer = model.tokenizer
    # "[MASK]" stays whole whatever the tokenizer's settings: fill_mask splits the text on it, as
    # BERTMaskedLM.fill_mask does.
    wordpiece = WordPiece(tokenizer, extra_special_tokens=(MASK,))
    cls_id, sep_id, mask_id = (tokenizer.token_to_id(t) for t in (CLS, SEP, MASK))
    max_length = model.backbone.max_length
    vocabulary_size = model.backbone.vocabulary_size

    def serving_default(token_ids, segment_ids, padding_mask, mask_positions):
        token_ids = guard.checked(token_ids, guard.token_id_check(token_ids, vocabulary_size))
        inputs = dict(token_ids=token_ids, segment_ids=segment_ids, padding_mask=padding_mask,
                      mask_positions=mask_positions)
        return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

    def fill_mask(text, top_k):
        # BERTMaskedLM.fill_mask's decisions (keras_tx.validation): "[mask]" in any case, at least one, at most
        # max_predictions, top_k >= 1 (more than the vocabulary: all of it).
        checks = guard.text_checks(text[None]) + [guard.require(top_k >= 1, f"top_k {validation.integer_range(1)}.")]
        with tf.control_dependencies(checks):
            text = tf.strings.regex_replace(text, r"(?i)\[mask\]", MASK)
        masks = tf.size(tf.strings.split(text, sep=MASK)) - 1
        too_many = validation.too_many_masks(model.max_predictions)
        text = guard.checked(text, guard.require(masks > 0, validation.NO_MASK),
                             guard.require(masks <= model.max_predictions, too_many))
        pieces = wordpiece.tokenize(text[None])[0]
        ids = tf.concat([[cls_id], pieces, [sep_id]], 0)
        length = tf.size(ids)
        check = tf.debugging.Assert(length <= max_length, [
            f"The text is too long: with [CLS] and [SEP] it has more tokens than the model's max_length={max_length}:",
            length,
        ])
        with tf.control_dependencies([check]):
            positions = tf.cast(tf.where(tf.equal(ids, mask_id))[:, 0], tf.int32)  # (M,)
        ones = tf.ones_like(ids)[None]
        inputs = {"token_ids": ids[None], "segment_ids": 0 * ones, "padding_mask": ones,
                  "mask_positions": positions[None]}
        logits = tf.cast(model(inputs, training=False), tf.float32)[0]  # (M, V)
        probabilities = tf.nn.softmax(logits, axis=-1)
        scores, token_ids = tf.math.top_k(probabilities, tf.clip_by_value(top_k, 1, vocabulary_size))
        return {
            "tokens": tf.gather(tf.constant(wordpiece.vocabulary), token_ids),
            "token_ids": token_ids,
            "scores": scores,
        }

    endpoints = [
        ("serving_default", serving_default,
         [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]
         + [tf.TensorSpec([None, None], tf.int32, name="mask_positions")]),
        ("fill_mask", fill_mask,
         [tf.TensorSpec([], tf.string, name="text"), tf.TensorSpec([], tf.int32, name="top_k")]),
    ]
    return model, [wordpiece], endpoints


# ---------------------------------------------------------------------------------------- image classifiers


def _decode_jpeg(data, height, width, channels):
    """A JPEG as PIL's `draft` decodes it for `load_image_file`: DCT-scaled by the largest of 1/8, 1/4, 1/2, 1
    that keeps it at least the model's size, straight to grey for a grey model, ISLOW IDCT. (h, w, 3) float32."""
    shape = tf.io.extract_jpeg_shape(data)
    scale = tf.minimum(shape[1] // width, shape[0] // height)
    branch = tf.reduce_sum(tf.cast(scale >= tf.constant([2, 4, 8]), tf.int32))  # 0, 1, 2, 3 -> ratio 1, 2, 4, 8

    def decoder(ratio, channels):
        return lambda: tf.io.decode_jpeg(data, channels=channels, ratio=ratio, dct_method="INTEGER_ACCURATE")

    def decoded(channels):
        image = tf.switch_case(branch, [decoder(ratio, channels) for ratio in (1, 2, 4, 8)])
        return tf.cast(tf.tile(image, [1, 1, 3 // channels]), tf.float32)

    if channels == 3:
        return decoded(3)
    # libjpeg cannot turn CMYK (4 components) straight into grey: such a file is decoded to RGB, then made grey
    # with PIL's formula in `_to_model_pixels`, as PIL converts it.
    return tf.cond(shape[2] == 4, lambda: decoded(3), lambda: decoded(1))


def _decode_other(data):
    """PNG, GIF, BMP -> (h, w, 3) float32 RGB, transparency composited onto black, as PIL's conversion does."""
    image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)  # (h, w, c), c in 1-4
    count = tf.shape(image)[-1]
    # Grey (1), grey + alpha (2), RGB (3), RGBA (4): which channels are R, G, B and which is alpha (-1: none).
    rgb = tf.gather(image, tf.gather(tf.constant([[0, 0, 0], [0, 0, 0], [0, 1, 2], [0, 1, 2]]), count - 1), axis=-1)
    alpha_channel = tf.gather(tf.constant([-1, 1, -1, 3]), count - 1)
    alpha = tf.cond(
        alpha_channel >= 0,
        lambda: tf.cast(tf.gather(image, [alpha_channel], axis=-1), tf.float32),
        lambda: tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0),
    )
    return tf.cast(rgb, tf.float32) * alpha / 255.0


def _contain_and_pad(rgb, height, width):
    """PIL's `ImageOps.pad`: resize to fit (aspect kept; Python's round is half-to-even, as tf.round), centre on
    black. The resize is TF's antialiased bilinear, close to PIL's; an image already at the size is untouched."""
    size = tf.cast(tf.shape(rgb)[:2], tf.float64)  # (h, w)
    image_ratio, target_ratio = size[1] / size[0], width / height
    new_height = tf.where(image_ratio > target_ratio, tf.round(size[0] / size[1] * width), float(height))
    new_width = tf.where(image_ratio < target_ratio, tf.round(size[1] / size[0] * height), float(width))
    new_height = tf.maximum(tf.cast(new_height, tf.int32), 1)
    new_width = tf.maximum(tf.cast(new_width, tf.int32), 1)
    resized = tf.image.resize(rgb, tf.stack([new_height, new_width]), antialias=True)
    top = tf.cast(tf.round(tf.cast(height - new_height, tf.float64) * 0.5), tf.int32)
    left = tf.cast(tf.round(tf.cast(width - new_width, tf.float64) * 0.5), tf.int32)
    return tf.image.pad_to_bounding_box(resized, top, left, height, width)


def _to_model_pixels(data, height, width, channels):
    """One encoded image -> float32 (height, width, channels) in [0, 1], as `load_image_file` makes it with PIL.
    The header is checked first (`graph_checks.image_header_checks`): a decompression bomb is refused, not decoded."""
    data = guard.checked(data, *guard.image_header_checks(data))
    rgb = tf.cond(
        tf.io.is_jpeg(data), lambda: _decode_jpeg(data, height, width, channels), lambda: _decode_other(data)
    )
    rgb = _contain_and_pad(rgb, height, width)
    rgb = tf.cast(tf.clip_by_value(tf.floor(rgb + 0.5), 0, 255), tf.int32)  # PIL keeps 8-bit pixels
    if channels == 1:
        # PIL's "L" conversion, ITU-R 601-2 luma in 16-bit fixed point: exact on 8-bit pixels.
        rgb = (rgb[..., :1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:] * 7471 + 0x8000) // 65536
    return tf.cast(rgb, tf.float32) / 255.0


def image_classifier_endpoints(task):
    """The signatures of an image-classification task (`keras_tx.tasks.ImageClassification`)."""
    model, metadata = task.model, task.metadata
    height, width, channels = (int(d) for d in metadata["image_shape"])
    class_names = tf.constant([str(name) for name in metadata["class_names"]])
    num_classes = len(metadata["class_names"])

    def serving_default(images):
        logits = tf.cast(model(images, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def classify(image_bytes):
        image_bytes = guard.checked(image_bytes, guard.batch_check(image_bytes))
        images = tf.map_fn(
            lambda data: _to_model_pixels(data, height, width, channels), image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        probabilities = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
        probabilities, class_ids = tf.math.top_k(probabilities, num_classes)  # every class, best first
        return {"labels": tf.gather(class_names, class_ids), "class_ids": class_ids, "probabilities": probabilities}

    endpoints = [
        ("serving_default", serving_default,
         [tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]),
        ("classify", classify, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    ]
    return model, [], endpoints


# ------------------------------------------------------------------------------------------- translation

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


def translation_endpoints(task):
    """The signatures of a translation task (`keras_tx.tasks.Translation`)."""
    translator = task.translator
    model = translator.model
    source, target = WordPiece(translator.source_tokenizer), WordPiece(translator.target_tokenizer)
    start_id, end_id = translator.start_id, translator.end_id
    max_source_length, steps = model.max_source_length, model.max_target_length

    def serving_default(encoder_token_ids, decoder_token_ids):
        inputs = {"encoder_token_ids": encoder_token_ids, "decoder_token_ids": decoder_token_ids}
        return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

    def translate(text):
        # Translator.translate's decisions (keras_tx.validation): at most 64 texts, each UTF-8, not empty, not
        # longer than the model reads, with a word the model knows; an empty batch gets an empty answer.
        with tf.control_dependencies(guard.text_checks(text) + [guard.batch_check(text)]):
            pieces = source.tokenize(text)
        lengths = pieces.row_lengths()
        known = tf.reduce_any(tf.not_equal(pieces, source.unknown_id), axis=1)
        pieces = guard.checked(pieces.to_tensor(0, shape=[None, max_source_length]), guard.require(
            tf.reduce_all(lengths <= max_source_length),
            f"The text has more pieces than the model's max_source_length={max_source_length}: shorten it."),
            guard.require(tf.reduce_all(known), validation.NO_KNOWN_WORD + "."))
        tokens, _ = model.decoding_loop(pieces, steps, "greedy", 1, start_id, end_id)
        return {"translation": target_texts(target, tokens, end_id), "token_ids": tokens}

    endpoints = [
        ("serving_default", serving_default, [
            tf.TensorSpec([None, None], tf.int32, name="encoder_token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="decoder_token_ids"),
        ]),
        ("translate", translate, [tf.TensorSpec([None], tf.string, name="text")]),
    ]
    return model, [source, target], endpoints


# ------------------------------------------------------------------------------------------------ export

def model_kind(model_dir):
    """The kind of a model directory that can be exported: one whose task has serving signatures.

    A directory that `Translator.save` wrote (source_vocab.txt, target_vocab.txt) is "translation"; any other
    gets its kind from metadata.json. Raises ValueError for a directory that is not a model or of another kind.

    Example:
    >>> model_kind("saved_models/gpt_shakespeare")
    'language_model'
    """
    from keras_tx import artifacts, tasks

    artifacts.check_model_dir(model_dir)
    if all(os.path.isfile(os.path.join(model_dir, f)) for f in ("source_vocab.txt", "target_vocab.txt")):
        return "translation"
    kind = artifacts.read_metadata(model_dir).get("kind")
    exportable = [k for k, task in tasks.TASKS.items() if task.signatures]
    if kind not in exportable:
        raise ValueError(f"{model_dir} holds a model of kind {kind!r}; export knows {', '.join(exportable)}.")
    return kind


def check_out_dir(out_dir):
    """Raise ValueError unless `out_dir` is absent or an empty directory: an export never overwrites files."""
    if os.path.isdir(out_dir):
        if os.listdir(out_dir):
            raise ValueError(f"{out_dir} exists and is not empty: give a new directory (nothing is overwritten).")
    elif os.path.lexists(out_dir):
        raise ValueError(f"{out_dir} exists and is not a directory: give a new directory.")


def export(model_dir, out_dir):
    """Write the SavedModel of the model directory `model_dir` to `out_dir` (new, or an empty directory).

    Args:
        model_dir: a directory written by `keras-tx train` (a language model, BERT, ViT or ResNet) or by
            `keras_tx.data.translation.Translator.save`.
        out_dir: where to write the SavedModel; for TF Serving, a version folder such as serving/gpt/1.

    Returns:
        {"kind": ..., "signatures": {name: {"inputs": {name: "dtype shape"}, "outputs": {...}}}}.

    Example:
    >>> export("runs/gpt", "serving/gpt/1")["signatures"]["generate"]["inputs"]
    {'max_new_tokens': 'int32 ()', 'prompt': 'string ()', 'seed': 'int64 ()', 'temperature': 'float32 ()'}
    """
    from keras_tx import tasks

    kind = model_kind(model_dir)
    check_out_dir(out_dir)
    _, modules, endpoints = tasks.task_for_kind(kind).load(model_dir).serving_endpoints()
    root = tf.Module()
    root.text_ops = modules  # their lookup tables are saved with the model
    functions = {
        name: tf.function(fn, input_signature=signature, autograph=False).get_concrete_function()
        for name, fn, signature in endpoints
    }
    # The variables the graphs read (the model's weights), tracked so that they are saved.
    root.model_variables = list({id(v): v for f in functions.values() for v in f.variables}.values())
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    # Written next to out_dir, then renamed: a failed or killed export leaves no half SavedModel behind.
    staging = os.path.join(parent, f".{os.path.basename(os.path.abspath(out_dir))}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tf.saved_model.save(root, staging, signatures=functions)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"kind": kind, "signatures": {name: _describe(function) for name, function in functions.items()}}


def _describe(function):
    """{"inputs": {name: "dtype shape"}, "outputs": {...}} of a concrete function."""

    def spec(value):
        shape = "(" + ", ".join("None" if d is None else str(d) for d in value.shape) + ")"
        return f"{value.dtype.name} {shape}"

    inputs = {value.name: value for value in function.structured_input_signature[0]}
    outputs = function.structured_outputs
    return {
        "inputs": {key: spec(value) for key, value in sorted(inputs.items())},
        "outputs": {key: spec(value) for key, value in sorted(outputs.items())},
    }
