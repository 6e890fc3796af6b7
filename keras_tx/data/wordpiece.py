"""WordPiece tokenization and the tf.data pipelines BERT trains on: masked-LM pretraining and classification.

WordPiece (BERT's tokenizer) splits text into words and punctuation, then each word into the longest pieces
found in a learned vocabulary ("playing" -> "play", "##ing"), so that any word can be written with a vocabulary
of a few thousand pieces. Five reserved tokens come first: [PAD] (id 0), [UNK], [CLS] (prepended; its final
state summarizes the sequence), [SEP] (appended) and [MASK] (what the masked LM must fill in).

Masked-LM batches are `(features, labels, sample_weights)`, ready for `BERTMaskedLM.fit`: of the tokens that are
not [CLS], [SEP] or [PAD], 15% are selected (rounded up per sequence); a selected token becomes [MASK] 80% of the
time, a random token 10% and stays unchanged 10%. The masking runs inside the pipeline, so every epoch sees
fresh masks. TensorFlow and keras-hub are used here; `keras_tx.models.bert` needs neither.
"""

import math
import os

import keras_hub
import numpy as np
import tensorflow as tf

# Tokenizer files have one home, keras_tx.data.tokenizers (vocab.txt and tokenizer.json for WordPiece).
from keras_tx.data.tokenizers import load_tokenizer, save_tokenizer  # noqa: F401

PAD, UNK, CLS, SEP, MASK = RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SST2_FILES = {"train": "train.tsv", "validation": "dev.tsv"}


def _as_text_dataset(texts):
    """A list of strings or a tf.data.Dataset of strings -> an unbatched tf.data.Dataset of strings."""
    if isinstance(texts, tf.data.Dataset):
        return texts
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"Expected a list of texts or a tf.data.Dataset, got a single string: {texts[:50]!r}.")
    texts = list(texts)
    if not texts:
        raise ValueError("Expected at least one text, got none.")
    return tf.data.Dataset.from_tensor_slices(texts)


def train_wordpiece_vocabulary(texts, vocabulary_size, lowercase=True, reserved_tokens=RESERVED_TOKENS):
    """Learn a WordPiece vocabulary of at most `vocabulary_size` tokens, the reserved tokens first.

    Args:
        texts: a list of strings or a `tf.data.Dataset` of strings.
        vocabulary_size: the most tokens to keep.
        lowercase: lowercase the text first (an "uncased" vocabulary).
        reserved_tokens: tokens placed first, in order: [PAD] gets id 0.

    Returns:
        The vocabulary, a list of strings.

    Example:
    >>> vocabulary = train_wordpiece_vocabulary(["the cat sat", "the dog ran"], 40)
    >>> vocabulary[:5]
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    """
    if vocabulary_size <= len(reserved_tokens):
        raise ValueError(
            f"vocabulary_size={vocabulary_size} leaves no room beside the {len(reserved_tokens)} reserved tokens."
        )
    dataset = _as_text_dataset(texts).batch(1024)  # the trainer takes a dataset, not a Python list
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset, vocabulary_size, lowercase=lowercase, reserved_tokens=list(reserved_tokens)
    )


def make_wordpiece_tokenizer(vocabulary, lowercase=True, strip_accents=False):
    """A keras-hub `WordPieceTokenizer` for BERT: the reserved tokens stay whole when they appear in text.

    Args:
        vocabulary: a list of tokens with [PAD] first and [UNK], [CLS], [SEP], [MASK] in it.
        lowercase: lowercase text before splitting (must match how the vocabulary was trained).
        strip_accents: remove accents ("é" -> "e"), as uncased BERT checkpoints' tokenizers do.

    Example:
    >>> tokenizer = make_wordpiece_tokenizer(vocabulary)
    >>> tokenizer("the [MASK] sat")  # numpy array of ids when called eagerly
    array([ 5,  4, 17], dtype=int32)
    """
    vocabulary = list(vocabulary)
    missing = [token for token in RESERVED_TOKENS if token not in vocabulary]
    if missing or vocabulary[0] != PAD:
        raise ValueError(f"A BERT vocabulary needs {PAD} first and {list(RESERVED_TOKENS)} in it; missing {missing}.")
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents, special_tokens=list(RESERVED_TOKENS),
        special_tokens_in_strings=True,
    )


def _packer(tokenizer, sequence_length):
    """texts (B,) -> BERT's input dict: [CLS] tokens [SEP], truncated or padded to `sequence_length`."""
    token = tokenizer.token_to_id
    packer = keras_hub.layers.StartEndPacker(
        sequence_length, start_value=token(CLS), end_value=token(SEP), pad_value=token(PAD), return_padding_mask=True
    )

    def pack(texts):
        token_ids, padding_mask = packer(tokenizer(texts))  # (B, T) each
        return {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),  # one sentence: all segment 0
            "padding_mask": tf.cast(padding_mask, "int32"),
        }

    return pack


def encode_texts(texts, tokenizer, sequence_length):
    """BERT's input dict of numpy arrays for a list of texts (e.g. to classify them with `model.predict`).

    Example:
    >>> x = encode_texts(["a fine film"], tokenizer, 16)
    >>> x["token_ids"].shape
    (1, 16)
    """
    texts = list(texts) if not isinstance(texts, str) else [texts]
    batch = next(iter(_as_text_dataset(texts).batch(len(texts)).map(_packer(tokenizer, sequence_length))))
    return {name: value.numpy() for name, value in batch.items()}


def make_mlm_masker(tokenizer, mask_rate=0.15, max_predictions=20, mask_token_rate=0.8, random_token_rate=0.1):
    """A tf.data map function: BERT's input dict -> (features with masked tokens, labels, sample_weights).

    Args:
        tokenizer: gives the vocabulary size and the ids of [PAD], [CLS], [SEP], [MASK].
        mask_rate: fraction of the selectable tokens of a sequence to predict (rounded up).
        max_predictions: positions per sequence in "mask_positions" (padded, weight 0); keep it at least
            ceil(mask_rate * (sequence_length - 2)) or long sequences get fewer masks.
        mask_token_rate, random_token_rate: of the selected tokens, how many become [MASK] / a random token
            (the rest stay unchanged).

    Returns:
        `mask(features) -> (features + "mask_positions", labels (B, P) original ids, sample_weights (B, P))`.
        The padding mask is the one given, so a random token that happens to be [PAD] stays attended.
    """
    token = tokenizer.token_to_id
    generator = keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=tokenizer.vocabulary_size(),
        mask_selection_rate=mask_rate,
        mask_token_id=token(MASK),
        mask_selection_length=max_predictions,
        unselectable_token_ids=[token(PAD), token(CLS), token(SEP)],
        mask_token_rate=mask_token_rate,
        random_token_rate=random_token_rate,
    )

    def mask(features):
        masked = generator(features["token_ids"])
        positions = tf.cast(masked["mask_positions"], "int32")
        features = {**features, "token_ids": masked["token_ids"], "mask_positions": positions}
        return features, masked["mask_ids"], masked["mask_weights"]

    return mask


def mask_language_model_inputs(features, tokenizer, **masker_kwargs):
    """Apply `make_mlm_masker(tokenizer, **masker_kwargs)` once, eagerly; returns numpy arrays.

    Args:
        features: BERT's input dict, or a (batch, T) array of token ids ([PAD] = 0 marks padding).

    Example:
    >>> x, labels, weights = mask_language_model_inputs(encode_texts(texts, tokenizer, 32), tokenizer)
    """
    if not isinstance(features, dict):
        token_ids = np.asarray(features, "int32")
        features = {
            "token_ids": token_ids,
            "segment_ids": np.zeros_like(token_ids),
            "padding_mask": (token_ids != tokenizer.token_to_id(PAD)).astype("int32"),
        }
    outputs = tf.function(make_mlm_masker(tokenizer, **masker_kwargs))(features)  # graph: keras-hub's TF path
    return tf.nest.map_structure(lambda t: t.numpy(), outputs)


def special_token_ids(tokenizer):
    """{token: id} of the five reserved tokens in `tokenizer`'s vocabulary."""
    return {token: int(tokenizer.token_to_id(token)) for token in RESERVED_TOKENS}


def mlm_dataset(
    texts, tokenizer, sequence_length, batch_size, mask_rate=0.15, max_predictions=None, shuffle=True, seed=None,
    cache=True,
):
    """Masked-LM batches `(features, labels, sample_weights)` of `texts`, one text per sequence.

    Args:
        texts: a list of strings or a tf.data.Dataset of strings.
        tokenizer: a WordPiece tokenizer (`make_wordpiece_tokenizer`).
        sequence_length: tokens per sequence, [CLS] and [SEP] included; longer texts are truncated.
        batch_size: sequences per batch.
        mask_rate: fraction of tokens to predict.
        max_predictions: positions per sequence; defaults to ceil(mask_rate * (sequence_length - 2)).
        shuffle, seed: shuffle the sequences every epoch.
        cache: keep the tokenized sequences in memory. Tokenizing is slow to start (about a second per epoch
            even for a few texts); the masks are drawn afresh every epoch either way.

    Example:
    >>> model.fit(mlm_dataset(texts, tokenizer, sequence_length=64, batch_size=32), epochs=3)
    """
    if max_predictions is None:
        max_predictions = max(1, math.ceil(mask_rate * (sequence_length - 2)))
    dataset = _tokenized(_as_text_dataset(texts), _packer(tokenizer, sequence_length), cache)
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed)
    return (
        dataset.batch(batch_size)
        .map(make_mlm_masker(tokenizer, mask_rate, max_predictions), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def packed_mlm_dataset(texts, tokenizer, sequence_length, batch_size, seed=0, start_step=0, mask_rate=0.15,
                       max_predictions=None):
    """Endless masked-LM batches `(features, labels, sample_weights)` of `texts` packed several to a sequence
    ([CLS] a [SEP] b [SEP] ... [PAD]..., RoBERTa's "full sentences"; `keras_tx.data.masking.pack_rows`).

    Only the distinct texts that are not part of another are kept (`keras_tx.data.masking.distinct_rows`: SST-2's
    phrases are parts of its sentences). Each pass over them is shuffled and packed afresh from `seed + pass`, and
    the masks are drawn afresh every batch, so no two passes see the same sequences.

    Args:
        texts: a list of strings.
        tokenizer, sequence_length, batch_size, mask_rate, max_predictions: as `mlm_dataset`.
        seed: the packing of pass p is drawn from `seed + p`.
        start_step: batches to skip (a resumed run continues with the batches it stopped at).

    Example:
    >>> model.fit(packed_mlm_dataset(texts, tokenizer, 64, 128), steps_per_epoch=100, epochs=10)
    """
    import itertools

    from keras_tx.data.masking import distinct_rows, pack_rows

    if max_predictions is None:
        max_predictions = max(1, math.ceil(mask_rate * (sequence_length - 2)))
    texts = list(texts)
    if not texts:
        raise ValueError("Expected at least one text, got none.")
    rows = distinct_rows([np.asarray(row, "int32") for row in tokenizer(texts)])  # eager: a list of id lists
    if not rows:
        raise ValueError("The texts have no tokens to pack.")
    special = special_token_ids(tokenizer)

    def sequences():
        for number in itertools.count():
            yield from pack_rows(rows, sequence_length, special, np.random.default_rng(seed + number))

    def features(token_ids):
        return {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                "padding_mask": tf.cast(tf.not_equal(token_ids, special[PAD]), "int32")}

    dataset = tf.data.Dataset.from_generator(sequences,
                                             output_signature=tf.TensorSpec([sequence_length], tf.int32))
    return (
        dataset.batch(batch_size, drop_remainder=True).skip(start_step).map(features)
        .map(make_mlm_masker(tokenizer, mask_rate, max_predictions), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _tokenized(dataset, pack, cache):
    """Pack an unbatched dataset of texts (or of (text, label)) 1024 at a time, then unbatch and maybe cache."""
    if isinstance(dataset.element_spec, tuple):
        dataset = dataset.batch(1024).map(lambda x, y: (pack(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.batch(1024).map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()
    return dataset.cache() if cache else dataset


def classification_dataset(texts, labels, tokenizer, sequence_length, batch_size, shuffle=True, seed=None):
    """Batches `(features, labels)` for `BERTClassifier.fit`; the tokenized texts are cached in memory.

    Example:
    >>> texts, labels = load_sst2("/work/shared/datasets/sst2", "train")
    >>> train = classification_dataset(texts, labels, tokenizer, sequence_length=64, batch_size=32)
    """
    texts, labels = list(texts), np.asarray(labels, "int32")
    if not texts or len(texts) != len(labels):
        raise ValueError(
            f"Expected as many labels as texts (at least one), got {len(texts)} texts and {len(labels)} labels."
        )
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels))
    dataset = _tokenized(dataset, _packer(tokenizer, sequence_length), cache=True)
    if shuffle:
        dataset = dataset.shuffle(len(texts), seed=seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _read_sst2_tsv(path):
    with open(path, encoding="utf-8") as file:
        header = file.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise ValueError(f"{path} is not an SST-2 file: expected the header 'sentence<TAB>label', got {header}.")
        rows = [line.rstrip("\n").rsplit("\t", 1) for line in file if line.strip()]
    return [sentence.strip() for sentence, _ in rows], np.array([int(label) for _, label in rows], "int32")


def load_sst2(data_dir=None, split="train", download=False):
    """SST-2 (GLUE's binary sentiment task) as `(texts, labels)`, from local TSV files or TensorFlow Datasets.

    If `data_dir` holds GLUE's `train.tsv` / `dev.tsv` (`sentence<TAB>label` with a header), those are read;
    otherwise `tfds.load("glue/sst2", data_dir=data_dir, download=download)`.

    Args:
        data_dir: a folder like /work/shared/datasets/sst2, or a TFDS data directory, or None.
        split: "train" or "validation" ("dev" is accepted too).
        download: let TFDS download the data (it otherwise fails at once when the data is not there).

    Returns:
        `(texts, labels)`: a list of strings and an int32 array of 0 (negative) / 1 (positive).

    Example:
    >>> texts, labels = load_sst2("/work/shared/datasets/sst2", "validation")
    >>> len(texts), labels[:3]
    (872, array([1, 0, 1], dtype=int32))
    """
    split = "validation" if split == "dev" else split
    if split not in SST2_FILES:
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}.")
    if data_dir is not None and os.path.isfile(os.path.join(data_dir, SST2_FILES[split])):
        return _read_sst2_tsv(os.path.join(data_dir, SST2_FILES[split]))
    import tensorflow_datasets as tfds  # slow to import; only this path needs it

    try:
        dataset = tfds.load("glue/sst2", split=split, data_dir=data_dir, download=download)
    except Exception as error:  # tfds raises several types for "not prepared"; the user needs one message
        raise ValueError(
            f"SST-2 not found: no {SST2_FILES[split]} in {data_dir!r} and TFDS 'glue/sst2' is not prepared there "
            f"(download={download}): {error}"
        ) from error
    texts, labels = [], []
    for example in tfds.as_numpy(dataset):
        texts.append(example["sentence"].decode("utf-8"))
        labels.append(example["label"])
    return texts, np.array(labels, "int32")
