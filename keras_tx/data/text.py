"""Text for the language models: where it comes from, how it is split, and the tf.data pipeline of windows.

Sources (`load_text`), each giving one string:
    a local text file                 load_text(text_file="input.txt")
    a TensorFlow Datasets dataset      load_text("tiny_shakespeare")  (prepared data only, unless download=True)
    a directory holding input.txt      load_text(data_dir="data/shakespeare_char")  (nanoGPT's layout)
    the offline default                load_text()  the Python documentation's topics (`pydoc_data.topics`),
                                       ~465 000 characters that ship with every Python, so a model trains
                                       with no network and no files.

A language model learns from windows of the token stream: the input is tokens t..t+T-1 and the target the same
window shifted by one, t+1..t+T, so every position of the window is a next-token example.
"""

import os

import numpy as np

DEFAULT_DATASET = "pydoc_topics"
# Splits of a tfds dataset that together give the whole text, in order. tiny_shakespeare's train, validation
# and test are consecutive slices of one file (90/5/5%): joined with "" they give nanoGPT's input.txt again.
_TFDS_DEFAULTS = {"tiny_shakespeare": ("train+validation+test", "")}


def embedded_text():
    """The offline default corpus: all help topics of the Python documentation, in sorted topic order.

    Example:
    >>> len(embedded_text()) > 100_000
    True
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def load_text(dataset=None, text_file=None, data_dir=None, download=False, split=None, text_key="text"):
    """One string of training text from a file, a tfds dataset, a directory with input.txt, or the default.

    Args:
        dataset: a TensorFlow Datasets name such as "tiny_shakespeare", or "pydoc_topics" (the embedded
            default). None: `data_dir/input.txt` if `data_dir` is given, else the embedded default.
        text_file: path of a UTF-8 text file; excludes `dataset`.
        data_dir: with `dataset`, the tfds data directory; without, a directory holding input.txt.
        download: let tfds download and prepare the dataset. Off by default: offline, tfds would retry the
            network for minutes; without it a dataset that is not prepared fails at once, with a ValueError.
        split: tfds split; default: all of tiny_shakespeare's splits in order, "train" for other datasets.
        text_key: the feature holding the text in a tfds example.

    Returns:
        The text, a str (a tfds dataset's examples are joined with blank lines).

    Example:
    >>> load_text().startswith('The "assert" statement')
    True
    """
    if text_file is not None:
        if dataset is not None:
            raise ValueError(f"Give `text_file` or `dataset`, not both (got {text_file!r} and {dataset!r}).")
        return _read(text_file)
    if dataset == DEFAULT_DATASET or (dataset is None and data_dir is None):
        return embedded_text()
    if dataset is None:
        path = os.path.join(data_dir, "input.txt")
        if not os.path.isfile(path):
            raise ValueError(f"No input.txt in data_dir={data_dir!r} (expected {path}).")
        return _read(path)
    return _load_tfds(dataset, data_dir, download, split, text_key)


def _read(path):
    if not os.path.exists(path):
        raise ValueError(f"Text file {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; --text-file takes a UTF-8 text file (--data-dir a folder).")
    if not os.path.isfile(path):  # a device such as /dev/zero, a pipe, a socket: it could be read forever
        raise ValueError(f"{path!r} is not a regular file; give a UTF-8 text file.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path!r} is not UTF-8 text: {error}.") from None
    if not text:
        raise ValueError(f"Text file {path!r} is empty.")
    return text


def _load_tfds(name, data_dir, download, split, text_key):
    import tensorflow_datasets as tfds  # only this source needs it, and it is slow to import

    default_split, separator = _TFDS_DEFAULTS.get(name, ("train", "\n\n"))
    split = split or default_split
    try:
        examples = tfds.load(name, split=split, data_dir=data_dir, download=download)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"{name!r} is not a TensorFlow Datasets dataset (nor {DEFAULT_DATASET!r}).") from None
    except AssertionError:  # what tfds raises for data that is not prepared, with download=False
        where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
        raise ValueError(
            f"The tfds dataset {name!r} is not prepared in {where}: pass download=True (needs the network), "
            "point data_dir at a prepared copy, or give a text file."
        ) from None
    if text_key not in examples.element_spec:
        raise ValueError(f"{name!r} has no {text_key!r} feature; its features are {sorted(examples.element_spec)}.")
    texts = [example[text_key].decode("utf-8") for example in examples.as_numpy_iterator()]
    return separator.join(texts)


def split_text(text, validation_fraction=0.1):
    """(train, validation): the first 1 - validation_fraction of the text and the rest, as nanoGPT does.

    A contiguous split, not a random one: random windows would put overlapping text on both sides.

    Example:
    >>> split_text("abcdefghij")
    ('abcdefghi', 'j')
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1), got {validation_fraction!r}.")
    cut = int(len(text) * (1 - validation_fraction))
    return text[:cut], text[cut:]


def language_model_dataset(ids, sequence_length, batch_size, shuffle=True, seed=None, stride=None, drop_remainder=True):
    """A tf.data pipeline of (inputs, targets) windows of a token stream, targets shifted by one.

    The windows start every `stride` tokens (default `sequence_length`: non-overlapping, so one epoch predicts
    every token once; nanoGPT instead samples random offsets, which only differs in where windows start).
    Training shuffles the order of the windows, differently each epoch but reproducibly for a seed;
    `shuffle=False` gives the deterministic validation pipeline (the same batches, in order, every time).

    Args:
        ids: 1-D token ids (list or numpy array).
        sequence_length: T, the length of each window.
        batch_size: windows per batch.
        shuffle: shuffle the windows (training) or keep them in order (validation).
        seed: seed of the shuffle.
        stride: tokens between window starts.
        drop_remainder: drop the last incomplete batch, so that every batch has the same static shape (what
            XLA and TPUs want).

    Returns:
        A `tf.data.Dataset` of (int32 (batch, T), int32 (batch, T)).

    Example:
    >>> x, y = next(iter(language_model_dataset(list(range(100)), 8, batch_size=4, shuffle=False)))
    >>> x.shape.as_list(), x[0, :3].numpy().tolist(), y[0, :3].numpy().tolist()
    ([4, 8], [0, 1, 2], [1, 2, 3])
    """
    import tensorflow as tf

    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be a 1-D sequence of integer token ids, got shape {ids.shape} {ids.dtype}.")
    stride = stride or sequence_length
    if len(ids) < sequence_length + 1:
        raise ValueError(f"{len(ids)} tokens are too few for one window of sequence_length={sequence_length} (+1).")
    starts = np.arange(0, len(ids) - sequence_length, stride, dtype="int32")  # every window fits
    if drop_remainder and len(starts) < batch_size:
        raise ValueError(
            f"{len(ids)} tokens make {len(starts)} windows of {sequence_length}, fewer than batch_size={batch_size}: "
            "use a smaller batch_size, sequence_length or stride, or more text."
        )
    tokens = tf.constant(ids.astype("int32"))

    def window(start):
        w = tf.slice(tokens, [start], [sequence_length + 1])  # (T + 1,), a static shape
        return w[:-1], w[1:]

    dataset = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle:
        dataset = dataset.shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
