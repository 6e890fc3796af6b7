"""What the notebooks of this folder share: their set-up and their data loaders (text, sentences, images).

Importing it runs the set-up (the environment, `REPO` on sys.path, `SMOKE`, quiet TensorFlow, plot style, seed) and
defines the loaders. A notebook's .py imports what it uses from here; build_notebooks.py writes the source of what
a cell imports in place of its `from nb_setup import ...` line, so that every .ipynb stands alone for its readers.
Names that are not functions stand for the whole set-up code above the first function. Changing this file changes
the cells of every notebook that imports the changed part: re-execute those (see README.md).
"""
import os
import sys
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The repository root (the folder holding keras_tx/), so that `import keras_tx` works from notebooks/.
REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "keras_tx" / "__init__.py").is_file())
sys.path.insert(0, str(REPO))
# KERAS_TX_SMOKE=1: toy sizes, the whole notebook runs in seconds (tests/test_notebooks.py sets it).
SMOKE = os.environ.get("KERAS_TX_SMOKE") == "1"
NOTEBOOK_START = time.perf_counter()

import matplotlib.pyplot as plt
import numpy as np

# TensorFlow's C++ start-up messages ignore TF_CPP_MIN_LOG_LEVEL; keep them out of the notebook's outputs.
_stderr = os.dup(2)
with open(os.devnull, "w") as devnull:
    os.dup2(devnull.fileno(), 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(_stderr, 2)
        os.close(_stderr)
import keras
from keras import ops

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
keras.utils.set_random_seed(0)
print(f"keras {keras.__version__} on {keras.backend.backend()}, {'SMOKE size' if SMOKE else 'default size'}")


def load_text():
    """tiny_shakespeare from $KERAS_TX_DATA or ../shared/datasets (relative to the repository root); else the
    text of Python's own documentation (keras_tx.data.text.embedded_text: pydoc_data.topics, in every Python)."""
    candidates = []
    if os.environ.get("KERAS_TX_DATA"):
        data = Path(os.environ["KERAS_TX_DATA"])
        candidates += [data, data / "tiny_shakespeare" / "input.txt", data / "input.txt"]
    candidates.append(REPO / ".." / "shared" / "datasets" / "tiny_shakespeare" / "input.txt")
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            print(f"data: tiny_shakespeare ({path.name} in {path.parent.name}/), {len(text):,} characters")
            return text, "tiny_shakespeare"
    from keras_tx.data.text import embedded_text

    text = embedded_text()
    print(f"tiny_shakespeare NOT FOUND (looked at {[str(p) for p in candidates]}); using Python's "
          f"pydoc_data.topics text instead, {len(text):,} characters. The numbers below are for that text.")
    return text, "pydoc_data.topics"


def char_ids(text):
    """`text` as character ids, one per character in sorted order (keras_tx.data.CharTokenizer): (vocabulary,
    char_to_id, train_ids, val_ids); the validation ids are the last 10% of the characters, never trained on."""
    from keras_tx.data import CharTokenizer

    tokenizer = CharTokenizer.from_text(text)
    vocabulary, ids = tokenizer.vocabulary, tokenizer.encode(text)
    split = int(0.9 * len(ids))
    print(f"{len(vocabulary)} distinct characters; {split:,} for training, {len(ids) - split:,} for validation")
    return vocabulary, {c: i for i, c in enumerate(vocabulary)}, ids[:split], ids[split:]


def windows(token_ids, length, count=None, rng=None):
    """(inputs, targets) windows of `length` characters, targets shifted by one. Random starts when `rng` is
    given (training), otherwise consecutive non-overlapping windows (validation, covering all of it)."""
    if rng is not None:
        starts = rng.integers(0, len(token_ids) - length - 1, size=count)
    else:
        starts = np.arange(0, len(token_ids) - length - 1, length)[:count]
    offsets = starts[:, None] + np.arange(length)[None, :]
    return token_ids[offsets], token_ids[offsets + 1]


def load_sentences():
    """SST-2 sentences and labels (keras_tx.data.load_sst2) from $KERAS_TX_DATA/sst2 or ../shared/datasets/sst2;
    else lines of Python's own documentation (keras_tx.data.text.embedded_text: pydoc_data.topics), without labels."""
    from keras_tx.data import load_sst2
    from keras_tx.data.text import embedded_text

    folders = []
    if os.environ.get("KERAS_TX_DATA"):
        folders += [Path(os.environ["KERAS_TX_DATA"]) / "sst2", Path(os.environ["KERAS_TX_DATA"])]
    folders.append(REPO / ".." / "shared" / "datasets" / "sst2")
    for folder in folders:
        if (folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file():
            train, dev = load_sst2(str(folder), "train"), load_sst2(str(folder), "validation")
            print(f"data: SST-2 ({folder.name}/): {len(train[0]):,} training and {len(dev[0]):,} validation "
                  "sentences with sentiment labels")
            return train, dev, "SST-2"
    lines = [" ".join(line.lower().split()) for line in embedded_text().splitlines()]
    lines = [line for line in lines if len(line.split()) >= 5]
    cut = int(0.9 * len(lines))
    print(f"SST-2 NOT FOUND (looked at {[str(f) for f in folders]}); using {len(lines):,} lines of Python's "
          "pydoc_data.topics instead, WITHOUT labels. The numbers below are for that text.")
    return (lines[:cut], None), (lines[cut:], None), "pydoc_data.topics"


def load_images():
    """Fashion-MNIST (keras_tx.data.load_idx) from $KERAS_TX_DATA/fashion_mnist or ../shared/datasets/fashion_mnist;
    else scikit-learn's 1,797 digits upscaled to 28x28 (keras_tx.data.load_digits_images), which need no download."""
    from keras_tx.data import load_digits_images, load_idx

    folders = []
    if os.environ.get("KERAS_TX_DATA"):
        folders += [Path(os.environ["KERAS_TX_DATA"]) / "fashion_mnist", Path(os.environ["KERAS_TX_DATA"])]
    folders.append(REPO / ".." / "shared" / "datasets" / "fashion_mnist")
    for folder in folders:
        if any(folder.glob("train-images-idx3-ubyte*")) and any(folder.glob("t10k-images-idx3-ubyte*")):
            data = load_idx(str(folder))
            print(f"data: Fashion-MNIST ({folder.name}/): {len(data.x_train):,} training and {len(data.x_test):,} "
                  f"test images {data.x_train.shape[1:]}")
            return data, "Fashion-MNIST"
    data = load_digits_images(image_size=28)
    print(f"Fashion-MNIST NOT FOUND (looked at {[str(f) for f in folders]}); using scikit-learn's digits, upscaled "
          f"to 28x28 ({len(data.x_train):,} training / {len(data.x_test):,} test images). "
          "The numbers below are for those.")
    return data, "digits (scikit-learn)"


# What the set-up defines for the notebooks (after the functions: build_notebooks.py writes nothing of this part).
__all__ = ["NOTEBOOK_START", "REPO", "SMOKE", "keras", "np", "ops", "plt", "tf", "time"]
__all__ += ["char_ids", "load_images", "load_sentences", "load_text", "windows"]
