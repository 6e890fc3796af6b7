"""Parallel text for translation: loading sentence pairs, WordPiece tokenizers, teacher-forced batches.

A translation corpus is a list of (source, target) sentence pairs. `load_parallel` reads them from

- a folder of line-aligned files, `SPLIT.SRC` and `SPLIT.TGT`, plain or gzipped: line i of one translates line i
  of the other (Multi30k: /work/shared/datasets/multi30k/{train,val,test_2016_flickr}.{de,en}.gz);
- a TSV file (plain or gzipped) or a folder with `SPLIT.tsv`: one `source<TAB>target` pair a line;
- TensorFlow Datasets (`tfds_name="wmt14_translate/de-en"`, features named by language code), prepared in
  `data_dir`: no download unless `download=True`.

No installed package ships a real parallel corpus, so the offline default (`numeral_pairs`, what
`keras-tx train transformer` uses without data) is generated: German number words to English ones, 0 to 999,999
("vierundzwanzigtausenddreihundertfünf" -> "twenty-four thousand three hundred five"). It is a real translation
task in miniature: German writes units before tens ("vier-und-zwanzig", four-and-twenty), so the model must
reorder, and one German word becomes several English ones. `load_parallel` with no source raises a ValueError
that says how to give real data.

Each side gets its own WordPiece vocabulary (trained by `keras_tx.data.wordpiece.train_wordpiece_vocabulary`),
with four reserved tokens first: [PAD] = 0, [UNK] = 1, [START] = 2, [END] = 3 (the ids
`keras_tx.models.seq2seq` assumes). `translation_dataset` makes the batches `Seq2SeqTransformer.fit` trains on:

    features = {"encoder_token_ids": source pieces, cut to max_source_length, padded with 0,
                "decoder_token_ids": [START] + labels[:-1]}   (teacher forcing: the true previous token)
    labels   = target pieces [END] 0 0 ...                    (so position t reads labels[t - 1], predicts labels[t])

both target sequences max_target_length long (a longer target is cut, and still ends with [END]); label 0 is
padding, which `keras_tx.models.seq2seq.MaskedCrossentropy` leaves out of the loss.

The translation task (`keras_tx.tasks.translation.Translation`, also named `Translator`) holds a trained model and
both tokenizers and turns text into text.
"""

import gzip
import json
import os
import re

import keras_hub
import numpy as np
import tensorflow as tf

from keras_tx.data.wordpiece import train_wordpiece_vocabulary

PAD, UNK, START, END = RESERVED_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
SOURCE_VOCABULARY_FILE = "source_vocab.txt"
TARGET_VOCABULARY_FILE = "target_vocab.txt"
TRANSLATOR_CONFIG_FILE = "translator.json"  # the earlier format's casing; read, no longer written
MODEL_FILE = "model.keras"
# Names a split's files go by in common corpora: Multi30k's "val" and "test_2016_flickr", WMT's "dev"/"valid".
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("val", "valid", "validation", "dev"),
    "test": ("test", "test_2016_flickr", "test2016"),
}
NO_DATA_HELP = (
    "No parallel data given. Pass a folder of line-aligned files SPLIT.SRC[.gz] / SPLIT.TGT[.gz] "
    "(e.g. /work/shared/datasets/multi30k with source='de', target='en'), a TSV file of 'source<TAB>target' lines, "
    "or a TensorFlow Datasets name (tfds_name='wmt14_translate/de-en') prepared in data_dir. keras-tx ships no "
    "default translation corpus."
)


# ------------------------------------------------------------------------------------------------ loading


def _open_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def _read_lines(path):
    with _open_text(path) as file:
        return [line.rstrip("\r\n") for line in file]


def _find(folder, names):
    """The first of `names` (each tried plain, then gzipped) that is a file in `folder`, or None."""
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def _read_tsv(path):
    pairs = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(
                f"{path}, line {number}: expected 'source<TAB>target' (2 fields), got {len(fields)}: {line[:80]!r}."
            )
        pairs.append((fields[0], fields[1]))
    return pairs


def _read_aligned(source_path, target_path):
    sources, targets = _read_lines(source_path), _read_lines(target_path)
    # A trailing empty line in one file only is not a misalignment.
    while sources and not sources[-1].strip():
        sources.pop()
    while targets and not targets[-1].strip():
        targets.pop()
    if len(sources) != len(targets):
        raise ValueError(
            f"{source_path} has {len(sources)} lines and {target_path} has {len(targets)}: line-aligned files must "
            "have one translation per line."
        )
    return list(zip(sources, targets))


def _load_tfds(name, split, data_dir, download, source, target):
    import tensorflow_datasets as tfds  # slow to import; only this path needs it

    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    except Exception as error:  # tfds raises several types for "not prepared"; the user needs one message
        raise ValueError(
            f"TFDS dataset {name!r} (split {split!r}) is not prepared in data_dir={data_dir!r} "
            f"(download={download}): {error}"
        ) from error
    features = set(dataset.element_spec)
    if source not in features or target not in features:
        raise ValueError(f"TFDS dataset {name!r} has features {sorted(features)}, not {source!r} and {target!r}.")
    return [
        (example[source].decode("utf-8"), example[target].decode("utf-8")) for example in tfds.as_numpy(dataset)
    ]


def load_parallel(
    data_dir=None, source="de", target="en", split="train", tfds_name=None, download=False, max_pairs=None
):
    """Sentence pairs (source, target) from line-aligned files, a TSV file or TensorFlow Datasets.

    Args:
        data_dir: a folder with `SPLIT.SOURCE` and `SPLIT.TARGET` (each may end in .gz) or `SPLIT.tsv`; or a TSV
            file (read whole: `split` is ignored); or, with `tfds_name`, the TFDS data directory (None: TFDS's).
        source, target: language codes: the file suffixes, or the TFDS feature names.
        split: "train", "validation" or "test" (also found as Multi30k's "val" and "test_2016_flickr", or
            "valid"/"dev"), or a file stem such as "test_2017_flickr".
        tfds_name: read `tfds.load(tfds_name, split=split)` instead of files.
        download: let TFDS download (otherwise it fails at once when the data is not prepared).
        max_pairs: keep only the first this many pairs.

    Returns:
        A list of (source, target) string pairs, surrounding whitespace stripped; pairs with an empty side are
        dropped.

    Example:
    >>> pairs = load_parallel("/work/shared/datasets/multi30k", source="de", target="en", split="validation")
    >>> len(pairs), pairs[0][1]
    (1014, 'A group of men are loading cotton onto a truck')
    """
    if tfds_name is not None:
        pairs = _load_tfds(tfds_name, split, data_dir, download, source, target)
    elif data_dir is None:
        raise ValueError(NO_DATA_HELP)
    elif os.path.isfile(data_dir):
        pairs = _read_tsv(data_dir)
    elif os.path.isdir(data_dir):
        stems = (split,) + tuple(name for name in SPLIT_ALIASES.get(split, ()) if name != split)
        source_path = _find(data_dir, [f"{stem}.{source}" for stem in stems])
        target_path = _find(data_dir, [f"{stem}.{target}" for stem in stems])
        tsv_path = _find(data_dir, [f"{stem}.tsv" for stem in stems])
        if source_path and target_path:
            pairs = _read_aligned(source_path, target_path)
        elif tsv_path:
            pairs = _read_tsv(tsv_path)
        else:
            looked_for = ", ".join(f"{stem}.{{{source},{target},tsv}}[.gz]" for stem in stems)
            raise ValueError(f"No {split!r} split in {data_dir!r}: looked for {looked_for}.")
    else:
        raise ValueError(f"{data_dir!r} is neither a folder nor a file. {NO_DATA_HELP}")
    pairs = [(s.strip(), t.strip()) for s, t in pairs]
    pairs = [(s, t) for s, t in pairs if s and t]
    if not pairs:
        raise ValueError(f"No sentence pairs found in {tfds_name or data_dir!r} (split {split!r}).")
    return pairs[:max_pairs] if max_pairs is not None else pairs


# German and English number words: the generated offline default.
_GERMAN_UNITS = "null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn " \
    "sechzehn siebzehn achtzehn neunzehn".split()
_GERMAN_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
_ENGLISH_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
    "sixteen seventeen eighteen nineteen".split()
_ENGLISH_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _german_below_1000(n):
    """German words of 1 <= n <= 999 as they appear inside a larger number ("ein", not "eins", before a noun)."""
    hundreds, rest = divmod(n, 100)
    words = (("ein" if hundreds == 1 else _GERMAN_UNITS[hundreds]) + "hundert") if hundreds else ""
    if rest == 1:
        words += "eins"
    elif rest < 20 and rest:
        words += _GERMAN_UNITS[rest]
    elif rest:
        tens, units = divmod(rest, 10)
        unit = ("ein" if units == 1 else _GERMAN_UNITS[units]) + "und" if units else ""
        words += unit + _GERMAN_TENS[tens]
    return words


def german_number(n):
    """German number words, 0 <= n < 1,000,000, one word as German writes them: 21 -> "einundzwanzig"."""
    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    words = ""
    if thousands:
        words = ("ein" if thousands == 1 else _german_below_1000(thousands)) + "tausend"
    return words + (_german_below_1000(rest) if rest else "")


def _english_below_1000(n):
    hundreds, rest = divmod(n, 100)
    words = [_ENGLISH_UNITS[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, units = divmod(rest, 10)
        words.append(_ENGLISH_TENS[tens] + (f"-{_ENGLISH_UNITS[units]}" if units else ""))
    elif rest:
        words.append(_ENGLISH_UNITS[rest])
    return words


def english_number(n):
    """English number words, 0 <= n < 1,000,000: 24305 -> "twenty-four thousand three hundred five"."""
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = (_english_below_1000(thousands) + ["thousand"]) if thousands else []
    return " ".join(words + _english_below_1000(rest))


def numeral_pairs(split="train", count=None):
    """(German, English) number-word pairs: the offline default corpus. Splits are disjoint sets of numbers.

    Numbers 0..999,999 are shuffled once (fixed seed); "validation" and "test" take 2,000 each, "train" the next
    `count` (default 50,000).

    Example:
    >>> numeral_pairs("test", 1)[0]
    ('einhundertachtzehntausendneunhundertdreiundsiebzig', 'one hundred eighteen thousand nine hundred seventy-three')
    """
    numbers = np.random.default_rng(0).permutation(1_000_000)
    offsets = {"validation": (0, 2000), "test": (2000, 4000), "train": (4000, 4000 + (count or 50_000))}
    if split not in offsets:
        raise ValueError(f"Unknown split {split!r}: expected train, validation or test.")
    begin, end = offsets[split]
    chosen = numbers[begin:end] if split == "train" or count is None else numbers[begin : begin + count]
    return [(german_number(int(n)), english_number(int(n))) for n in chosen]


# --------------------------------------------------------------------------------------------- tokenizers


def make_translation_tokenizer(vocabulary, lowercase=True):
    """A keras-hub `WordPieceTokenizer` over `vocabulary`, which must start with [PAD], [UNK], [START], [END].

    Example:
    >>> tokenizer = make_translation_tokenizer(["[PAD]", "[UNK]", "[START]", "[END]", "a", "cat", "##s"])
    >>> tokenizer("A cats").tolist()
    [4, 5, 6]
    """
    vocabulary = list(vocabulary)
    if vocabulary[: len(RESERVED_TOKENS)] != list(RESERVED_TOKENS):
        raise ValueError(
            f"A translation vocabulary must start with {list(RESERVED_TOKENS)} (ids 0-3), got {vocabulary[:4]}."
        )
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=lowercase, oov_token=UNK)


def train_translation_tokenizers(pairs, source_vocabulary_size=8000, target_vocabulary_size=8000, lowercase=True):
    """A WordPiece tokenizer for each side of `pairs`, trained on that side: (source_tokenizer, target_tokenizer).

    The vocabulary sizes are upper bounds: a small corpus yields fewer pieces (Multi30k: about 3,500 German and
    2,900 English pieces when lowercased).

    Example:
    >>> source_tokenizer, target_tokenizer = train_translation_tokenizers(pairs, 8000, 8000)
    """
    sources, targets = split_pairs(pairs)
    tokenizers = []
    for texts, size in ((sources, source_vocabulary_size), (targets, target_vocabulary_size)):
        vocabulary = train_wordpiece_vocabulary(texts, size, lowercase=lowercase, reserved_tokens=RESERVED_TOKENS)
        tokenizers.append(make_translation_tokenizer(vocabulary, lowercase))
    return tuple(tokenizers)


def save_translation_tokenizers(directory, source_tokenizer, target_tokenizer):
    """Write the two tokenizers as every tokenizer is written (`keras_tx.data.tokenizers.save_tokenizer`):
    DIR/source_tokenizer.json with DIR/source_vocab.txt, DIR/target_tokenizer.json with DIR/target_vocab.txt."""
    from keras_tx.data.tokenizers import save_tokenizer

    save_tokenizer(source_tokenizer, directory, prefix="source_")
    save_tokenizer(target_tokenizer, directory, prefix="target_")


def load_translation_tokenizers(directory):
    """The (source_tokenizer, target_tokenizer) that `save_translation_tokenizers` wrote to `directory`; a directory
    of the earlier format (the two vocabularies and translator.json, which holds only their casing) reads too."""
    from keras_tx.data.tokenizers import FILENAME, load_tokenizer

    if os.path.isfile(os.path.join(directory, "source_" + FILENAME)):
        return load_tokenizer(directory, prefix="source_"), load_tokenizer(directory, prefix="target_")
    config = {}
    config_path = os.path.join(directory, TRANSLATOR_CONFIG_FILE)
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
    tokenizers = []
    for side, name in (("source", SOURCE_VOCABULARY_FILE), ("target", TARGET_VOCABULARY_FILE)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise ValueError(f"{directory!r} is not a translation model directory: it has no {name}.")
        with open(path, encoding="utf-8") as file:
            vocabulary = [line.rstrip("\n") for line in file]
        tokenizers.append(make_translation_tokenizer(vocabulary, config.get(f"{side}_lowercase", True)))
    return tuple(tokenizers)


# --------------------------------------------------------------------------------------------- batches


def split_pairs(pairs):
    pairs = list(pairs)
    if not pairs:
        raise ValueError("Expected at least one (source, target) pair, got none.")
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise ValueError(f"Expected (source, target) pairs, got e.g. {pairs[0]!r}.")
    return [s for s, _ in pairs], [t for _, t in pairs]


def translation_dataset(
    pairs,
    source_tokenizer,
    target_tokenizer,
    max_source_length,
    max_target_length,
    batch_size,
    shuffle=True,
    seed=None,
    drop_remainder=False,
):
    """Teacher-forced batches `({"encoder_token_ids", "decoder_token_ids"}, target_ids)` of sentence pairs.

    Args:
        pairs: a list of (source, target) strings.
        source_tokenizer, target_tokenizer: from `train_translation_tokenizers` (or `make_translation_tokenizer`).
        max_source_length: source pieces kept (longer sources are cut); the source is padded to this length.
        max_target_length: length of the decoder input and of the labels: [START] + up to max_target_length - 1
            pieces, and those pieces + [END] (a longer target is cut before [END]).
        batch_size: pairs per batch.
        shuffle, seed: reshuffle the pairs every epoch.
        drop_remainder: drop the last, smaller batch of each epoch (another batch shape means another XLA
            compilation with `jit_compile=True`; reshuffled, a different few pairs are left out each epoch).

    Returns:
        A tf.data.Dataset; every tensor is int32 and padded with 0, the tokenized pairs cached in memory. Label 0 is
        padding: train with `keras_tx.models.seq2seq.MaskedCrossentropy` (or a loss with `ignore_class=0`).

    Example:
    >>> train = translation_dataset(pairs, source_tokenizer, target_tokenizer, 40, 40, batch_size=64)
    >>> model.fit(train, epochs=10)
    """
    sources, targets = split_pairs(pairs)
    source_packer = keras_hub.layers.StartEndPacker(max_source_length, pad_value=0)
    target_packer = keras_hub.layers.StartEndPacker(
        max_target_length + 1,
        start_value=target_tokenizer.token_to_id(START),
        end_value=target_tokenizer.token_to_id(END),
        pad_value=0,
    )

    def pack(source, target):
        target_ids = target_packer(target_tokenizer(target))  # (B, T + 1): [START] pieces [END] 0 ...
        features = {
            "encoder_token_ids": source_packer(source_tokenizer(source)),  # (B, S)
            "decoder_token_ids": target_ids[:, :-1],  # (B, T)
        }
        return features, target_ids[:, 1:]

    dataset = tf.data.Dataset.from_tensor_slices((sources, targets))
    # Tokenize 1024 pairs at a time (once: cached), then batch as asked.
    dataset = dataset.batch(1024).map(pack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # unbatch() forgets the length; restoring it lets fit() show progress and know an epoch's steps up front.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(sources))).cache()
    if shuffle:
        dataset = dataset.shuffle(len(sources), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------- detokenizing

# WordPiece detokenizes to pieces joined by spaces ("a man ' s hat ."); these rules join punctuation back, so that
# the text reads naturally and BLEU's 13a tokenizer sees "man's" and "well-known" as references write them.
_DETOKENIZE_RULES = (
    (re.compile(r" ([.,!?;:%)\]}])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{$]) "), r"\1"),  # nor after opening punctuation
    (re.compile(r"(\w) ([-'’/]) (?=\w)"), r"\1\2"),  # a hyphen or an apostrophe inside a word
)


def _as_text(value):
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if hasattr(value, "numpy"):
        return _as_text(value.numpy())
    if isinstance(value, np.ndarray):
        return _as_text(value.item())
    return str(value)


def decode_target_ids(target_tokenizer, token_ids, end_id):
    """Text of each row of target ids, up to its first [END] (`end_id`) or padding: pieces joined, punctuation,
    hyphens and apostrophes attached (`keras_tx.data.graph_text.target_texts` is the same in graph ops)."""
    texts = []
    for row in np.asarray(token_ids):
        row = list(row)
        for stop in (end_id, 0):
            if stop in row:
                row = row[: row.index(stop)]
        text = _as_text(target_tokenizer.detokenize(np.asarray(row, "int32"))) if row else ""
        for pattern, replacement in _DETOKENIZE_RULES:
            text = pattern.sub(replacement, text)
        texts.append(text.strip())
    return texts
