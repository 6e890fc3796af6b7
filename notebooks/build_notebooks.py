"""Writes the notebooks of this folder from the cell sources below, and optionally executes them.

The .ipynb files are what readers open; this script is where they are edited, so that the notebooks share one
set-up cell and their data loaders (text, sentences, images). After editing, regenerate and re-execute (at default size, a few minutes
each on two CPU cores) so that the committed notebooks carry their outputs:

    python notebooks/build_notebooks.py --execute            # all notebooks
    python notebooks/build_notebooks.py --execute 02         # only those whose name contains "02"

Without --execute the notebooks are written without outputs (tests/test_notebooks.py then refuses them).
`KERAS_TX_SMOKE=1` in the environment makes every notebook run at toy size in seconds (what the tests do).
"""

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def md(source):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(source).strip())


def code(*parts):
    """A code cell from one or more source strings, each dedented on its own."""
    return nbformat.v4.new_code_cell("\n".join(textwrap.dedent(part).strip() for part in parts))


SETUP = """
%matplotlib inline
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
"""

LOAD_TEXT = '''
def load_text():
    """tiny_shakespeare from $KERAS_TX_DATA or ../shared/datasets (relative to the repository root); else the
    text of Python's own documentation (pydoc_data.topics), which ships with every Python."""
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
    from pydoc_data.topics import topics

    text = "\\n\\n".join(topics[name] for name in sorted(topics))
    print(f"tiny_shakespeare NOT FOUND (looked at {[str(p) for p in candidates]}); using Python's "
          f"pydoc_data.topics text instead, {len(text):,} characters. The numbers below are for that text.")
    return text, "pydoc_data.topics"


text, text_source = load_text()
vocabulary = sorted(set(text))
char_to_id = {c: i for i, c in enumerate(vocabulary)}
ids = np.array([char_to_id[c] for c in text], dtype="int32")
split = int(0.9 * len(ids))
train_ids, val_ids = ids[:split], ids[split:]  # validation: the last 10% of the characters, never trained on
print(f"{len(vocabulary)} distinct characters; {len(train_ids):,} for training, {len(val_ids):,} for validation")

'''

WINDOWS = '''
def windows(token_ids, length, count=None, rng=None):
    """(inputs, targets) windows of `length` characters, targets shifted by one. Random starts when `rng` is
    given (training), otherwise consecutive non-overlapping windows (validation, covering all of it)."""
    if rng is not None:
        starts = rng.integers(0, len(token_ids) - length - 1, size=count)
    else:
        starts = np.arange(0, len(token_ids) - length - 1, length)[:count]
    offsets = starts[:, None] + np.arange(length)[None, :]
    return token_ids[offsets], token_ids[offsets + 1]
'''
LOAD_TEXT = LOAD_TEXT + WINDOWS

ELAPSED = """
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
"""

QUIET = """
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, imported by keras-hub"""

LOAD_SENTENCES = '''
def load_sentences():
    """SST-2 sentences and labels (keras_tx.data.load_sst2) from $KERAS_TX_DATA/sst2 or ../shared/datasets/sst2;
    else lines of Python's own documentation (pydoc_data.topics), without labels."""
    from keras_tx.data import load_sst2

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
    from pydoc_data.topics import topics

    lines = [" ".join(line.lower().split()) for name in sorted(topics) for line in topics[name].splitlines()]
    lines = [line for line in lines if len(line.split()) >= 5]
    cut = int(0.9 * len(lines))
    print(f"SST-2 NOT FOUND (looked at {[str(f) for f in folders]}); using {len(lines):,} lines of Python's "
          "pydoc_data.topics instead, WITHOUT labels. The numbers below are for that text.")
    return (lines[:cut], None), (lines[cut:], None), "pydoc_data.topics"
'''

LOAD_IMAGES = '''
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


data, image_source = load_images()
class_names = data.class_names
'''


def notebook_01():
    return [
        md("""
        # 1. RNN vs LSTM: gradients through time, parameters, and a language model

        **Steps 1 and 2** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
        Transformer -> GPT / BERT / ViT / image GPT. The claims (see `keras_tx/layers/recurrent.py`):

        1. In a `SimpleRNN`, the gradient reaching step *t* from a loss at step *T* is a product of *T - t*
           Jacobians of `h_t = tanh(x_t W + h_{t-1} U + b)` and vanishes geometrically; the LSTM's additive cell
           state `c_t = f * c_{t-1} + i * g` lets it reach much further back.
        2. An LSTM has 4x the parameters of an RNN of the same width (four gates: input, forget, candidate, output).
        3. On real text (tiny_shakespeare, characters), an LSTM language model beats an RNN language model of the
           same width trained with the same step budget, measured by the loss on the last 10% of the text.

        Everything here uses `keras_tx.layers.SimpleRNN` and `keras_tx.layers.LSTM` (our own cell maths).
        """),
        code(SETUP + "\nfrom keras_tx.layers import LSTM, SimpleRNN"),
        md("""
        ## Parameters at the same width

        A `SimpleRNN` of `units` has a kernel (features, units), a recurrent kernel (units, units) and a bias
        (units,). An LSTM has the same three, each four blocks wide (gates i, f, c, o in Keras' layout).
        """),
        code("""
        WIDTH = 16 if SMOKE else 128
        FEATURES = 64
        counts = {}
        for cls in (SimpleRNN, LSTM):
            layer = cls(WIDTH)
            layer(np.zeros((1, 3, FEATURES), "float32"))
            counts[cls.__name__] = layer.count_params()
            shapes = ", ".join(f"{w.path.split('/')[-1]} {tuple(w.shape)}" for w in layer.weights)
            print(f"{cls.__name__:>9}({WIDTH}) on {FEATURES} features: {counts[cls.__name__]:>7,} parameters  [{shapes}]")
        param_ratio = counts["LSTM"] / counts["SimpleRNN"]
        print(f"LSTM / SimpleRNN = {param_ratio:g}  "
              f"(units * (features + units + 1) = {WIDTH * (FEATURES + WIDTH + 1):,}, times 4 for the LSTM)")
        assert param_ratio == 4
        """),
        md("""
        ## How far back does the gradient reach? (untrained layers)

        A loss at the last step *T* only (the sum of `h_T`); we measure `||dL/dx_t||` (over batch and features) for
        every earlier input *x_t*, divided by its value at *t = T*, and plot it against the distance *T - t*.
        Inputs are Gaussian noise; median over several seeds (layer initialisation and inputs both seeded).
        """),
        code("""
        LENGTH = 40 if SMOKE else 200
        SEEDS = range(1 if SMOKE else 5)


        def gradient_through_time(layer, inputs):
            \"\"\"||dL/dx_t|| / ||dL/dx_T|| for a loss at the last step only, indexed by the distance T - t.\"\"\"
            inputs = tf.convert_to_tensor(inputs)
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(layer(inputs)[:, -1])
            per_step = tf.norm(tape.gradient(loss, inputs), axis=(0, 2)).numpy()[::-1]
            return per_step / per_step[0]


        init_curves = {}
        for cls in (SimpleRNN, LSTM):
            runs = []
            for seed in SEEDS:
                keras.utils.set_random_seed(seed)
                noise = np.random.default_rng(seed).normal(size=(8, LENGTH, FEATURES)).astype("float32")
                runs.append(gradient_through_time(cls(WIDTH, return_sequences=True), noise))
            init_curves[cls.__name__] = np.median(runs, axis=0)


        def first_zero(curve):
            zeros = np.flatnonzero(curve == 0)
            return f"exactly 0 in float32 from distance {zeros[0]}" if len(zeros) else "never exactly 0"


        distances = [d for d in (1, 10, 25, 50, 100, 150, LENGTH - 1) if d < LENGTH]
        print("relative gradient at distance T - t:  " + "  ".join(f"{d:>8}" for d in distances))
        for name, curve in init_curves.items():
            print(f"{name:>36}:  " + "  ".join(f"{curve[d]:8.1e}" for d in distances)
                  + f"   ({first_zero(curve)})")
        """),
        code("""
        def plot_curves(ax, curves, style="-", label_suffix=""):
            for (name, curve), color in zip(curves.items(), ("tab:red", "tab:blue")):
                distance = np.arange(len(curve))
                shown = curve > 0  # exact zeros (float32 underflow) cannot be drawn on a log axis
                ax.semilogy(distance[shown], curve[shown], style, color=color, label=name + label_suffix)


        fig, ax = plt.subplots(figsize=(8, 4))
        plot_curves(ax, init_curves)
        ax.set(xlabel="distance T - t (steps back from the loss)", ylabel="||dL/dx_t|| / ||dL/dx_T||",
               title=f"Gradient through time, untrained layers of width {WIDTH}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
        plt.show()
        """),
        md("""
        Both decay geometrically at initialisation (the LSTM's forget gate starts at sigmoid(1) = 0.73, so its
        memory is short too), but the RNN's gradient falls orders of magnitude faster and underflows to exactly
        zero in float32, where the curve stops. Training can open the LSTM's forget gates (f -> 1); the RNN has no
        such path. Whether that matters shows on real data.

        ## Character language models on tiny_shakespeare

        `Embedding -> SimpleRNN or LSTM (return_sequences=True) -> Dense(vocabulary)`, next-character prediction.
        Both models get the same width, the same embedding, the same optimizer (Adam, learning rate 1e-2, gradient
        norm clipped to 1) and the very same batches in the same order. The RNN was also tried at 3e-3: it was
        worse for the RNN at this budget, so 1e-2 does not handicap it.
        """),
        code(LOAD_TEXT),
        code("""
        SEQ = 16 if SMOKE else 64
        BATCH = 8 if SMOKE else 32
        STEPS = 4 if SMOKE else 600
        EVAL_EVERY = STEPS if SMOKE else 100
        EMBED = 16 if SMOKE else 64

        x_train, y_train = windows(train_ids, SEQ, STEPS * BATCH, np.random.default_rng(0))
        x_val, y_val = windows(val_ids, SEQ, count=16 if SMOKE else None)
        x_val_quick, y_val_quick = x_val[::4], y_val[::4]  # a quarter of it, for the learning curves
        print(f"training windows {x_train.shape}, validation windows {x_val.shape} "
              f"({x_val.size:,} of the {len(val_ids):,} validation characters)")


        def language_model(recurrent):
            return keras.Sequential([
                keras.Input((None,), dtype="int32"),
                keras.layers.Embedding(len(vocabulary), EMBED),
                recurrent,
                keras.layers.Dense(len(vocabulary)),
            ])


        models, curves, val_loss, train_seconds = {}, {}, {}, {}
        for cls in (SimpleRNN, LSTM):
            name = cls.__name__
            keras.utils.set_random_seed(0)
            model = language_model(cls(WIDTH, return_sequences=True))
            model.compile(keras.optimizers.Adam(1e-2, clipnorm=1.0),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            curves[name] = [(0, model.evaluate(x_val_quick, y_val_quick, batch_size=256, verbose=0))]
            start = time.perf_counter()
            for chunk in range(STEPS // EVAL_EVERY):
                rows = slice(chunk * EVAL_EVERY * BATCH, (chunk + 1) * EVAL_EVERY * BATCH)
                model.fit(x_train[rows], y_train[rows], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
                curves[name].append(((chunk + 1) * EVAL_EVERY,
                                     model.evaluate(x_val_quick, y_val_quick, batch_size=256, verbose=0)))
            train_seconds[name] = time.perf_counter() - start
            val_loss[name] = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
            models[name] = model
            print(f"{name:>9}: {model.count_params():>7,} parameters, {STEPS} steps in {train_seconds[name]:5.1f} s, "
                  f"validation loss {val_loss[name]:.4f} nats/char ({val_loss[name] / np.log(2):.3f} bits/char)")

        frequencies = np.bincount(train_ids, minlength=len(vocabulary)) / len(train_ids)
        unigram = -np.sum(frequencies * np.log(np.maximum(frequencies, 1e-12)))
        print(f"reference: a model that only knows character frequencies scores {unigram:.4f} nats/char")
        """),
        code("""
        fig, ax = plt.subplots(figsize=(7, 4))
        for (name, curve), color in zip(curves.items(), ("tab:red", "tab:blue")):
            steps, losses = zip(*curve)
            ax.plot(steps, losses, "o-", color=color, label=f"{name}({WIDTH})  final {val_loss[name]:.3f}")
        ax.axhline(unigram, color="gray", ls=":", label=f"character frequencies only ({unigram:.2f})")
        ax.set(xlabel="training step", ylabel="validation loss (nats / character)",
               title=f"Character LMs on {text_source}: loss on the last 10% of the text")
        ax.legend()
        plt.show()
        """),
        md("""
        ## How far back does the gradient reach in the trained models?

        The same measurement as above, now on the trained language models and real text: the loss is the
        cross-entropy of the prediction at the last position of a validation window, the gradient is taken with
        respect to the embedded characters.
        """),
        code("""
        def trained_gradient_through_time(model, tokens, targets):
            embedding, recurrent, head = model.layers
            with tf.GradientTape() as tape:
                embedded = embedding(tokens)
                tape.watch(embedded)
                logits = head(recurrent(embedded))[:, -1]
                loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(targets[:, -1], logits,
                                                                                  from_logits=True))
            per_step = tf.norm(tape.gradient(loss, embedded), axis=(0, 2)).numpy()[::-1]
            return per_step / per_step[0]


        long_x, long_y = windows(val_ids, LENGTH, count=16)
        trained_curves = {name: trained_gradient_through_time(model, long_x, long_y) for name, model in models.items()}
        print("relative gradient at distance T - t:  " + "  ".join(f"{d:>8}" for d in distances))
        for name, curve in trained_curves.items():
            print(f"{name + ' (trained)':>36}:  " + "  ".join(f"{curve[d]:8.1e}" for d in distances)
                  + f"   ({first_zero(curve)})")

        fig, ax = plt.subplots(figsize=(8, 4))
        plot_curves(ax, trained_curves, "-", " trained")
        plot_curves(ax, init_curves, ":", " untrained")
        ax.set(xlabel="distance T - t (steps back from the loss)", ylabel="||dL/dx_t|| / ||dL/dx_T||",
               title="Gradient through time, trained character LMs on validation text")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
        plt.show()
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display

        d = max(x for x in distances if x <= 100)
        lstm_wins = val_loss["LSTM"] < val_loss["SimpleRNN"]
        display(Markdown(f\"\"\"
        - **Parameters:** at width {WIDTH} on {FEATURES}-wide inputs the LSTM has {counts['LSTM']:,} parameters, the
          SimpleRNN {counts['SimpleRNN']:,}: ratio **{param_ratio:g}**.
        - **Gradient through time (untrained):** {d} steps back from the loss the relative gradient is
          **{init_curves['SimpleRNN'][d]:.1e}** for the SimpleRNN and **{init_curves['LSTM'][d]:.1e}** for the LSTM
          (SimpleRNN: {first_zero(init_curves['SimpleRNN'])}; LSTM: {first_zero(init_curves['LSTM'])}).
        - **Gradient through time (trained, real text):** at distance {d}: SimpleRNN
          **{trained_curves['SimpleRNN'][d]:.1e}**, LSTM **{trained_curves['LSTM'][d]:.1e}**; at distance {LENGTH - 1}:
          SimpleRNN {trained_curves['SimpleRNN'][-1]:.1e}, LSTM {trained_curves['LSTM'][-1]:.1e}
          (SimpleRNN: {first_zero(trained_curves['SimpleRNN'])}; LSTM: {first_zero(trained_curves['LSTM'])}).
        - **Language model ({text_source}, {STEPS} steps of {BATCH} x {SEQ} characters, width {WIDTH}):**
          validation loss on the last 10% of the characters: SimpleRNN **{val_loss['SimpleRNN']:.3f}**,
          LSTM **{val_loss['LSTM']:.3f}** nats/char (frequencies alone: {unigram:.3f}).
          {'The LSTM is better' if lstm_wins else 'The LSTM is NOT better'} by
          {abs(val_loss['SimpleRNN'] - val_loss['LSTM']):.3f} nats/char, at
          {train_seconds['LSTM'] / train_seconds['SimpleRNN']:.1f}x the training time.
        \"\"\"))
        if not SMOKE and text_source == "tiny_shakespeare":  # the claim, at the size it was made for
            assert lstm_wins, val_loss
        """, ELAPSED),
    ]


def notebook_02():
    return [
        md("""
        # 2. Scaled dot-product attention, and why it divides by sqrt(d_k)

        **Step 3** of the line RNN -> LSTM -> **attention** -> self-attention -> multi-head attention ->
        Transformer -> GPT / BERT / ViT / image GPT. An RNN squeezes the past into one state vector; attention
        lets every position read every other position directly:

        $$\\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{d_k}}\\right) V$$

        The claims (see `keras_tx/layers/attention.py`):

        1. What it computes: each output row is an average of the value rows, weighted by how well that position's
           query matches each key. Shown on a real sentence with `keras_tx.layers.scaled_dot_product_attention`
           and `keras_tx.layers.SelfAttention`.
        2. Without the 1/sqrt(d_k), the dot products of d_k-dimensional vectors grow like sqrt(d_k), the softmax
           saturates (one weight near 1, the rest near 0: entropy -> 0) and the gradient reaching the logits
           vanishes. With it, both stay put as d_k grows.
        """),
        code(SETUP + "\nfrom keras_tx.layers import SelfAttention, masked_softmax, scaled_dot_product_attention"),
        md("""
        ## What softmax(QK^T / sqrt(d_k)) V computes, on a real sentence

        Each distinct word gets a random but fixed vector (seeded); the sentence is the sequence of its words'
        vectors X. First the bare operation with Q = K = V = X: a word's query matches its own key best, and
        equally well the key of another occurrence of the same word.
        """),
        code("""
        SENTENCE = "to be or not to be that is the question"
        words = SENTENCE.split()
        distinct = sorted(set(words))
        D_MODEL = 16
        table = np.random.default_rng(0).normal(size=(len(distinct), D_MODEL)).astype("float32")
        X = table[[distinct.index(w) for w in words]]  # (T, d): one row per word of the sentence

        output, weights = scaled_dot_product_attention(X[None], X[None], X[None])  # batch of one
        output, weights = ops.convert_to_numpy(output)[0], ops.convert_to_numpy(weights)[0]

        # The same thing by hand, in numpy: scores, row-wise softmax, weighted average of the values.
        scores = X @ X.T / np.sqrt(D_MODEL)
        by_hand = np.exp(scores - scores.max(axis=1, keepdims=True))
        by_hand /= by_hand.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(weights, by_hand, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(output, by_hand @ X, rtol=1e-4, atol=1e-5)
        print("weights and output equal the numpy computation; every row sums to", weights.sum(axis=1).round(6)[:3], "...")
        print("output of 'to' (position 0) vs 'to' (position 4): max |difference| =",
              float(np.abs(output[0] - output[4]).max()), "(no positions: the same word gives the same output)")


        def heat_map(ax, matrix, title, labels=words):
            image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(labels)), labels, rotation=60)
            ax.set_yticks(range(len(labels)), labels)
            ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
            ax.grid(False)
            for i in range(matrix.shape[0]):
                for j in range(matrix.shape[1]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if matrix[i, j] > 0.5 else "white")
            return image


        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        fig.colorbar(heat_map(ax, weights, "softmax(X X^T / sqrt(d)), Q = K = V = X"), ax=ax)
        plt.show()
        """),
        md("""
        Now `SelfAttention`, one head with learned query/key/value projections (here at their random
        initialisation), bidirectional and with the causal mask that a decoder uses (notebook 4).
        """),
        code("""
        keras.utils.set_random_seed(0)
        attention = SelfAttention(D_MODEL)
        _, bidirectional = attention(X[None], return_attention_scores=True)
        causal_attention = SelfAttention(D_MODEL, use_causal_mask=True)
        causal_attention(X[None])
        causal_attention.set_weights(attention.get_weights())  # the same projections, only the mask differs
        _, causal = causal_attention(X[None], return_attention_scores=True)
        bidirectional, causal = ops.convert_to_numpy(bidirectional)[0], ops.convert_to_numpy(causal)[0]
        assert np.all(np.triu(causal, k=1) == 0), "a causal row must give zero weight to later words"

        fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
        heat_map(axes[0], bidirectional, "SelfAttention (random projections)")
        heat_map(axes[1], causal, "SelfAttention(use_causal_mask=True)")
        plt.show()
        """),
        md("""
        ## Without the scale the softmax saturates as d_k grows

        Queries and keys with independent unit-variance entries, as a layer's projections produce at
        initialisation: `q . k` is a sum of d_k products of unit variance, so its standard deviation is sqrt(d_k).
        We compute the attention with the scale (1/sqrt(d_k)) and without it (scale = 1), with our
        `masked_softmax`, check the output equals `scaled_dot_product_attention(..., scale=...)`, and measure:

        - the entropy of each attention row (ln S = uniform over the S keys; 0 = all weight on one key),
        - the largest weight of each row,
        - the norm of the gradient reaching the logits, for a loss `sum(output * g)` with a fixed random `g`.
        """),
        code("""
        D_KS = [4, 64] if SMOKE else [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        BATCH, T, S, D_V = (4, 8, 8, 8) if SMOKE else (64, 16, 16, 16)
        rng = np.random.default_rng(0)
        STATS = ("logit_std", "entropy", "max_weight", "grad_median", "grad_mean")
        stats = {scaled: {k: [] for k in STATS} for scaled in (True, False)}
        examples = {}
        for d_k in D_KS:
            q = tf.constant(rng.normal(size=(BATCH, T, d_k)).astype("float32"))
            k = tf.constant(rng.normal(size=(BATCH, S, d_k)).astype("float32"))
            v = tf.constant(rng.normal(size=(BATCH, S, D_V)).astype("float32"))
            g = tf.constant(rng.normal(size=(BATCH, T, D_V)).astype("float32"))  # a fixed upstream gradient
            for scaled in (True, False):
                scale = 1 / np.sqrt(d_k) if scaled else 1.0
                with tf.GradientTape() as tape:
                    logits = tf.matmul(q, k, transpose_b=True) * scale  # (B, T, S)
                    tape.watch(logits)
                    w = masked_softmax(logits)
                    out = tf.matmul(w, v)
                    loss = tf.reduce_sum(out * g)
                grad_logits = tape.gradient(loss, logits)
                reference, _ = scaled_dot_product_attention(q, k, v, scale=scale)
                np.testing.assert_allclose(out.numpy(), ops.convert_to_numpy(reference), rtol=1e-4, atol=1e-4)
                w = w.numpy()
                entropy = -np.sum(w * np.log(np.maximum(w, 1e-30)), axis=-1)
                s = stats[scaled]
                s["logit_std"].append(float(np.std(logits.numpy())))
                s["entropy"].append(float(entropy.mean()))
                s["max_weight"].append(float(w.max(axis=-1).mean()))
                row_grads = np.linalg.norm(grad_logits.numpy(), axis=-1)  # one norm per attention row
                s["grad_median"].append(float(np.median(row_grads)))
                s["grad_mean"].append(float(row_grads.mean()))
                examples[(d_k, scaled)] = w[0]

        print(f"{'d_k':>5} | {'logit std':>17} | {'row entropy (nats)':>19} | {'max weight':>13} | "
              f"{'|dL/dlogits| of a row: median':>29} | {'mean':>19}")
        print(f"{'':>5} | {'scaled':>8} {'raw':>8} | {'scaled':>9} {'raw':>9} | {'scaled':>6} {'raw':>6} | "
              f"{'scaled':>14} {'raw':>14} | {'scaled':>9} {'raw':>9}")
        for i, d_k in enumerate(D_KS):
            a, b = stats[True], stats[False]
            print(f"{d_k:>5} | {a['logit_std'][i]:8.2f} {b['logit_std'][i]:8.2f} | {a['entropy'][i]:9.3f} "
                  f"{b['entropy'][i]:9.3f} | {a['max_weight'][i]:6.3f} {b['max_weight'][i]:6.3f} | "
                  f"{a['grad_median'][i]:14.2e} {b['grad_median'][i]:14.2e} | {a['grad_mean'][i]:9.2e} {b['grad_mean'][i]:9.2e}")
        print(f"uniform attention over S = {S} keys has entropy ln S = {np.log(S):.3f}")
        """),
        code("""
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for scaled, color, label in ((True, "tab:blue", "softmax(QK^T / sqrt(d_k))"), (False, "tab:red", "softmax(QK^T)")):
            axes[0].semilogx(D_KS, stats[scaled]["entropy"], "o-", color=color, label=label, base=2)
            axes[1].semilogx(D_KS, stats[scaled]["max_weight"], "o-", color=color, label=label, base=2)
            axes[2].semilogx(D_KS, stats[scaled]["grad_median"], "o-", color=color, label=label + ", median row", base=2)
            axes[2].semilogx(D_KS, stats[scaled]["grad_mean"], "s--", color=color, label=label + ", mean", base=2,
                             alpha=0.6)
        axes[0].axhline(np.log(S), color="gray", ls=":", label=f"uniform: ln {S}")
        axes[0].set(xlabel="d_k", ylabel="mean entropy of an attention row (nats)", title="Entropy of the attention rows")
        axes[1].set(xlabel="d_k", ylabel="mean largest weight of a row", title="How peaked the rows are")
        axes[2].set(xlabel="d_k", ylabel="||dL/dlogits|| of an attention row", title="Gradient reaching the logits",
                    yscale="log")
        for ax in axes:
            ax.legend(fontsize=8)
        plt.show()

        largest = D_KS[-1]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, scaled in zip(axes, (True, False)):
            image = ax.imshow(examples[(largest, scaled)], cmap="viridis", vmin=0, vmax=1)
            ax.set(title=f"softmax(QK^T{' / sqrt(d_k)' if scaled else ''})", xlabel="key", ylabel="query")
            ax.grid(False)
        fig.colorbar(image, ax=axes)
        fig.suptitle(f"Attention weights of {T} random queries over {S} random keys at d_k = {largest}", y=1.03)
        plt.show()
        """),
        md("""
        The softmax's Jacobian is `diag(w) - w w^T`: when one weight is near 1 and the rest near 0 it is near
        zero everywhere, so almost no gradient reaches the logits, and through them the query and key projections.
        The scale keeps the logits at unit standard deviation whatever d_k, so the rows stay soft and trainable.

        ## Conclusion (numbers computed above)
        """),
        code("""
        from IPython.display import Markdown, display

        a, b, i = stats[True], stats[False], len(D_KS) - 1
        display(Markdown(f\"\"\"
        - **What it computes:** on "{SENTENCE}", `scaled_dot_product_attention` equals the numpy computation
          softmax(X X^T / sqrt(d)) X; the two occurrences of "to" get the same weight from each other's query
          ({weights[0, 4]:.2f} vs {weights[0, 0]:.2f} on itself) and identical outputs.
        - **Logit scale:** at d_k = {D_KS[i]} the logits' standard deviation is **{b['logit_std'][i]:.1f}** without the
          scale (~sqrt(d_k) = {np.sqrt(D_KS[i]):.1f}) and **{a['logit_std'][i]:.2f}** with it.
        - **Saturation:** mean row entropy at d_k = {D_KS[0]} -> {D_KS[i]}: scaled **{a['entropy'][0]:.2f} -> {a['entropy'][i]:.2f}**
          nats, unscaled **{b['entropy'][0]:.2f} -> {b['entropy'][i]:.2f}** nats (uniform: ln {S} = {np.log(S):.2f});
          the largest weight of a row is {a['max_weight'][i]:.2f} scaled vs **{b['max_weight'][i]:.2f}** unscaled.
        - **Gradient reaching the logits** (norm per attention row) at d_k = {D_KS[i]}: median row
          **{a['grad_median'][i]:.2e}** scaled vs **{b['grad_median'][i]:.2e}** unscaled
          ({a['grad_median'][i] / b['grad_median'][i]:,.0f}x smaller without the scale; at d_k = {D_KS[0]}:
          {a['grad_median'][0] / b['grad_median'][0]:.1f}x). The mean over rows falls less,
          {a['grad_mean'][i]:.2f} vs {b['grad_mean'][i]:.2f} ({a['grad_mean'][i] / b['grad_mean'][i]:.1f}x), because the few
          rows that happen not to saturate carry most of the remaining gradient.
        \"\"\"))
        if not SMOKE:
            assert b["entropy"][i] < 0.5 * a["entropy"][i] and b["grad_median"][i] < 0.01 * a["grad_median"][i]
            assert b["grad_mean"][i] < b["grad_mean"][0] and abs(np.log(a["grad_mean"][i] / a["grad_mean"][0])) < 1
        """, ELAPSED),
    ]


def notebook_03():
    return [
        md("""
        # 3. Multi-head attention: the heads of a trained model attend to different things

        **Step 5** of the line RNN -> LSTM -> attention -> self-attention -> **multi-head attention** ->
        Transformer -> GPT / BERT / ViT / image GPT. One attention head computes one weighted average per
        position, so it can follow one relation at a time. Multi-head attention runs `num_heads` of them side by
        side, each with its own (smaller) query/key/value projections, and concatenates their outputs
        (`keras_tx.layers.MultiHeadAttention`). The claims, on two trained models shipped in `saved_models/`:

        1. In the character GPT `gpt_shakespeare` (4 blocks x 4 heads, trained on tiny_shakespeare) the 16 heads
           attend to different things: measured on held-out text, heads differ several-fold in how much weight
           they put on the previous character, on themselves, on earlier occurrences of their own character, on
           spaces and punctuation, and in how far back they look.
        2. They are not interchangeable: removing one head at a time (zeroing its slice of the output
           projection) raises the validation loss by very different amounts.
        3. In the BERT masked LM `bert_mlm` (2 blocks x 2 heads, trained on SST-2 sentences) heads look both
           backward and forward, which no GPT head can (the causal mask), and differ from each other as well.
        """),
        code(SETUP + QUIET + """
from keras_tx import recipes
from keras_tx.data import encode_texts"""),
        md("""
        ## The trained GPT and its held-out text

        `keras_tx.recipes.load_language_model` gives the model, its character tokenizer and its metadata. It was
        trained on the first 90% of tiny_shakespeare; everything below reads the last 10%.
        """),
        code("""
        gpt, char_tokenizer, gpt_metadata = recipes.load_language_model(str(REPO / "saved_models" / "gpt_shakespeare"))
        NUM_LAYERS, NUM_HEADS, CONTEXT = gpt.num_layers, gpt.num_heads, gpt.max_length
        print(f"gpt_shakespeare: {NUM_LAYERS} blocks x {NUM_HEADS} heads of width {gpt.hidden_dim // NUM_HEADS}, "
              f"context {CONTEXT}, {gpt.count_params():,} parameters; trained on {gpt_metadata['dataset']}, "
              f"validation loss {gpt_metadata['metrics']['val_loss']:.3f} nats/char")
        """),
        code(LOAD_TEXT),
        code("""
        known = set(char_tokenizer.vocabulary)
        val_text = "".join(c for c in (vocabulary[i] for i in val_ids) if c in known)
        if len(val_text) < len(val_ids):
            print(f"dropped {len(val_ids) - len(val_text):,} validation characters the model has never seen")
        gpt_val_ids = np.asarray(char_tokenizer.encode(val_text), "int32")
        print(f"{len(gpt_val_ids):,} held-out characters, e.g. {val_text[:60]!r}")
        """),
        md("""
        ## Reading the attention weights of every head

        `GPT.hidden_states` runs token + position embeddings through the blocks. The helper below runs the very same
        layers, asking each `TransformerDecoderBlock` for its `(batch, heads, T, T)` attention weights
        (`return_attention_scores=True`), and checks that its logits equal the model's own.
        """),
        code("""
        def gpt_attention(model, token_ids):
            \"\"\"(list of num_layers numpy (B, heads, T, T) attention weights, logits (B, T, vocabulary)).\"\"\"
            x = model.token_embedding(token_ids)  # (B, T, D)
            x = x + model.position_embedding(x)
            weights = []
            for block in model.blocks:
                x, w = block(x, return_attention_scores=True)  # pre-LN causal self-attention, then feed-forward
                weights.append(ops.convert_to_numpy(w))
            logits = model.token_embedding(model.layer_norm(x), reverse=True)  # tied output projection
            return weights, ops.convert_to_numpy(logits)


        x_check = windows(gpt_val_ids, CONTEXT, count=2)[0]
        check_weights, check_logits = gpt_attention(gpt, x_check)
        replay_error = float(np.abs(check_logits - ops.convert_to_numpy(gpt(x_check))).max())
        print(f"max |helper logits - model logits| = {replay_error:.1e}; weights per block: {check_weights[0].shape}")
        assert replay_error < 1e-4
        assert all(np.all(np.triu(w, k=1) == 0) for w in check_weights), "a GPT head attended to the future"
        """),
        md("""
        ## All 16 heads on one line of held-out text

        Row *t* of a map is where the character at position *t* looks (columns: the characters it may see, itself
        and the ones before it). A square-root colour scale, so that weak but wide patterns stay visible.
        """),
        code("""
        SNIPPET = 48
        start = val_text.find("\\n", len(val_text) // 3) + 1  # the start of a line, a third into the held-out text
        snippet_ids = gpt_val_ids[None, start : start + SNIPPET]
        snippet_chars = [repr(c)[1:-1] if c in "\\n\\t" else c for c in val_text[start : start + SNIPPET]]
        snippet_weights, _ = gpt_attention(gpt, snippet_ids)
        print(repr(val_text[start : start + SNIPPET]))

        from matplotlib.colors import PowerNorm

        fig, axes = plt.subplots(NUM_LAYERS, NUM_HEADS, figsize=(2.6 * NUM_HEADS, 2.6 * NUM_LAYERS))
        axes = np.asarray(axes).reshape(NUM_LAYERS, NUM_HEADS)
        for layer in range(NUM_LAYERS):
            for head in range(NUM_HEADS):
                ax = axes[layer, head]
                ax.imshow(snippet_weights[layer][0, head], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
                ax.set_title(f"block {layer} head {head}", fontsize=9)
                ax.set_xticks([]), ax.set_yticks([])
                ax.grid(False)
        fig.suptitle(f"gpt_shakespeare: attention of each head over {SNIPPET} held-out characters "
                     "(rows: query, columns: key)", y=1.0)
        plt.tight_layout()
        plt.show()
        """),
        md("""
        ## What each head attends to, measured over held-out text

        Over many windows of validation text, for queries at positions 16..63 (the first positions have so few
        keys that every head looks alike there), per head:

        - **itself**, **previous char**: the weight on key t and t - 1;
        - **same char**: the total weight on earlier occurrences of the query's own character (not itself);
        - **space/punct.**: the total weight on spaces, newlines and punctuation (compare with their share of the
          keys, printed below);
        - **look-back**: the weighted mean distance t - j to the keys;
        - **entropy** of the row (ln of the number of keys if uniform; 0 if all on one key).
        """),
        code("""
        NUM_WINDOWS = 4 if SMOKE else 384
        x_stats, _ = windows(gpt_val_ids, CONTEXT, count=NUM_WINDOWS)
        queries = np.arange(16, CONTEXT)
        distance = np.maximum(queries[:, None] - np.arange(CONTEXT)[None, :], 0)  # (Q, T): t - j, 0 for the future
        separator_ids = np.array([i for i, c in enumerate(char_tokenizer.vocabulary) if not c.isalnum()])
        STATS = ["itself", "previous char", "same char", "space/punct.", "look-back (chars)", "entropy (nats)"]
        stats = np.zeros((NUM_LAYERS, NUM_HEADS, len(STATS)))
        offset_profile = np.zeros((NUM_LAYERS, NUM_HEADS, 16))  # weight on keys t, t-1, ..., t-15
        for chunk in range(0, NUM_WINDOWS, 64):
            x = x_stats[chunk : chunk + 64]
            is_separator = np.isin(x, separator_ids)[:, None, None, :]  # (B, 1, 1, T)
            # (B, 1, Q, T): key j holds the query's character and comes before it
            same_char = ((x[:, queries, None] == x[:, None, :]) & (distance > 0)[None])[:, None]
            for layer, w in enumerate(gpt_attention(gpt, x)[0]):
                w = w[:, :, queries, :].astype("float64")  # (B, N, Q, T)
                rows = {
                    "itself": w[..., np.arange(len(queries)), queries],
                    "previous char": w[..., np.arange(len(queries)), queries - 1],
                    "same char": (w * same_char).sum(-1),
                    "space/punct.": (w * is_separator).sum(-1),
                    "look-back (chars)": (w * distance).sum(-1),
                    "entropy (nats)": -(w * np.log(np.maximum(w, 1e-12))).sum(-1),
                }
                for s, name in enumerate(STATS):
                    stats[layer, :, s] += rows[name].sum(axis=(0, 2))
                for k in range(16):
                    offset_profile[layer, :, k] += w[..., np.arange(len(queries)), queries - k].sum(axis=(0, 2))
        stats /= NUM_WINDOWS * len(queries)
        offset_profile /= NUM_WINDOWS * len(queries)
        separator_share = float(np.mean([np.isin(x_stats[:, : t + 1], separator_ids).mean() for t in queries]))
        same_share = float(np.mean([((x_stats[:, :t] == x_stats[:, t : t + 1]).sum(1) / (t + 1)).mean() for t in queries]))
        uniform_lookback = float(np.mean(queries / 2))
        uniform_entropy = float(np.mean(np.log(queries + 1)))

        head_names = [f"block {l} head {h}" for l in range(NUM_LAYERS) for h in range(NUM_HEADS)]
        table = stats.reshape(-1, len(STATS))
        print(f"{'':>14} | " + " | ".join(f"{name:>17}" for name in STATS))
        for name, row in zip(head_names, table):
            print(f"{name:>14} | " + " | ".join(f"{v:17.3f}" for v in row))
        print(f"{'uniform weights':>14} | {'':>17} | {'':>17} | {same_share:17.3f} | {separator_share:17.3f} | "
              f"{uniform_lookback:17.3f} | {uniform_entropy:17.3f}")
        spread = {name: (table[:, s].min(), table[:, s].max()) for s, name in enumerate(STATS)}
        for name, (low, high) in spread.items():
            print(f"{name:>18}: from {low:.3f} ({head_names[int(np.argmin(table[:, STATS.index(name)]))]}) "
                  f"to {high:.3f} ({head_names[int(np.argmax(table[:, STATS.index(name)]))]})")
        """),
        code("""
        fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
        scaled = (table - table.min(0)) / np.maximum(table.max(0) - table.min(0), 1e-12)  # each column to 0..1
        axes[0].imshow(scaled, cmap="magma", aspect="auto")
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                axes[0].text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=8,
                             color="black" if scaled[i, j] > 0.5 else "white")
        axes[0].set_xticks(range(len(STATS)), STATS, rotation=20)
        axes[0].set_yticks(range(len(head_names)), head_names)
        axes[0].set_title("What each head attends to (colour: rank within the column)")
        axes[0].grid(False)
        for layer in range(NUM_LAYERS):
            for head in range(NUM_HEADS):
                axes[1].plot(range(16), offset_profile[layer, head], "o-" if layer == 0 else "-", ms=3,
                             color=plt.cm.tab20(4 * layer + head), label=f"block {layer} head {head}")
        axes[1].set(xlabel="distance t - j of the key (0 = itself)", ylabel="mean attention weight", yscale="log",
                    title="Attention by distance, one line per head")
        axes[1].legend(fontsize=7, ncol=2)
        plt.tight_layout()
        plt.show()
        """),
        md("""
        Three of them up close on the same line of text, the heads that put the most weight on the previous
        character, on spaces and punctuation, and that look furthest back:
        """),
        code("""
        chosen = []
        for name in ("previous char", "space/punct.", "look-back (chars)"):
            for index in np.argsort(-table[:, STATS.index(name)]):
                if index not in chosen:
                    chosen.append(int(index))
                    break
        fig, axes = plt.subplots(1, 3, figsize=(18, 6))
        for ax, index, why in zip(axes, chosen, ("most on the previous char", "most on space/punct.", "looks furthest back")):
            layer, head = divmod(index, NUM_HEADS)
            ax.imshow(snippet_weights[layer][0, head], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
            ax.set_xticks(range(SNIPPET), snippet_chars, fontsize=6)
            ax.set_yticks(range(SNIPPET), snippet_chars, fontsize=6)
            ax.set(title=f"block {layer} head {head}: {why}", xlabel="key", ylabel="query")
            ax.grid(False)
        plt.tight_layout()
        plt.show()
        """),
        md("""
        ## Removing one head at a time

        Each block's output projection has a `(heads, head_dim, hidden)` kernel, one slice per head. Zeroing one
        slice removes that head's contribution and nothing else; we measure the validation loss of the model without
        it, then put the slice back.
        """),
        code("""
        x_eval, y_eval = windows(gpt_val_ids, CONTEXT, count=4 if SMOKE else 256)


        def validation_loss():
            logits = gpt.predict(x_eval, batch_size=64, verbose=0).astype("float64")  # (B, T, V)
            top = logits.max(-1, keepdims=True)
            log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
            return float(np.mean(log_z - np.take_along_axis(logits, y_eval[..., None], -1)[..., 0]))


        base_loss = validation_loss()
        loss_increase = np.zeros((NUM_LAYERS, NUM_HEADS))
        for layer, block in enumerate(gpt.blocks):
            kernel = block.self_attention.output_dense.kernel  # (heads, head_dim, hidden)
            original = ops.convert_to_numpy(kernel)
            for head in range(NUM_HEADS):
                ablated = original.copy()
                ablated[head] = 0.0
                kernel.assign(ablated)
                loss_increase[layer, head] = validation_loss() - base_loss
            kernel.assign(original)
        assert abs(validation_loss() - base_loss) < 1e-6, "the weights were not restored"
        print(f"validation loss of the whole model on {x_eval.size:,} characters: {base_loss:.4f} nats/char")
        print("loss increase without one head (rows: blocks, columns: heads):")
        print(np.array2string(loss_increase, precision=4, suppress_small=True))

        fig, ax = plt.subplots(figsize=(6, 4.5))
        image = ax.imshow(loss_increase, cmap="Reds")
        for (layer, head), value in np.ndenumerate(loss_increase):
            ax.text(head, layer, f"{value:+.3f}", ha="center", va="center", fontsize=9)
        ax.set(xticks=range(NUM_HEADS), yticks=range(NUM_LAYERS), xlabel="head", ylabel="block",
               title="Validation loss increase when one head is removed")
        ax.grid(False)
        fig.colorbar(image, ax=ax, label="nats / char")
        plt.show()
        """),
        md("""
        ## BERT: heads that look both ways

        `bert_mlm` is a 2-block, 2-head BERT trained as a masked language model on SST-2 sentences (loaded with
        `keras_tx.recipes.load_masked_lm`). `BERT.attention_scores` returns every block's weights. Its encoder
        blocks have no causal mask, so a word can attend to the words after it.
        """),
        code(LOAD_SENTENCES),
        code("""
        bert_mlm, bert_metadata = recipes.load_masked_lm(str(REPO / "saved_models" / "bert_mlm"))
        bert, wordpiece = bert_mlm.backbone, bert_mlm.tokenizer
        print(f"bert_mlm: {bert.num_layers} blocks x {bert.num_heads} heads, hidden {bert.hidden_dim}, "
              f"{bert_mlm.count_params():,} parameters; masked-token accuracy "
              f"{bert_metadata['metrics']['val_masked_accuracy']:.3f} on {bert_metadata['dataset']}")
        (_, _), (dev_sentences, _), sentence_source = load_sentences()
        sentences = [s for s in dev_sentences if 6 <= len(s.split()) <= 30][: 8 if SMOKE else 512]
        inputs = encode_texts(sentences, wordpiece, bert.max_length)
        bert_weights = bert.attention_scores(inputs)  # num_layers x (B, heads, T, T)
        real = inputs["padding_mask"].astype(bool)  # (B, T)
        print(f"{len(sentences)} held-out sentences from {sentence_source}, {real.sum():,} tokens with [CLS] and [SEP]")

        token_ids = inputs["token_ids"]
        T = token_ids.shape[1]
        cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
        position = np.arange(T)
        # Queries: the words (real tokens other than [CLS] and [SEP]), keys: everything real.
        is_word = real & (token_ids != cls_id) & (token_ids != sep_id)
        BERT_STATS = ["itself", "previous", "next", "[CLS]", "[SEP]", "all before", "all after", "entropy (nats)"]
        bert_table = []
        for layer, w in enumerate(bert_weights):
            w = w.astype("float64")  # (B, N, T, T)
            for head in range(bert.num_heads):
                wh = w[:, head]  # (B, T, T)
                offset = position[None, :] - position[:, None]  # (T, T): j - t
                values = {
                    "itself": (wh * (offset == 0)).sum(-1),
                    "previous": (wh * (offset == -1)).sum(-1),
                    "next": (wh * (offset == 1)).sum(-1),
                    "[CLS]": (wh * (token_ids == cls_id)[:, None, :]).sum(-1),
                    "[SEP]": (wh * (token_ids == sep_id)[:, None, :]).sum(-1),
                    "all before": (wh * (offset < 0)).sum(-1),
                    "all after": (wh * (offset > 0)).sum(-1),
                    "entropy (nats)": -(wh * np.log(np.maximum(wh, 1e-12))).sum(-1),
                }
                bert_table.append([values[name][is_word].mean() for name in BERT_STATS])
        bert_table = np.array(bert_table)
        bert_heads = [f"block {l} head {h}" for l in range(bert.num_layers) for h in range(bert.num_heads)]
        print(f"{'':>14} | " + " | ".join(f"{name:>14}" for name in BERT_STATS))
        for name, row in zip(bert_heads, bert_table):
            print(f"{name:>14} | " + " | ".join(f"{v:14.3f}" for v in row))
        gpt_after = max(float(np.triu(w, k=1).sum(-1).max()) for w in check_weights)
        print(f"for comparison, the largest weight any GPT head puts on later characters: {gpt_after}")
        """),
        code("""
        example = min(range(len(sentences)), key=lambda i: abs(int(real[i].sum()) - 16))  # a sentence of ~16 tokens
        length = int(real[example].sum())
        labels = [wordpiece.id_to_token(int(i)) for i in token_ids[example, :length]]
        fig, axes = plt.subplots(1, len(bert_heads), figsize=(5.2 * len(bert_heads), 5.2))
        for ax, (index, name) in zip(np.atleast_1d(axes), enumerate(bert_heads)):
            layer, head = divmod(index, bert.num_heads)
            ax.imshow(bert_weights[layer][example, head, :length, :length], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
            ax.set_xticks(range(length), labels, rotation=90, fontsize=8)
            ax.set_yticks(range(length), labels, fontsize=8)
            ax.set(title=f"bert_mlm {name}", xlabel="key")
            ax.grid(False)
        plt.tight_layout()
        plt.show()
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display


        def extreme(name, table=table, names=head_names, stat_names=STATS):
            column = table[:, stat_names.index(name)]
            low, high = int(np.argmin(column)), int(np.argmax(column))
            return f"{column[low]:.2f} ({names[low]}) to {column[high]:.2f} ({names[high]})"


        most, least = np.unravel_index(np.argmax(loss_increase), loss_increase.shape), \\
            np.unravel_index(np.argmin(loss_increase), loss_increase.shape)
        display(Markdown(f\"\"\"
        - **The GPT's {NUM_LAYERS * NUM_HEADS} heads attend to different things** (means over {NUM_WINDOWS} windows of
          held-out {text_source}, queries 16..{CONTEXT - 1}): weight on the previous character from
          {extreme('previous char')}; on itself from {extreme('itself')}; on earlier occurrences of its own
          character from {extreme('same char')} (uniform weights: {same_share:.2f}); on spaces and punctuation from {extreme('space/punct.')} (their share of the
          keys: {separator_share:.2f}); mean look-back from {extreme('look-back (chars)')} characters (uniform
          weights: {uniform_lookback:.1f}); entropy from {extreme('entropy (nats)')} nats (uniform: {uniform_entropy:.2f}).
        - **They matter differently:** the validation loss ({base_loss:.3f} nats/char) rises by
          **{loss_increase[most]:+.3f}** without block {most[0]} head {most[1]} and by {loss_increase[least]:+.4f} without
          block {least[0]} head {least[1]}; the median head costs {np.median(loss_increase):+.4f}.
        - **BERT's heads look both ways:** on {len(sentences)} held-out {sentence_source} sentences, the weight a word puts
          on the words after it ranges from {extreme('all after', bert_table, bert_heads, BERT_STATS)} (every GPT head:
          {gpt_after:.0f}, by the causal mask); on the next token from {extreme('next', bert_table, bert_heads, BERT_STATS)},
          on the previous one from {extreme('previous', bert_table, bert_heads, BERT_STATS)}, on [SEP] from
          {extreme('[SEP]', bert_table, bert_heads, BERT_STATS)}.
        \"\"\"))
        """, ELAPSED),
    ]


def notebook_04():
    return [
        md("""
        # 4. The decoder trains in parallel but decodes serially; the KV cache makes each serial step cheap

        **Step 6 -> 7** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
        **Transformer decoder -> GPT** (then BERT, ViT, image GPT). An RNN must run step by step even in training.
        A Transformer decoder with a causal mask does not: one call computes the outputs of *all* positions, each
        seeing only its past, so a training step on T tokens is one parallel pass with T next-token losses.
        Generation is still serial (token t+1 needs token t), and without care each step re-runs the whole prefix.
        The key/value cache stores every layer's keys and values of the past positions, so a step only computes
        the new token's query, key and value.

        The model: `keras_tx.layers.TokenEmbedding` + `PositionEmbedding` -> a stack of
        `TransformerDecoderBlock`s (pre-LN) -> layer norm -> logits through the *same* embedding matrix
        (`TokenEmbedding(..., reverse=True)`, tied weights), trained on characters of tiny_shakespeare.
        """),
        code(SETUP + """
from keras_tx.layers import PositionEmbedding, TokenEmbedding, TransformerDecoderBlock, causal_mask"""),
        code(LOAD_TEXT),
        code("""
        HIDDEN = 32 if SMOKE else 128
        NUM_LAYERS = 1 if SMOKE else 2
        NUM_HEADS = 2 if SMOKE else 4
        MAX_LENGTH = 48 if SMOKE else 512


        class TinyDecoder(keras.Model):
            \"\"\"A GPT-style character model from our layers: embeddings, decoder blocks, tied output logits.\"\"\"

            def __init__(self, vocabulary_size, **kwargs):
                super().__init__(**kwargs)
                self.token_embedding = TokenEmbedding(vocabulary_size, HIDDEN, name="token_embedding")
                self.position_embedding = PositionEmbedding(MAX_LENGTH, name="position_embedding")
                self.blocks = [TransformerDecoderBlock(NUM_HEADS, 4 * HIDDEN, norm_first=True, name=f"block_{i}")
                               for i in range(NUM_LAYERS)]
                self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")

            def embed(self, tokens, start_index=0):
                x = self.token_embedding(tokens)  # (B, T, HIDDEN)
                return x + self.position_embedding(x, start_index=start_index)

            def logits(self, x):
                return self.token_embedding(self.final_norm(x), reverse=True)  # (B, T, vocabulary)

            def call(self, tokens):
                \"\"\"All positions in one pass; the blocks' causal masks keep each position to its past.\"\"\"
                x = self.embed(tokens)
                for block in self.blocks:
                    x = block(x)
                return self.logits(x)

            def call_with_cache(self, tokens, caches, index):
                \"\"\"Only the new `tokens` (at absolute position `index`), attending to the cached keys/values.\"\"\"
                x, new_caches = self.embed(tokens, start_index=index), []
                for block, cache in zip(self.blocks, caches):
                    x, cache = block(x, self_attention_cache=cache, self_attention_cache_update_index=index)
                    new_caches.append(cache)
                return self.logits(x), new_caches


        keras.utils.set_random_seed(0)
        model = TinyDecoder(len(vocabulary))
        model(np.zeros((1, 8), "int32"))
        print(f"{NUM_LAYERS} decoder blocks, hidden {HIDDEN}, {NUM_HEADS} heads, context {MAX_LENGTH}: "
              f"{model.count_params():,} parameters (output projection tied to the token embedding)")
        """),
        md("""
        ## Training: one call, every position

        The causal mask (True = may attend) lets position t see positions 0..t only. With it, one forward call on
        a (batch, T) window returns logits for all T positions, and the loss averages T next-character losses per
        window. We check that (a) changing the future does not change the past's logits and (b) the logits of
        the one parallel call equal the logits of T separate calls on the growing prefixes.
        """),
        code("""
        mask = ops.convert_to_numpy(causal_mask(12, 12)).astype(int)
        print(mask)
        CHECK = 32 if SMOKE else 96
        tokens = windows(val_ids, CHECK, count=1)[0]  # (1, CHECK)
        parallel = ops.convert_to_numpy(model(tokens))  # (1, CHECK, vocabulary): one call, every position
        serial = np.stack([ops.convert_to_numpy(model(tokens[:, : t + 1]))[0, -1] for t in range(CHECK)])
        parallel_vs_serial = float(np.abs(parallel[0] - serial).max())
        changed = tokens.copy()
        changed[:, CHECK // 2 :] = (changed[:, CHECK // 2 :] + 1) % len(vocabulary)  # rewrite the second half
        after = ops.convert_to_numpy(model(changed))
        past_change = float(np.abs(after[0, : CHECK // 2] - parallel[0, : CHECK // 2]).max())
        future_change = float(np.abs(after[0, CHECK // 2 :] - parallel[0, CHECK // 2 :]).max())
        print(f"one call on {tokens.shape} -> logits {parallel.shape}")
        print(f"max |parallel - serial prefix calls| over {CHECK} positions: {parallel_vs_serial:.2e}")
        print(f"rewriting tokens {CHECK // 2}.. changes the logits before them by {past_change:.2e}, after by {future_change:.2f}")
        assert parallel_vs_serial < 1e-4 and past_change < 1e-4 and future_change > 1e-3
        """),
        code("""
        SEQ = 32 if SMOKE else 128
        BATCH = 4 if SMOKE else 32
        STEPS = 3 if SMOKE else 150
        x_train, y_train = windows(train_ids, SEQ, STEPS * BATCH, np.random.default_rng(0))
        x_val, y_val = windows(val_ids, SEQ, count=8 if SMOKE else 256)
        model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss_before = model.evaluate(x_val, y_val, batch_size=64, verbose=0)
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        train_time = time.perf_counter() - start
        loss_after = model.evaluate(x_val, y_val, batch_size=64, verbose=0)
        print(f"{STEPS} training steps, each one parallel pass over {BATCH} x {SEQ} = {BATCH * SEQ:,} next-character "
              f"predictions: {train_time:.1f} s ({1e3 * train_time / STEPS:.0f} ms/step, compilation included)")
        print(f"validation loss (last 10% of {text_source}): {loss_before:.3f} before -> {loss_after:.3f} after training")
        """),
        code("""
        snippet = windows(val_ids, 24, count=1)[0]
        x = model.embed(snippet)
        _, attention = model.blocks[0](x, return_attention_scores=True)
        attention = ops.convert_to_numpy(attention)[0].mean(axis=0)  # (T, T), averaged over heads
        labels = [repr(vocabulary[i])[1:-1] or " " for i in snippet[0]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        axes[0].imshow(mask, cmap="Greys", vmin=0, vmax=1.5)
        axes[0].set(title="causal_mask(12, 12): 1 = may attend", xlabel="key position", ylabel="query position")
        axes[1].imshow(attention, cmap="viridis")
        axes[1].set_xticks(range(len(labels)), labels)
        axes[1].set_yticks(range(len(labels)), labels)
        axes[1].set(title="trained block 0, mean over heads: nothing above the diagonal",
                    xlabel="key (attended to)", ylabel="query")
        for ax in axes:
            ax.grid(False)
        plt.show()
        assert np.all(np.triu(attention, k=1) < 1e-6)
        """),
        md("""
        ## Decoding: serial, with and without the KV cache

        Greedy decoding from a prompt, up to the context length, in two ways:

        - **without a cache**: each step calls the model on the whole prefix (length t) and keeps the last
          position's logits. A `tf.function` with a `(batch, None)` input signature, traced once for all lengths.
          (XLA would recompile it for every new length, so it is plain graph mode.)
        - **with the cache**: one call on the prompt fills every block's `(batch, 2, max_length, heads, key_dim)`
          key/value cache (prefill); each further step feeds only the newest token and its position. Fixed
          shapes, one `tf.function` trace, also plain graph mode so that the two are compared like for like.

        What is timed: the wall clock of one step's compiled call, including fetching the chosen token to
        Python (which waits for the computation), after a warm-up that excludes tracing. Other processes share
        these CPU cores, so each generation is run several times and the fastest time at each position is kept.
        """),
        code("""
        REPEATS = 1 if SMOKE else 3
        prompt_text = "ROMEO:\\n" if text_source == "tiny_shakespeare" else "The "
        prompt = np.array([[char_to_id[c] for c in prompt_text]], "int32")
        head_dim = HIDDEN // NUM_HEADS


        @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
        def next_token_uncached(tokens):
            return tf.argmax(model(tokens)[:, -1], axis=-1, output_type=tf.int32)


        @tf.function
        def prefill(tokens, caches):
            logits, caches = model.call_with_cache(tokens, caches, 0)
            return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32), caches


        @tf.function
        def next_token_cached(token, caches, index):
            logits, caches = model.call_with_cache(token[:, None], caches, index)
            return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32), caches


        def greedy_uncached(prompt, steps):
            tokens, times = tf.constant(prompt), []
            for _ in range(steps):
                start = time.perf_counter()
                token = next_token_uncached(tokens).numpy()
                times.append(time.perf_counter() - start)
                tokens = tf.concat([tokens, token[:, None]], axis=1)
            return tokens.numpy(), np.array(times)


        def greedy_cached(prompt, steps):
            caches = [tf.zeros((prompt.shape[0], 2, MAX_LENGTH, NUM_HEADS, head_dim)) for _ in model.blocks]
            start = time.perf_counter()
            token, caches = prefill(tf.constant(prompt), caches)
            token = token.numpy()
            times, generated = [time.perf_counter() - start], [token]
            for i in range(steps - 1):
                start = time.perf_counter()
                token, caches = next_token_cached(tf.constant(token), caches, tf.constant(prompt.shape[1] + i))
                token = token.numpy()
                times.append(time.perf_counter() - start)
                generated.append(token)
            return np.concatenate([prompt, np.stack(generated, axis=1)], axis=1), np.array(times)


        STEPS_TO_GENERATE = MAX_LENGTH - prompt.shape[1]
        greedy_uncached(prompt, 3), greedy_cached(prompt, 3)  # warm-up: trace the three functions
        runs = {"without cache": [], "with KV cache": []}
        for _ in range(REPEATS):
            tokens_uncached, times = greedy_uncached(prompt, STEPS_TO_GENERATE)
            runs["without cache"].append(times)
            tokens_cached, times = greedy_cached(prompt, STEPS_TO_GENERATE)
            runs["with KV cache"].append(times)
        assert np.array_equal(tokens_cached, tokens_uncached), "cached and uncached greedy decoding disagree"
        per_token = {name: np.min(times, axis=0) for name, times in runs.items()}  # fastest of the repeats
        total = {name: float(np.sum(times)) for name, times in per_token.items()}
        print(f"cached and uncached greedy decoding give the same {STEPS_TO_GENERATE} tokens: "
              f"{np.array_equal(tokens_cached, tokens_uncached)}")
        print("greedy continuation (the model is tiny and briefly trained):")
        print(repr("".join(vocabulary[i] for i in tokens_cached[0][:240])))
        """),
        code("""
        context = prompt.shape[1] + np.arange(STEPS_TO_GENERATE)  # tokens the step conditions on
        bins = np.array_split(np.arange(STEPS_TO_GENERATE), min(8, STEPS_TO_GENERATE))
        print(f"{'context length':>16} | {'ms/token, no cache':>18} | {'ms/token, KV cache':>18} | speed-up")
        for b in bins:
            u, c = (1e3 * np.median(per_token[name][b]) for name in ("without cache", "with KV cache"))
            print(f"{context[b[0]]:>7} - {context[b[-1]]:<6} | {u:18.2f} | {c:18.2f} | {u / c:6.1f}x")
        last = bins[-1]
        ms_last = {name: 1e3 * float(np.median(t[last])) for name, t in per_token.items()}
        ms_first = {name: 1e3 * float(np.median(t[bins[0][1:]] if len(bins[0]) > 1 else t[bins[0]]))
                    for name, t in per_token.items()}

        fig, axes = plt.subplots(1, 2, figsize=(13, 4))
        for (name, times), color in zip(per_token.items(), ("tab:red", "tab:blue")):
            axes[0].plot(context[1:], 1e3 * times[1:], ".", ms=3, alpha=0.35, color=color)
            centres = [context[b].mean() for b in bins]
            axes[0].plot(centres, [1e3 * np.median(times[b]) for b in bins], "o-", color=color, label=name)
            axes[1].plot(context, np.cumsum(times), color=color, label=f"{name}: {np.sum(times):.2f} s")
        axes[0].set(xlabel="context length (tokens already there)", ylabel="ms per generated token",
                    title="Time of one greedy step (dots: each step; line: median per bin)")
        axes[1].set(xlabel="context length", ylabel="seconds", title=f"Total time to generate {STEPS_TO_GENERATE} tokens")
        for ax in axes:
            ax.legend()
        plt.show()
        """),
        md("""
        Without the cache a step at context length t re-computes t positions (projections and feed-forward
        O(t), attention O(t^2) in total), so its time grows with t and the whole generation is quadratic. With
        the cache a step computes one position; its attention reads the fixed-size cache, so the time per
        token stays nearly flat. A single parallel call over the whole sequence, for comparison:
        """),
        code("""
        full = tf.constant(tokens_cached[:, :MAX_LENGTH])
        next_token_uncached(full)  # same traced function, whole sequence at once
        parallel_times = []
        for _ in range(5):
            start = time.perf_counter()
            ops.convert_to_numpy(next_token_uncached(full))
            parallel_times.append(time.perf_counter() - start)
        parallel_ms = 1e3 * min(parallel_times)
        print(f"one parallel forward pass over all {full.shape[1]} positions: {parallel_ms:.1f} ms; "
              f"generating them one by one with the cache: {1e3 * total['with KV cache']:.0f} ms, "
              f"without: {1e3 * total['without cache']:.0f} ms")
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display

        display(Markdown(f\"\"\"
        - **Parallel training:** one call on a (1, {CHECK}) window gives logits for all {CHECK} positions, equal to
          {CHECK} separate prefix calls (max difference {parallel_vs_serial:.1e}); rewriting the second half changes the
          first half's logits by {past_change:.1e}. {STEPS} training steps of {BATCH} x {SEQ} positions took
          {train_time:.1f} s and took the validation loss from {loss_before:.2f} to {loss_after:.2f} nats/char.
        - **Serial decoding:** one parallel pass over {MAX_LENGTH} positions takes {parallel_ms:.1f} ms; generating
          {STEPS_TO_GENERATE} tokens greedily takes **{total['without cache']:.2f} s** without the cache and
          **{total['with KV cache']:.2f} s** with it ({total['without cache'] / total['with KV cache']:.1f}x).
        - **Per token:** at context {context[bins[0][0]]}-{context[bins[0][-1]]}: {ms_first['without cache']:.1f} ms
          without vs {ms_first['with KV cache']:.1f} ms with the cache; at context {context[last[0]]}-{context[last[-1]]}:
          **{ms_last['without cache']:.1f} ms** without vs **{ms_last['with KV cache']:.1f} ms** with it
          ({ms_last['without cache'] / ms_last['with KV cache']:.1f}x).
        - **Same output:** cached and uncached greedy decoding produced identical tokens (asserted).
        \"\"\"))
        """, ELAPSED),
    ]


def notebook_05():
    return [
        md("""
        # 5. GPT vs BERT on the same text: one direction or both

        **Step 7 and 8** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
        Transformer -> **GPT / BERT** -> ViT -> image GPT. Both are stacks of the same Transformer block; they
        differ in the attention mask and the training task:

        - **GPT** (`keras_tx.models.GPT`): a causal mask, position t sees positions <= t; trained to predict the
          next token. It can generate text left to right, but never uses what comes after a position.
        - **BERT** (`keras_tx.models.BERT` + `BERTMaskedLM`): no causal mask, every position sees the whole
          sequence; trained to fill in masked tokens (15% of them: 80% `[MASK]`, 10% random, 10% unchanged).

        We train one of each, the same size, on the same characters (SST-2 movie-review sentences, in windows of
        16 characters), with the same batches, optimizer and number of steps, and measure the claims:

        1. Filling a blank with the text on **both sides** (BERT) is more accurate than predicting the same
           character from the **left side only** (GPT), most of all where the left side says least: the first
           letter of a word.
        2. But BERT is no generator: given only the left side, as generation needs, it is far worse than GPT, and
           its left-to-right samples show it.
        3. For a whole-sentence task (SST-2 sentiment, a logistic regression on the frozen features of each
           model), bidirectional features are expected to do better: measured below.

        A cost shows on the way: BERT learns from the 15% of positions it masks, and a `[MASK]` carries no
        information of its own, so it gains little until its heads learn to look at the neighbours. It starts slower
        than GPT, whose input at position t is the character before its target, so that it learns bigrams at once;
        the learning curves below show BERT catching up.
        """),
        code(SETUP + QUIET + """
from keras_tx.data import CharTokenizer
from keras_tx.layers import causal_mask
from keras_tx.models import BERT, GPT, BERTMaskedLM
from keras_tx.training import exclude_non_matrices, make_optimizer"""),
        code(LOAD_SENTENCES),
        code("""
        (train_sentences, train_labels), (dev_sentences, dev_labels), text_source = load_sentences()
        # One character stream per split, sentences separated by newlines.
        train_text, dev_text = "\\n".join(train_sentences), "\\n".join(dev_sentences)
        tokenizer = CharTokenizer.from_text(train_text)
        known = set(tokenizer.vocabulary)
        clean = lambda s: "".join(c for c in s if c in known)  # the few characters never seen in training go
        train_ids = np.asarray(tokenizer.encode(train_text), "int32")
        dev_ids = np.asarray(tokenizer.encode(clean(dev_text)), "int32")
        VOCABULARY = tokenizer.vocabulary_size
        MASK_ID = VOCABULARY  # BERT's one extra token
        print(f"{VOCABULARY} distinct characters; {len(train_ids):,} training characters, {len(dev_ids):,} held-out")
        print(repr(train_text[:150]))
        """),
        code(WINDOWS),
        md("""
        ## Two models, the same size, the same blocks

        Both: 2 blocks, 4 heads, width 128, feed-forward 512, no dropout, output layer tied to the token embedding,
        trained with the project's recipe (`keras_tx.training.make_optimizer`: AdamW, warm-up, cosine decay).
        GPT's blocks are pre-LN `TransformerDecoderBlock`s (causal); BERT's are post-LN `TransformerEncoderBlock`s
        (a padding mask only), plus BERT's segment embedding, pooler and masked-LM head (a dense layer and a layer
        norm before the tied output), hence its few more parameters.
        """),
        code("""
        SEQ = 8 if SMOKE else 16
        BATCH = 8 if SMOKE else 32
        STEPS = 4 if SMOKE else 2400
        EVAL_EVERY = STEPS if SMOKE else 400
        NUM_PREDICTIONS = max(1, round(0.15 * SEQ))  # masked positions per BERT window
        size = dict(num_layers=2 if not SMOKE else 1, num_heads=4, hidden_dim=128 if not SMOKE else 32)
        size["intermediate_dim"] = 4 * size["hidden_dim"]

        keras.utils.set_random_seed(0)
        gpt = GPT(vocabulary_size=VOCABULARY, max_length=SEQ, **size)
        bert_mlm = BERTMaskedLM(BERT(vocabulary_size=VOCABULARY + 1, max_length=SEQ, dropout=0.0, **size))
        bert = bert_mlm.backbone
        for model in (gpt, bert_mlm):
            optimizer = make_optimizer(STEPS, learning_rate=1e-3, min_learning_rate=1e-4,
                                       warmup_steps=min(100, STEPS // 10), weight_decay=0.01)
            model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            exclude_non_matrices(optimizer, model)
        print(f"GPT:  {gpt.count_params():,} parameters")
        print(f"BERT: {bert_mlm.count_params():,} parameters (backbone {bert.count_params():,})")
        """),
        md("""
        ## Training on the same windows

        The same random windows of the training stream for both. GPT learns from every position (the next
        character); BERT from the 15% it masks, with BERT's 80/10/10 corruption.

        Every 400 steps both are scored on the same task, on held-out text: for each window one position *k* is
        drawn (at least a quarter of the window from either end) and its character predicted, by GPT from the
        characters before *k* (its logits at *k* - 1, all it can ever use), by BERT from the whole window with
        `[MASK]` at *k*.
        """),
        code("""
        def mask_for_bert(tokens, rng, num_predictions=NUM_PREDICTIONS):
            \"\"\"BERT's masking: `num_predictions` distinct positions per window; 80% -> [MASK], 10% -> a random
            character, 10% unchanged. Returns (corrupted tokens, positions, original characters there).\"\"\"
            positions = np.sort(np.argsort(rng.random(tokens.shape), axis=1)[:, :num_predictions], axis=1)
            labels = np.take_along_axis(tokens, positions, axis=1)
            draw = rng.random(positions.shape)
            random_chars = rng.integers(0, VOCABULARY, positions.shape)
            replacement = np.where(draw < 0.8, MASK_ID, np.where(draw < 0.9, random_chars, labels))
            corrupted = tokens.copy()
            np.put_along_axis(corrupted, positions, replacement, axis=1)
            return corrupted, positions, labels


        def bert_inputs(tokens, positions=None, padding_mask=None):
            tokens = np.asarray(tokens, "int32")
            inputs = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
                      "padding_mask": np.ones_like(tokens) if padding_mask is None else padding_mask.astype("int32")}
            if positions is not None:
                inputs["mask_positions"] = np.asarray(positions, "int32")
            return inputs


        # BERT's pooler reads the [CLS] position for sentence tasks; masked-LM training leaves it untouched.
        warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
        rng = np.random.default_rng(0)
        x_train, y_train = windows(train_ids, SEQ, STEPS * BATCH, rng)
        masked_train, positions_train, labels_train = mask_for_bert(x_train, rng)
        x_val, y_val = windows(dev_ids, SEQ, count=16 if SMOKE else 1024)
        masked_val, positions_val, labels_val = mask_for_bert(x_val, np.random.default_rng(1))
        # The blanks: every held-out window, one position k each.
        x_blank, _ = windows(dev_ids, SEQ, count=16 if SMOKE else None)
        k = np.random.default_rng(2).integers(SEQ // 4, SEQ - SEQ // 4, size=len(x_blank))
        rows_blank = np.arange(len(x_blank))
        truth = x_blank[rows_blank, k]
        blanked = x_blank.copy()
        blanked[rows_blank, k] = MASK_ID
        QUICK = slice(0, 1024)  # the learning curves use the first 1024 blanks


        def gpt_blank_logits(count=None):
            return gpt.predict(x_blank[:count], batch_size=256, verbose=0)[rows_blank[:count], k[:count] - 1]


        def bert_blank_logits(count=None, left_only=False):
            padding = (np.arange(SEQ)[None] <= k[:count, None]) if left_only else None  # left_only: nothing after k
            inputs = bert_inputs(blanked[:count], k[:count, None], padding)
            return bert_mlm.predict(inputs, batch_size=256, verbose=0)[:, 0, :VOCABULARY]


        curves = {"GPT": [], "BERT": []}
        blank_curves = {"GPT": [], "BERT": []}
        train_seconds = {"GPT": 0.0, "BERT": 0.0}
        for chunk in range(STEPS // EVAL_EVERY):
            rows = slice(chunk * EVAL_EVERY * BATCH, (chunk + 1) * EVAL_EVERY * BATCH)
            start = time.perf_counter()
            gpt.fit(x_train[rows], y_train[rows], batch_size=BATCH, shuffle=False, verbose=0)
            train_seconds["GPT"] += time.perf_counter() - start
            start = time.perf_counter()
            bert_mlm.fit(bert_inputs(masked_train[rows], positions_train[rows]), labels_train[rows],
                         batch_size=BATCH, shuffle=False, verbose=0)
            train_seconds["BERT"] += time.perf_counter() - start
            step = (chunk + 1) * EVAL_EVERY
            curves["GPT"].append((step, gpt.evaluate(x_val, y_val, batch_size=128, verbose=0)))
            curves["BERT"].append((step, bert_mlm.evaluate(bert_inputs(masked_val, positions_val), labels_val,
                                                           batch_size=128, verbose=0)))
            blank_curves["GPT"].append(np.mean(gpt_blank_logits(1024).argmax(-1) == truth[QUICK]))
            blank_curves["BERT"].append(np.mean(bert_blank_logits(1024).argmax(-1) == truth[QUICK]))
            print(f"step {step:>4}: held-out GPT next-char loss {curves['GPT'][-1][1]:.3f}, BERT masked-char loss "
                  f"{curves['BERT'][-1][1]:.3f}; blanks right: GPT {blank_curves['GPT'][-1]:.1%}, "
                  f"BERT {blank_curves['BERT'][-1]:.1%}")
        print(f"training time: GPT {train_seconds['GPT']:.0f} s, BERT {train_seconds['BERT']:.0f} s "
              f"for {STEPS} steps of {BATCH} x {SEQ} characters each")

        frequencies = np.bincount(train_ids, minlength=VOCABULARY) / len(train_ids)
        unigram = float(-np.sum(frequencies * np.log(np.maximum(frequencies, 1e-12))))
        steps = [step for step, _ in curves["GPT"]]
        fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
        for name, color in (("GPT", "tab:red"), ("BERT", "tab:blue")):
            axes[0].plot(steps, [loss for _, loss in curves[name]], "o-", color=color,
                         label="GPT: next character" if name == "GPT" else "BERT: masked characters")
            axes[1].plot(steps, [100 * a for a in blank_curves[name]], "o-", color=color,
                         label="GPT, left side" if name == "GPT" else "BERT, both sides")
        axes[0].axhline(unigram, color="gray", ls=":", label=f"character frequencies only ({unigram:.2f})")
        axes[0].set(xlabel="training step", ylabel="held-out loss (nats / char)", title="What each model is trained on")
        axes[1].set(xlabel="training step", ylabel="% of blanks right", title="The same blanks, held out")
        for ax in axes:
            ax.legend()
        plt.show()
        """),
        md("""
        ## The masks, and what the trained models do with them

        GPT's blocks apply `causal_mask` (1 = may attend): a lower triangle. BERT's apply only the padding mask,
        the same for every query: all real positions, left and right. Below each mask, the first block's
        attention weights (mean over heads) on a held-out sentence.
        """),
        code("""
        def gpt_attention(model, token_ids):
            \"\"\"Each block's (B, heads, T, T) attention weights, running GPT's own layers (see notebook 3).\"\"\"
            x = model.token_embedding(token_ids)
            x = x + model.position_embedding(x)
            weights = []
            for block in model.blocks:
                x, w = block(x, return_attention_scores=True)
                weights.append(ops.convert_to_numpy(w))
            return weights


        SHOW = SEQ
        sentence = next((s for s in dev_sentences if len(clean(s)) >= SHOW), dev_sentences[0])
        shown = np.asarray(tokenizer.encode(clean(sentence)[:SHOW]), "int32")[None]
        labels = [c if c != " " else "_" for c in tokenizer.decode(shown[0])]
        REAL = SHOW - 4  # for BERT's mask: a sentence of REAL characters padded to SHOW
        padding = (np.arange(SHOW) < REAL)[None]
        gpt_map = gpt_attention(gpt, shown)[0][0].mean(0)
        bert_map = bert.attention_scores(bert_inputs(shown))[0][0].mean(0)
        masks = {"GPT: causal_mask (1 = may attend)": ops.convert_to_numpy(causal_mask(SHOW, SHOW)).astype(float),
                 f"BERT: padding mask ({REAL} real + {SHOW - REAL} padding)": np.repeat(padding, SHOW, 0).astype(float)}
        fig, axes = plt.subplots(2, 2, figsize=(12, 11.5))
        for ax, (title, mask) in zip(axes[0], masks.items()):
            ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.4)
            ax.set(title=title, xlabel="key position", ylabel="query position")
        for ax, (title, weights) in zip(axes[1], (("GPT block 0, trained: mean over heads", gpt_map),
                                                   ("BERT block 0, trained: mean over heads", bert_map))):
            ax.imshow(weights, cmap="viridis")
            ax.set_xticks(range(SHOW), labels), ax.set_yticks(range(SHOW), labels)
            ax.set(title=title, xlabel="key", ylabel="query")
        for ax in axes.flat:
            ax.grid(False)
        plt.tight_layout()
        plt.show()
        gpt_future = float(np.triu(gpt_map, k=1).sum(1).mean())
        bert_future = float(np.triu(bert_map, k=1).sum(1).mean())
        print(f"mean weight on later positions: GPT {gpt_future:.3f}, BERT {bert_future:.3f}")
        """),
        md("""
        ## Filling a blank: left side only vs both sides

        All the held-out blanks, after training, predicted three ways:

        - **GPT**: from the characters before *k*: all it can ever use;
        - **BERT, left side only**: the characters before *k*, then `[MASK]` at *k*, nothing after (padding):
          what BERT gets when asked to generate;
        - **BERT, both sides**: the whole window with `[MASK]` at *k*: what it was trained for.

        Separately for the blanks that are the first letter of a word (after a space), where the left side says
        least about the answer.
        """),
        code("""
        def log_softmax(logits):
            logits = np.asarray(logits, "float64")
            top = logits.max(-1, keepdims=True)
            return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


        word_start = np.isin(x_blank[rows_blank, k - 1], tokenizer.encode(" \\n")) & \\
            np.array([tokenizer.vocabulary[c].isalpha() for c in truth])
        all_logits = {"GPT, left side": gpt_blank_logits(),
                      "BERT, left side only": bert_blank_logits(left_only=True),
                      "BERT, both sides": bert_blank_logits()}
        blank, blank_word_start = {}, {}
        for name, logits in all_logits.items():
            log_p = log_softmax(logits)
            right = log_p.argmax(-1) == truth
            blank[name] = {"accuracy": float(np.mean(right)), "loss": float(-np.mean(log_p[rows_blank, truth]))}
            blank_word_start[name] = float(np.mean(right[word_start]))
        blank["character frequencies"] = {"accuracy": float(np.mean(truth == frequencies.argmax())),
                                          "loss": float(-np.mean(np.log(frequencies[truth])))}
        blank_word_start["character frequencies"] = float(np.mean(truth[word_start] == frequencies.argmax()))
        print(f"{len(x_blank)} blanks in held-out {text_source}, {word_start.sum()} of them the first letter of a word:")
        for name, result in blank.items():
            print(f"{name:>22}: accuracy {result['accuracy']:6.1%}, loss {result['loss']:.3f} nats/char; "
                  f"first letters of words: {blank_word_start[name]:6.1%}")

        fig, axes = plt.subplots(1, 2, figsize=(14, 3.5), sharey=True)
        names = list(blank)
        for ax, values, title in ((axes[0], [blank[n]["accuracy"] for n in names], "all blanks"),
                                  (axes[1], [blank_word_start[n] for n in names], "blanks that begin a word")):
            ax.barh(names, values, color=["tab:red", "tab:orange", "tab:blue", "gray"])
            for i, value in enumerate(values):
                ax.text(value + 0.01, i, f"{value:.1%}", va="center")
            ax.set(xlabel="accuracy on the blank character", xlim=(0, 1), title=f"Filling one character: {title}")
        axes[0].invert_yaxis()
        plt.show()
        """),
        md("""
        A few blanks of one held-out sentence, with each model's three best guesses:
        """),
        code("""
        demo = clean(dev_sentences[0])[:SEQ]
        demo_ids = np.asarray(tokenizer.encode(demo), "int32")
        blanks = [i for i in range(1, len(demo) - 1) if demo[i].isalpha() and not demo[i - 1].isalpha()][:3]
        blanks = blanks or [len(demo) // 2]
        print("sentence:", repr(demo))
        print("blanked: ", repr("".join("_" if i in blanks else c for i, c in enumerate(demo))))
        gpt_guess = log_softmax(ops.convert_to_numpy(gpt(demo_ids[None]))[0])
        bert_tokens = demo_ids.copy()
        bert_tokens[blanks] = MASK_ID
        bert_guess = log_softmax(ops.convert_to_numpy(bert_mlm(bert_inputs(bert_tokens[None], [blanks])))[0, :, :VOCABULARY])
        top3 = lambda log_p: " ".join(f"{tokenizer.vocabulary[i]!r}:{np.exp(log_p[i]):.2f}" for i in np.argsort(-log_p)[:3])
        for j, i in enumerate(blanks):
            print(f"position {i:>2}, truth {demo[i]!r}:  GPT {top3(gpt_guess[i - 1])}   |   BERT {top3(bert_guess[j])}")
        """),
        md("""
        ## Generating: GPT samples left to right, BERT cannot really

        The same sampling loop for both: ask the model for the distribution of the next character given the text so
        far, draw from its 5 most likely characters (same seed), append, repeat. For GPT that is its logits at the
        last position (`GPT.generate` does the same with a key/value cache, see notebook 4); for BERT, the text so
        far followed by `[MASK]`.
        """),
        code("""
        NEW = 20 if SMOKE else 200


        def sample(next_logits, prompt_ids, steps, seed=0, top_k=5):
            rng = np.random.default_rng(seed)
            tokens = list(prompt_ids)
            for _ in range(steps):
                logits = next_logits(tokens[-(SEQ - 1):])  # the last SEQ - 1 characters fit both models
                best = np.argsort(-logits)[:top_k]
                p = np.exp(logits[best] - logits[best].max())
                tokens.append(int(rng.choice(best, p=p / p.sum())))
            return tokenizer.decode(tokens)


        def gpt_next(context):
            return ops.convert_to_numpy(gpt(np.array([context], "int32"), training=False))[0, -1]


        def bert_next(context):
            context = context + [MASK_ID]
            padded = np.array([context + [0] * (SEQ - len(context))])
            inputs = bert_inputs(padded, [[len(context) - 1]], np.arange(SEQ)[None] < len(context))
            return ops.convert_to_numpy(bert_mlm(inputs, training=False))[0, 0, :VOCABULARY]


        prompt = clean(dev_sentences[1])[: SEQ // 2]
        prompt_ids = np.asarray(tokenizer.encode(prompt), "int32")
        gpt_sample, bert_sample = sample(gpt_next, prompt_ids, NEW), sample(bert_next, prompt_ids, NEW)
        print(f"prompt: {prompt!r}\\n")
        print(f"GPT:\\n{gpt_sample}\\n")
        print(f"BERT, [MASK] appended left to right:\\n{bert_sample}")


        def word_share(generated):
            \"\"\"Share of the generated words that occur in the training text: a crude measure of well-formed text.\"\"\"
            words = generated[len(prompt):].split()[1:-1]  # the first and last may be cut
            return float(np.mean([w in training_words for w in words])) if words else 0.0


        training_words = set(train_text.split())
        generated_words = {"GPT": word_share(gpt_sample), "BERT": word_share(bert_sample)}
        print(f"\\nshare of generated words that are words of the training text: GPT {generated_words['GPT']:.0%}, "
              f"BERT {generated_words['BERT']:.0%}")
        """),
        md("""
        ## Classifying whole sentences: linear probes on frozen features

        SST-2's task: is a movie-review sentence positive or negative? Neither model saw a label. We take each
        model's features of a sentence, train a logistic regression (scikit-learn) on labelled training sentences
        and test it on the 872 held-out ones. Sentences longer than the context are read in chunks. Features:

        - GPT: the hidden state of the last character (what `GPTClassifier` reads: the only position that has read
          the whole sentence), and the mean of all positions' states;
        - BERT: the mean of all positions' states (every one of them has read the whole chunk);
        - a baseline without any model: the counts of each character.
        """),
        code("""
        def chunks_of(sentences):
            \"\"\"Each sentence as chunks of at most SEQ characters: (ids (C, SEQ), padding mask (C, SEQ), owner (C,)).\"\"\"
            ids, owner = [], []
            for n, s in enumerate(sentences):
                encoded = tokenizer.encode(clean(s) or " ")
                for start in range(0, len(encoded), SEQ):
                    ids.append(encoded[start : start + SEQ])
                    owner.append(n)
            mask = np.array([[i < len(c) for i in range(SEQ)] for c in ids])
            padded = np.array([np.pad(c, (0, SEQ - len(c))) for c in ids], "int32")
            return padded, mask, np.array(owner)


        def sentence_features(sentences):
            ids, mask, owner = chunks_of(sentences)
            hidden_gpt = np.concatenate([ops.convert_to_numpy(gpt.hidden_states(ids[i : i + 256]))
                                         for i in range(0, len(ids), 256)])  # (C, SEQ, D); causal: padding is harmless
            hidden_bert = np.concatenate([ops.convert_to_numpy(bert(bert_inputs(ids[i : i + 256], padding_mask=mask[i : i + 256]))["sequence_output"])
                                          for i in range(0, len(ids), 256)])
            last = mask.sum(1) - 1
            features = {"GPT, last character": np.zeros((len(sentences), hidden_gpt.shape[-1])),
                        "GPT, mean of positions": np.zeros((len(sentences), hidden_gpt.shape[-1])),
                        "BERT, mean of positions": np.zeros((len(sentences), hidden_bert.shape[-1]))}
            weight = mask[..., None].astype("float64")
            gpt_mean = (hidden_gpt * weight).sum(1) / weight.sum(1)
            bert_mean = (hidden_bert * weight).sum(1) / weight.sum(1)
            counts = np.bincount(owner, minlength=len(sentences))[:, None]
            np.add.at(features["GPT, mean of positions"], owner, gpt_mean / counts[owner])
            np.add.at(features["BERT, mean of positions"], owner, bert_mean / counts[owner])
            features["GPT, last character"][owner] = hidden_gpt[np.arange(len(ids)), last]  # the last chunk wins
            features["character counts"] = np.stack([np.bincount(tokenizer.encode(clean(s)), minlength=VOCABULARY)
                                                     for s in sentences]).astype("float64")
            return features


        probe = {}
        if train_labels is None:
            print(f"no labels in {text_source}: the classification probe is skipped")
        else:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            PROBE_TRAIN = 64 if SMOKE else 3000
            # SST-2's training set holds sentences and their sub-phrases; the probe trains on sentences of 6+ words.
            pool = np.array([i for i, s in enumerate(train_sentences) if len(s.split()) >= 6])
            chosen = np.random.default_rng(3).choice(pool, size=min(PROBE_TRAIN, len(pool)), replace=False)
            probe_test = dev_sentences[: 64 if SMOKE else None]
            start = time.perf_counter()
            features_train = sentence_features([train_sentences[i] for i in chosen])
            features_test = sentence_features(probe_test)
            for name in features_train:
                classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
                classifier.fit(features_train[name], train_labels[chosen])
                probe[name] = float(classifier.score(features_test[name], dev_labels[: len(probe_test)]))
            print(f"linear probes: {len(chosen):,} training sentences, {len(probe_test)} held-out "
                  f"({time.perf_counter() - start:.0f} s)")
            for name, accuracy in probe.items():
                print(f"{name:>24}: accuracy {accuracy:.1%}")
            fig, ax = plt.subplots(figsize=(8, 3))
            ax.barh(list(probe), list(probe.values()), color=["tab:red", "tab:orange", "tab:blue", "gray"])
            for i, value in enumerate(probe.values()):
                ax.text(value + 0.005, i, f"{value:.1%}", va="center")
            ax.axvline(0.5, color="k", ls=":", lw=1)
            ax.set(xlim=(0.4, 1), xlabel="held-out accuracy", title="SST-2 sentiment from frozen features (logistic regression)")
            ax.invert_yaxis()
            plt.show()
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display

        g, bl, bb = blank["GPT, left side"], blank["BERT, left side only"], blank["BERT, both sides"]
        if probe:
            best_gpt = max(probe["GPT, last character"], probe["GPT, mean of positions"])
            probe_line = (f"BERT's mean features **{probe['BERT, mean of positions']:.1%}**, GPT's last-character state "
                          f"{probe['GPT, last character']:.1%}, GPT's mean {probe['GPT, mean of positions']:.1%}, "
                          f"character counts alone {probe['character counts']:.1%}: BERT is "
                          f"{'better than' if probe['BERT, mean of positions'] > best_gpt else 'NOT better than'} the "
                          f"better GPT probe by {100 * (probe['BERT, mean of positions'] - best_gpt):+.1f} points.")
        else:
            probe_line = f"skipped: {text_source} has no labels."
        display(Markdown(f\"\"\"
        - **Same size, same data, same steps:** GPT {gpt.count_params():,} and BERT {bert_mlm.count_params():,} parameters,
          {STEPS} steps of {BATCH} x {SEQ} characters of {text_source} ({train_seconds['GPT']:.0f} s and
          {train_seconds['BERT']:.0f} s). Held-out losses at the end: GPT next character {curves['GPT'][-1][1]:.3f},
          BERT masked character {curves['BERT'][-1][1]:.3f} nats/char.
        - **The masks:** GPT's trained first block puts {gpt_future:.3f} of its weight on later positions (the causal
          mask), BERT's {bert_future:.2f}.
        - **Filling a blank** ({len(x_blank)} held-out positions): BERT with both sides **{bb['accuracy']:.1%}**
          ({bb['loss']:.2f} nats), GPT from the left **{g['accuracy']:.1%}** ({g['loss']:.2f} nats), BERT from the left
          only {bl['accuracy']:.1%} ({bl['loss']:.2f} nats); character frequencies alone {blank['character frequencies']['accuracy']:.1%}.
          Both sides {'beat' if bb['accuracy'] > g['accuracy'] else 'did NOT beat'} the left side by
          {100 * (bb['accuracy'] - g['accuracy']):+.1f} points; on the {word_start.sum()} first letters of words by
          **{100 * (blank_word_start['BERT, both sides'] - blank_word_start['GPT, left side']):+.1f}** points
          ({blank_word_start['BERT, both sides']:.1%} vs {blank_word_start['GPT, left side']:.1%}).
        - **The cost:** after {curves['BERT'][0][0]} steps BERT got {blank_curves['BERT'][0]:.1%} of the blanks right and GPT
          {blank_curves['GPT'][0]:.1%}; BERT {'overtook GPT after ' + str(steps[int(np.argmax(np.array(blank_curves['BERT']) > np.array(blank_curves['GPT'])))]) + ' steps' if any(b > g_ for b, g_ in zip(blank_curves['BERT'], blank_curves['GPT'])) else 'had NOT overtaken GPT by the end'}.
        - **Generating:** from the left side only, which is all a generator has, GPT is
          {'better' if g['accuracy'] > bl['accuracy'] else 'NOT better'} than BERT by
          {100 * (g['accuracy'] - bl['accuracy']):+.1f} points; {generated_words['GPT']:.0%} of GPT's sampled words are words
          of the training text, {generated_words['BERT']:.0%} of BERT's.
        - **Classifying** (SST-2 sentiment, logistic regression on frozen features): {probe_line}
        \"\"\"))
        """, ELAPSED),
    ]


def notebook_06():
    return [
        md("""
        # 6. Receptive fields: a CNN sees a neighbourhood that grows layer by layer, a ViT the whole image at once

        **Step 9** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer
        -> GPT / BERT -> **ViT** -> image GPT. A 3x3 convolution mixes a pixel with its 8 neighbours; stacking
        them (and striding) widens what one unit depends on a few pixels per layer. A Vision Transformer cuts the
        image into patches and lets every patch attend to every other from the first block on. The claims:

        1. In a trained `keras_tx.models.ResNet`, the pixels an intermediate unit depends on (non-zero gradient of
           the unit w.r.t. the input image) form a square that grows with depth, as the kernel sizes and strides
           predict.
        2. In a trained `keras_tx.models.ViT` (patches of 7x7), one patch token depends on its own 49 pixels after
           the patch embedding, and on **every** pixel of the image after the first Transformer block.
        3. The price of that freedom: the CNN's built-in locality is knowledge the ViT must learn from data, so on
           small training sets the CNN should be the more accurate (the ViT paper sees ViTs pull ahead only with
           millions of images). Both trained from scratch with the same recipe on growing subsets of Fashion-MNIST:
           measured below.

        Gradient maps use the two image classifiers shipped in `saved_models/` (trained on all of Fashion-MNIST);
        the data-size comparison trains fresh, smaller models here.
        """),
        code(SETUP + QUIET + """
from keras_tx import recipes
from keras_tx.data import image_dataset
from keras_tx.models import ResNet, ViT
from keras_tx.training import exclude_non_matrices, make_optimizer"""),
        code(LOAD_IMAGES),
        code("""
        resnet, resnet_metadata = recipes.load_image_classifier(str(REPO / "saved_models" / "resnet_fashion_mnist"))
        vit, vit_metadata = recipes.load_image_classifier(str(REPO / "saved_models" / "vit_fashion_mnist"))
        for name, model, metadata in (("ResNet", resnet, resnet_metadata), ("ViT", vit, vit_metadata)):
            print(f"{name}: {model.count_params():,} parameters, test accuracy {metadata['metrics']['test_accuracy']:.2%} "
                  f"on {metadata['dataset']}")
        print(f"ViT: patches of {vit.patch_size}x{vit.patch_size} -> a {vit.grid_size[0]}x{vit.grid_size[1]} grid of "
              f"tokens (+ a class token), {vit.num_layers} blocks")
        images = data.x_test[: 4 if SMOKE else 32].astype("float32") / 255.0  # (B, 28, 28, 1) in [0, 1]
        HEIGHT, WIDTH = images.shape[1:3]
        """),
        md("""
        ## The ResNet: which pixels does one unit depend on?

        For the output of the stem and of each residual block we take the unit at the centre of the feature map,
        sum it over channels, and compute its gradient with respect to every input pixel (mean |gradient| over the
        test images above). A pixel outside the unit's receptive field has a gradient of exactly zero. The theoretical
        receptive field follows from the main path's convolutions: each k x k convolution adds (k - 1) x (the
        product of the strides before it) pixels to the side (the 1x1 shortcuts add nothing).
        """),
        code("""
        def input_gradient(function, images):
            \"\"\"mean over images of |d function(images) / d pixel|, as (H, W).\"\"\"
            x = tf.convert_to_tensor(images)
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tf.reduce_sum(function(x))
            return tf.reduce_mean(tf.abs(tape.gradient(value, x)), axis=(0, 3)).numpy()


        stages = ["stem_relu"] + [layer.name for layer in resnet.layers if layer.name.endswith("_out")]
        features = keras.Model(resnet.input, [resnet.get_layer(name).output for name in stages])
        main_path = [layer for layer in resnet.layers if isinstance(layer, keras.layers.Conv2D) and "shortcut" not in layer.name]
        resnet_maps, resnet_theory, resnet_support, resnet_depth, resnet_measured = [], [], [], [], []
        for index, name in enumerate(stages):
            def centre_unit(x, index=index):
                out = features(x, training=False)[index]  # (B, h, w, C)
                return out[:, out.shape[1] // 2, out.shape[2] // 2, :]
            gradient = input_gradient(centre_unit, images)
            # Theoretical receptive field: the convolutions up to this stage's output.
            last = resnet.layers.index(resnet.get_layer(name))
            size, jump, convolutions = 1, 1, 0
            for conv in main_path:
                if resnet.layers.index(conv) < last:
                    size += (conv.kernel_size[0] - 1) * jump
                    jump *= conv.strides[0]
                    convolutions += 1
            rows, cols = np.nonzero(gradient)
            resnet_maps.append(gradient)
            resnet_theory.append(size)
            resnet_support.append(gradient.astype(bool).mean())
            resnet_depth.append(convolutions)
            resnet_measured.append((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
            print(f"{name:>22}: {convolutions:>2} convolutions, {features.outputs[index].shape[1]:>2}x"
                  f"{features.outputs[index].shape[2]:<2} map | theory {size:>3} px wide | non-zero gradient on "
                  f"{rows.max() - rows.min() + 1:>2} x {cols.max() - cols.min() + 1:<2} px = "
                  f"{resnet_support[-1]:6.1%} of the image")
        """),
        md("""
        ## The ViT: one patch token, before and after each block

        The ViT's tokens: the patch embedding (a 7x7 stride-7 projection), the class token and the positions, then the
        blocks. We rerun the model's own layers to read every token after each block (and check the result against
        `ViT.encode`), then take the gradient of one patch token, the one of the patch in row 1, column 1 of the
        grid, with respect to the input pixels.
        """),
        code("""
        def vit_states(model, images):
            \"\"\"The tokens (B, 1 + patches, D) after the embedding, then after each block.\"\"\"
            x = model.patch_embedding(images)  # (B, P, D), patches in raster order
            x = model.class_token(x)  # (B, 1 + P, D)
            x = x + model.position_embedding(x)
            states = [x]
            for block in model.encoder_blocks:
                x = block(x, training=False)
                states.append(x)
            return states


        check = float(np.abs(ops.convert_to_numpy(vit.final_norm(vit_states(vit, images[:2])[-1]))
                             - ops.convert_to_numpy(vit.encode(images[:2]))).max())
        print(f"max |replayed tokens - ViT.encode| = {check:.1e}")
        assert check < 1e-4
        PATCH = vit.patch_size
        token = 1 + 1 * vit.grid_size[1] + 1  # class token first, then the patch in row 1, column 1
        vit_maps, vit_support = [], []
        for depth in range(vit.num_layers + 1):
            gradient = input_gradient(lambda x, depth=depth: vit_states(vit, x)[depth][:, token], images)
            vit_maps.append(gradient)
            vit_support.append(gradient.astype(bool).mean())
            where = "after the patch embedding" if depth == 0 else f"after block {depth}"
            print(f"patch token {token} {where:>26}: non-zero gradient on {vit_support[-1]:6.1%} of the image "
                  f"({int(gradient.astype(bool).sum())} of {HEIGHT * WIDTH} pixels)")
        """),
        code("""
        from matplotlib.patches import Rectangle

        resnet_shown = sorted(set(list(range(min(6, len(stages)))) + [len(stages) - 1]))  # the growth, then the end
        vit_shown = sorted(set([0, 1, 2, vit.num_layers]))
        columns = max(len(resnet_shown), len(vit_shown)) + 1
        fig, axes = plt.subplots(2, columns, figsize=(2.3 * columns, 6.0))
        for row in axes:
            row[0].imshow(images[0, ..., 0], cmap="gray")
            row[0].set_title(f"input ({class_names[data.y_test[0]]})", fontsize=9)
        for ax, index in zip(axes[0, 1:], resnet_shown):
            ax.imshow(np.sqrt(resnet_maps[index] / resnet_maps[index].max()), cmap="inferno")
            side, centre = resnet_theory[index], (HEIGHT // 2, WIDTH // 2)
            ax.add_patch(Rectangle((centre[1] - side / 2, centre[0] - side / 2), side, side, fill=False, ec="cyan", lw=1))
            ax.set_title(f"ResNet {stages[index]}\\n{resnet_depth[index]} convs, {resnet_support[index]:.0%} of pixels", fontsize=8)
        for ax, depth in zip(axes[1, 1:], vit_shown):
            ax.imshow(np.sqrt(vit_maps[depth] / vit_maps[depth].max()), cmap="inferno")
            ax.set_title(("ViT patch embedding" if depth == 0 else f"ViT after block {depth}")
                         + f"\\n{vit_support[depth]:.0%} of pixels", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
        for ax in axes[1, 1 + len(vit_shown):]:
            ax.axis("off")
        fig.suptitle("|d unit / d pixel| (square root, each map to its own maximum); cyan: theoretical receptive field", y=1.0)
        plt.tight_layout()
        fig.subplots_adjust(hspace=0.45)
        plt.show()

        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.plot(resnet_depth, [100 * s for s in resnet_support], "o-", label="ResNet: centre unit after the stem / each block")
        ax.plot(range(vit.num_layers + 1), [100 * s for s in vit_support], "s-", label="ViT: one patch token after each block")
        ax.set(xlabel="depth (3x3 convolutions for the ResNet, Transformer blocks for the ViT)",
               ylabel="% of input pixels with non-zero gradient", title="Receptive field vs depth", ylim=(0, 105))
        ax.legend()
        plt.show()
        """),
        md("""
        ## CNN vs ViT as the training set grows

        Two fresh models of about the same size, trained from scratch with the same recipe (`keras_tx.training`'s
        AdamW, warm-up and cosine decay; batches of 64 from `keras_tx.data.image_dataset`, no augmentation) on the
        first *n* Fashion-MNIST training images, and tested on held-out test images. Smaller training sets get more
        epochs, so that every run takes enough steps to fit its data. Only the peak learning rate differs, each
        model at its best of 1e-3, 2e-3, 5e-3 and 1e-2 in trial runs at n = 500 (scored on the same test images):
        1e-2 for the ResNet (at 2e-3 it did not even fit its 500 training images, and tested lower), 2e-3 for the
        ViT (lower at 1e-3 and at 5e-3), so neither is handicapped by the other's rate. The ResNet's BatchNorm layers keep running
        averages of their batch statistics for testing; Keras' default momentum (0.99) needs more steps than the
        smallest runs take to forget the initial values, so they use 0.9.
        """),
        code("""
        SIZES = [64] if SMOKE else [500, 2000, 8000]
        EPOCHS = {64: 1, 500: 40, 2000: 12, 8000: 5}
        # Each model's best of 1e-3, 2e-3, 5e-3 and 1e-2 in trial runs at n = 500 (see above).
        LEARNING_RATE = {"ResNet": 1e-2, "ViT": 2e-3}
        SIZES = [n for n in SIZES if n <= len(data.x_train)] or [len(data.x_train)]
        TEST = 256 if SMOKE else 2000
        BATCH = 64
        test_data = image_dataset(data.x_test[:TEST], data.y_test[:TEST], batch_size=256)


        def make_model(kind):
            if kind == "ResNet":  # 3x3 convolutions, 3 stages of one block, 16 -> 32 -> 64 channels
                model = ResNet(data.x_train.shape[1:], len(class_names), width=16, blocks_per_stage=(1,) * (1 if SMOKE else 3))
                for layer in model.layers:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.momentum = 0.9  # the running statistics must settle within a few hundred steps
                return model
            return ViT(HEIGHT, 7, num_layers=1 if SMOKE else 4, num_heads=4, hidden_dim=48, mlp_dim=96,
                       num_classes=len(class_names), num_channels=data.x_train.shape[-1])


        print(", ".join(f"{kind}: {make_model(kind).count_params():,} parameters" for kind in ("ResNet", "ViT")))
        accuracy = {"ResNet": [], "ViT": []}
        train_accuracy = {"ResNet": [], "ViT": []}
        seconds = {"ResNet": 0.0, "ViT": 0.0}
        for n in SIZES:
            epochs = EPOCHS.get(n, max(1, 40000 // n))
            steps = epochs * (n // BATCH)
            for kind in accuracy:
                keras.utils.set_random_seed(0)
                model = make_model(kind)
                optimizer = make_optimizer(steps, learning_rate=LEARNING_RATE[kind], min_learning_rate=1e-4,
                                           warmup_steps=min(100, steps // 10), weight_decay=0.05)
                model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
                exclude_non_matrices(optimizer, model)
                train = image_dataset(data.x_train[:n], data.y_train[:n], BATCH, shuffle=True, seed=0)
                start = time.perf_counter()
                history = model.fit(train.take(n // BATCH), epochs=epochs, shuffle=False, verbose=0)  # shuffled above
                seconds[kind] += time.perf_counter() - start
                accuracy[kind].append(model.evaluate(test_data, verbose=0)[1])
                train_accuracy[kind].append(history.history["accuracy"][-1])
                print(f"n = {n:>5}, {epochs:>2} epochs ({steps:>4} steps): {kind:>6} test accuracy {accuracy[kind][-1]:.2%} "
                      f"(last epoch's training accuracy {train_accuracy[kind][-1]:.2%}), {time.perf_counter() - start:.0f} s")
        """),
        code("""
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind, marker in (("ResNet", "o-"), ("ViT", "s-")):
            ax.plot(SIZES, [100 * a for a in accuracy[kind]], marker, label=kind)
            for n, a in zip(SIZES, accuracy[kind]):
                ax.annotate(f"{a:.1%}", (n, 100 * a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        ax.set(xscale="log", xlabel="training images", ylabel=f"test accuracy (%), {TEST} test images",
               title=f"{image_source}: trained from scratch on the first n images")
        ax.set_xticks(SIZES, [str(n) for n in SIZES])
        ax.legend()
        plt.show()
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display

        gaps = [100 * (r - v) for r, v in zip(accuracy["ResNet"], accuracy["ViT"])]
        widths = ", ".join(str(t) for t in resnet_theory)
        depths = ", ".join(str(d) for d in resnet_depth)
        as_predicted = all(m == (min(t, HEIGHT), min(t, WIDTH)) for m, t in zip(resnet_measured, resnet_theory))
        display(Markdown(f\"\"\"
        - **CNN:** the centre unit of the trained ResNet depends on {resnet_support[0]:.1%} of the pixels after the stem,
          {resnet_support[len(resnet_support) // 2]:.1%} after {resnet_depth[len(resnet_depth) // 2]} convolutions and
          {resnet_support[-1]:.1%} after all {resnet_depth[-1]}. Its non-zero gradients form squares
          {'exactly as wide as' if as_predicted else 'NOT always as wide as'} the theory predicts, {widths} px after {depths} convolutions, until they cover the whole {HEIGHT}x{WIDTH} image
          ({', '.join(f'{s:.0%}' for s in resnet_support)} of the pixels).
        - **ViT:** one patch token depends on {vit_support[0]:.1%} of the pixels after the patch embedding (its own
          {PATCH}x{PATCH} patch) and on **{vit_support[1]:.1%}** after the first block
          ({', '.join(f'{s:.0%}' for s in vit_support[1:])} after blocks 1..{vit.num_layers}).
        - **Data:** trained from scratch on n = {', '.join(map(str, SIZES))} {image_source} images, test accuracy
          ResNet {', '.join(f'{a:.1%}' for a in accuracy['ResNet'])} vs ViT {', '.join(f'{a:.1%}' for a in accuracy['ViT'])}:
          the CNN leads by {', '.join(f'{g:+.1f}' for g in gaps)} points: it is
          {'ahead' if gaps[0] > 0 else 'NOT ahead'} on the smallest training set, and the gap
          {'shrinks' if len(gaps) > 1 and gaps[-1] < gaps[0] else 'does NOT shrink'} as the training set grows.
          Training took {seconds['ResNet']:.0f} s (ResNet) and {seconds['ViT']:.0f} s (ViT) in all.
        \"\"\"))
        """, ELAPSED),
    ]


def notebook_07():
    return [
        md("""
        # 7. Image GPT: pixels as a sequence of palette colours, and completions of half images

        **The last step** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
        Transformer -> GPT / BERT -> ViT -> **image GPT**. ViT reads an image as patches; image GPT asks whether
        GPT's recipe needs language at all. `keras_tx.models.ImageGPT`:

        1. **Palette:** k-means on the training pixels (`keras_tx.models.Palette`) gives a small set of colours,
           16 grey levels here; every pixel becomes the index of its nearest colour, a token.
        2. **Pixels as a sequence:** images are downsampled to 14x14 and read row by row, a start token first:
           197 tokens. The model is an unchanged GPT (causal mask, next-token loss); it is never told that the
           image is 2-D, so it has to learn that the pixel above is 14 tokens back.
        3. **Completion:** given the top half of an image, `ImageGPT.complete` samples the bottom half pixel by
           pixel (GPT's cached `generate`).

        Measured below on Fashion-MNIST: the palette's quantization error, the model's bits per pixel against
        a model that knows only colour frequencies, how much attention the trained heads put on the pixel above
        the one being predicted, and whether completions fit the given half better than the bottom halves of other
        images do.
        """),
        code(SETUP + QUIET + """
from keras_tx import recipes
from keras_tx.models import ImageGPT, Palette"""),
        code(LOAD_IMAGES),
        md("""
        ## The palette

        Images are first downsampled to the 14x14 token grid (the mean of each 2x2 block, as
        `ImageGPT.downsample` does); k-means then clusters a sample of those pixels. More colours quantize more
        faithfully but make a larger vocabulary: the error by palette size, and the 16-colour palette used below.
        """),
        code("""
        GRID = 7 if SMOKE else 14
        NUM_COLORS = 16
        FIT_IMAGES = 256 if SMOKE else 10000
        factor = data.x_train.shape[1] // GRID


        def block_mean(images):
            \"\"\"(N, H, W, C) uint8 -> (N, GRID, GRID, C) floats in [0, 1]: the mean of each factor x factor block.\"\"\"
            x = images.astype("float32") / 255.0
            n, h, w, c = x.shape
            return x.reshape(n, GRID, h // GRID, GRID, w // GRID, c).mean(axis=(2, 4))


        small_train = block_mean(data.x_train[:FIT_IMAGES])
        small_test = block_mean(data.x_test[: 64 if SMOKE else 1000])
        quantization_mse = {}
        for k in (2, 16) if SMOKE else (2, 4, 8, 16, 32):
            palette_k = Palette.fit(small_train, num_colors=k, seed=0)
            restored = palette_k.dequantize(palette_k.quantize(small_test), GRID, GRID)
            quantization_mse[k] = float(np.mean((restored - small_test) ** 2))
        palette = Palette.fit(small_train, num_colors=NUM_COLORS, seed=0)
        test_tokens = palette.quantize(small_test)  # (N, GRID * GRID)
        usage = np.bincount(test_tokens.ravel(), minlength=palette.num_colors) / test_tokens.size
        print(f"mean squared error of the quantized {GRID}x{GRID} test images, by palette size:",
              ", ".join(f"{k}: {mse:.5f}" for k, mse in quantization_mse.items()))
        print(f"the {palette.num_colors} grey levels: {[round(float(c), 3) for c in palette.centres[:, 0]]}")

        fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1.3, 1]})
        axes[0].bar(range(palette.num_colors), usage, color=[str(float(c)) for c in palette.centres[:, 0]], edgecolor="k")
        axes[0].set(xlabel="palette index (sorted by brightness)", ylabel="share of test pixels", yscale="log",
                    title=f"The {palette.num_colors}-colour k-means palette and how often each colour occurs")
        axes[1].plot(list(quantization_mse), list(quantization_mse.values()), "o-")
        axes[1].set(yscale="log", xlabel="palette size (colours)", ylabel="mean squared error",
                    title=f"Quantization error of {GRID}x{GRID} test images")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xticks(list(quantization_mse), [str(k) for k in quantization_mse])
        axes[1].minorticks_off()
        plt.tight_layout()
        plt.show()

        fig, axes = plt.subplots(3, 8, figsize=(12, 4.8))
        for j in range(8):
            for i, (image, title) in enumerate(((data.x_test[j, ..., 0] / 255.0, "original 28x28"),
                                               (small_test[j, ..., 0], f"downsampled {GRID}x{GRID}"),
                                               (palette.dequantize(test_tokens[j : j + 1], GRID, GRID)[0, ..., 0],
                                                f"{palette.num_colors} colours"))):
                axes[i, j].imshow(image, cmap="gray", vmin=0, vmax=1)
                axes[i, j].axis("off")
                if j == 0:
                    axes[i, j].set_title(title, fontsize=9, loc="left")
        plt.show()
        """),
        md("""
        ## Pixels as a sequence

        `ImageGPT.sequences` turns an image into `[start] p_1 ... p_196`, row after row. In that sequence the pixel
        to the left is 1 token back and the pixel above is 14 tokens back; the causal mask lets the pixel at
        (row, column) see every pixel of the rows above and the ones to its left in its own row.
        """),
        code("""
        keras.utils.set_random_seed(0)
        LAYERS, HIDDEN = (1, 32) if SMOKE else (2, 64)
        igpt = ImageGPT(palette, image_size=GRID, num_layers=LAYERS, num_heads=4, hidden_dim=HIDDEN,
                        intermediate_dim=4 * HIDDEN)
        assert np.allclose(igpt.downsample(data.x_test[:8]), small_test[:8], atol=1e-6)  # the same downsampling
        tokens = igpt.sequences(data.x_test[:1])[0]  # (1 + GRID * GRID,)
        print(f"ImageGPT: {LAYERS} blocks, width {HIDDEN}, vocabulary {igpt.vocabulary_size} "
              f"({palette.num_colors} colours + start token {igpt.start_token_id}), sequences of {igpt.max_length} "
              f"tokens, {igpt.count_params():,} parameters")
        middle = GRID // 2
        print(f"row {middle} of that test image as tokens (positions {1 + middle * GRID}..{(middle + 1) * GRID}):",
              tokens[1 + middle * GRID : 1 + (middle + 1) * GRID].tolist())

        row, column = GRID // 2, GRID // 2
        visible = (np.arange(GRID * GRID) < row * GRID + column).reshape(GRID, GRID)
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 1, 2.4]})
        axes[0].imshow(palette.dequantize(tokens[None, 1:], GRID, GRID)[0, ..., 0], cmap="gray")
        order = np.arange(GRID * GRID).reshape(GRID, GRID)
        for (r, c), i in np.ndenumerate(order):
            if GRID <= 8 or (r % 3 == 0 and c % 3 == 0):
                axes[0].text(c, r, str(i + 1), ha="center", va="center", fontsize=6, color="tab:red")
        axes[0].set_title("raster order: token index of a pixel")
        axes[1].imshow(visible, cmap="Blues", vmin=0, vmax=1.5)
        axes[1].plot(column, row, "r*", ms=12)
        axes[1].set_title(f"what pixel ({row}, {column}) may see")
        axes[2].imshow(tokens[None, :], aspect="auto", cmap="gray")
        axes[2].set(title="the same image as one sequence of tokens (start token first)", yticks=[],
                    xlabel="position in the sequence")
        for ax in axes[:2]:
            ax.set_xticks([]), ax.set_yticks([])
        for ax in axes:
            ax.grid(False)
        plt.tight_layout()
        plt.show()
        """),
        md("""
        ## Training: next-pixel prediction

        `ImageGPT.training_pairs` gives inputs and targets shifted by one. Adam, batches of 32 images, one pass
        over the training images used. Loss in bits per pixel on held-out test images, against a model that only
        knows how often each colour occurs.
        """),
        code("""
        STEPS = 4 if SMOKE else 700
        BATCH = 32
        x_train, y_train = igpt.training_pairs(data.x_train[: STEPS * BATCH])
        x_test, y_test = igpt.training_pairs(data.x_test[: 64 if SMOKE else 1000])
        igpt.compile(keras.optimizers.Adam(2e-3, clipnorm=1.0),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        bits = lambda nats: nats / np.log(2)
        loss_before = bits(igpt.evaluate(x_test, y_test, batch_size=128, verbose=0))
        curve, start = [(0, loss_before)], time.perf_counter()
        CHUNK = STEPS if SMOKE else 100
        for chunk in range(STEPS // CHUNK):
            rows = slice(chunk * CHUNK * BATCH, (chunk + 1) * CHUNK * BATCH)
            igpt.fit(x_train[rows], y_train[rows], batch_size=BATCH, shuffle=False, verbose=0)
            curve.append(((chunk + 1) * CHUNK, bits(igpt.evaluate(x_test, y_test, batch_size=128, verbose=0))))
            print(f"step {curve[-1][0]:>4}: {curve[-1][1]:.3f} bits/pixel on held-out images")
        train_time = time.perf_counter() - start
        frequencies = np.bincount(y_train.ravel(), minlength=palette.num_colors) / y_train.size
        unigram = float(-np.mean(np.log2(frequencies[y_test])))
        loss_after = curve[-1][1]
        print(f"{STEPS} steps in {train_time:.0f} s; held-out: {loss_before:.3f} -> {loss_after:.3f} bits/pixel "
              f"(colour frequencies alone: {unigram:.3f}; a raw 16-level pixel: 4 bits)")

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(*zip(*curve), "o-", label="ImageGPT")
        ax.axhline(unigram, color="gray", ls=":", label=f"colour frequencies only ({unigram:.2f})")
        ax.set(xlabel="training step", ylabel="bits per pixel (held-out)", title="Next-pixel loss")
        ax.legend()
        plt.show()
        """),
        md("""
        ## Did it learn that the pixel above is 14 tokens back?

        The attention weights of each block (running the model's own layers, as in notebook 3), averaged over
        held-out images, heads and query positions, by how far back the key is. Mind the shift by one: the query at
        position t holds pixel t - 1 and predicts pixel t, so the pixel above the one being predicted is
        14 - 1 = 13 tokens before the query, and the one two rows up 27. Nothing but training could put structure
        there.
        """),
        code("""
        def attention_by_distance(model, token_ids, max_distance):
            x = model.token_embedding(token_ids)
            x = x + model.position_embedding(x)
            profiles = []
            T = token_ids.shape[1]
            queries = np.arange(max_distance, T)  # positions with at least max_distance tokens before them
            for block in model.blocks:
                x, w = block(x, return_attention_scores=True)
                w = ops.convert_to_numpy(w).mean(axis=(0, 1))  # (T, T), mean over images and heads
                profiles.append([w[queries, queries - d].mean() for d in range(max_distance + 1)])
            return np.array(profiles)  # (blocks, distance)


        MAX_DISTANCE = 3 * GRID
        profile = attention_by_distance(igpt, x_test[: 8 if SMOKE else 256], MAX_DISTANCE)
        ABOVE = GRID - 1  # distance from the query to the pixel above the predicted one
        near = np.r_[GRID // 2 : ABOVE - 1, ABOVE + 2 : ABOVE + GRID // 2 + 1]  # distances around it, for comparison
        for layer, p in enumerate(profile):
            print(f"block {layer}: weight on the query's own token (the pixel left of the predicted one) {p[0]:.3f}; "
                  f"on the pixel above the predicted one ({ABOVE} back) {p[ABOVE]:.3f}, vs {p[near].mean():.3f} on "
                  f"distances {near.min()}..{ABOVE - 2} and {ABOVE + 2}..{near.max()}; two rows up ({2 * GRID - 1} back) "
                  f"{p[2 * GRID - 1]:.3f}")
        above_ratio = max(p[ABOVE] / p[near].mean() for p in profile)
        above_block = int(np.argmax([p[ABOVE] / p[near].mean() for p in profile]))

        fig, ax = plt.subplots(figsize=(9, 3.5))
        for layer, p in enumerate(profile):
            ax.plot(range(MAX_DISTANCE + 1), p, "o-", ms=3, label=f"block {layer}")
        for d in (ABOVE, 2 * GRID - 1):
            ax.axvline(d, color="gray", ls=":")
        ax.set(xlabel="distance back in the sequence (tokens)", ylabel="mean attention weight", yscale="log",
               title=f"Attention by distance from the query: dotted, one and two rows above the predicted pixel "
                     f"({ABOVE} and {2 * GRID - 1})")
        ax.legend()
        plt.show()
        """),
        md("""
        ## Completing half images

        Each held-out image is downsampled and quantized; `ImageGPT.complete(images, keep_rows=7)` keeps its top 7
        rows and samples the other 7, pixel by pixel, several times with different random draws. How good is a
        completion? Its bottom half is compared (mean squared error) with the true bottom half, and so are two
        references that ignore the top half: the bottom half of another test image, and the mean bottom half of
        the training images.
        """),
        code("""
        KEEP = GRID // 2
        SHOW, SAMPLES = (2, 2) if SMOKE else (8, 4)
        EVAL = 4 if SMOKE else 128
        start = time.perf_counter()
        completions = igpt.complete(data.x_test[:EVAL], keep_rows=KEEP, num_samples=SAMPLES, seed=0)  # (N, S, h, w, 1)
        complete_time = time.perf_counter() - start
        truth = palette.dequantize(igpt.quantize_images(data.x_test[:EVAL]), GRID, GRID)  # (N, h, w, 1)
        assert np.allclose(completions[:, :, :KEEP], truth[:, None, :KEEP]), "the given rows must be kept"
        print(f"{EVAL} images x {SAMPLES} completions of {(GRID - KEEP) * GRID} pixels each in {complete_time:.0f} s")

        fig, axes = plt.subplots(SHOW, 2 + SAMPLES, figsize=(1.6 * (2 + SAMPLES), 1.6 * SHOW))
        for i in range(SHOW):
            given = truth[i].copy()
            given[KEEP:] = 0.5
            row = [(truth[i], "truth (quantized)"), (given, "given: top half")]
            row += [(completions[i, s], f"sample {s + 1}") for s in range(SAMPLES)]
            for ax, (image, title) in zip(axes[i], row):
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
                ax.axhline(KEEP - 0.5, color="tab:red", lw=0.8)
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0:
                    ax.set_title(title, fontsize=8)
        plt.suptitle(f"ImageGPT completions of held-out {image_source} images (below the red line: sampled)", y=1.0)
        plt.tight_layout()
        plt.show()

        bottom = lambda images: images[..., KEEP:, :, :]
        completion_mse = float(np.mean((bottom(completions) - bottom(truth)[:, None]) ** 2))
        other_mse = float(np.mean((bottom(np.roll(truth, 1, axis=0)) - bottom(truth)) ** 2))  # another test image's
        # Averages are not samples: the mean of the samples (an estimate of the expected completion given the top) is
        # compared with the mean bottom half of the training images (the best guess that ignores the top).
        average_mse = float(np.mean((bottom(completions).mean(1) - bottom(truth)) ** 2))
        mean_bottom = bottom(palette.dequantize(y_train, GRID, GRID)).mean(0)
        mean_mse = float(np.mean((mean_bottom[None] - bottom(truth)) ** 2))
        print(f"mean squared error of the bottom half vs the truth:\\n"
              f"  samples:  a completion {completion_mse:.4f} vs another test image's bottom half {other_mse:.4f}\\n"
              f"  averages: the mean of the {SAMPLES} completions {average_mse:.4f} vs the mean training bottom half {mean_mse:.4f}")
        """),
        md("## Conclusion (numbers computed above)"),
        code("""
        from IPython.display import Markdown, display

        display(Markdown(f\"\"\"
        - **Palette:** k-means on {FIT_IMAGES:,} downsampled {image_source} training images; the mean squared error of
          quantized {GRID}x{GRID} test images falls from {quantization_mse[2]:.4f} with 2 colours to
          **{quantization_mse[16]:.5f}** with 16 (the palette used){f" and {quantization_mse[32]:.5f} with 32" if 32 in quantization_mse else ""}.
        - **Pixels as a sequence:** a GPT ({LAYERS} blocks, width {HIDDEN}, {igpt.count_params():,} parameters) on
          sequences of {igpt.max_length} tokens, trained {STEPS} steps of {BATCH} images ({train_time:.0f} s): held-out loss
          **{loss_after:.3f} bits/pixel**, vs {loss_before:.3f} untrained and {unigram:.3f} for colour frequencies alone.
        - **{'It found the second dimension' if above_ratio > 1.5 else 'No clear sign of the second dimension'}:** the mean
          attention weight on the pixel above the one being predicted ({ABOVE} tokens before the query) is
          **{above_ratio:.1f}x** the mean weight on the neighbouring distances in block {above_block}, in a model that was
          only ever given a 1-D sequence.
        - **Completions:** {EVAL} held-out images x {SAMPLES} samples. Mean squared error of a sampled bottom half vs the
          true one **{completion_mse:.4f}**, vs {other_mse:.4f} for another test image's bottom half (a sample that ignores
          the top: {'the completions are closer' if completion_mse < other_mse else 'the completions are NOT closer'});
          the mean of the {SAMPLES} samples {average_mse:.4f} vs {mean_mse:.4f} for the mean training bottom half
          ({'closer' if average_mse < mean_mse else 'NOT closer'}).
        \"\"\"))
        """, ELAPSED),
    ]


NOTEBOOKS = {
    "01_rnn_vs_lstm.ipynb": notebook_01,
    "02_attention_scaling.ipynb": notebook_02,
    "03_multi_head_attention.ipynb": notebook_03,
    "04_parallel_training_serial_decoding.ipynb": notebook_04,
    "05_gpt_vs_bert.ipynb": notebook_05,
    "06_receptive_field_cnn_vs_vit.ipynb": notebook_06,
    "07_image_gpt.ipynb": notebook_07,
}


def build(name):
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb, timeout=1200):
    """Runs `nb` in place in notebooks/ with a kernel on this very interpreter (not whatever `python3` means)."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as prefix:
        _install_kernel(prefix)
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                                resources={"metadata": {"path": str(HERE)}})
        client.execute()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


KERNEL_NAME = "keras-tx-notebooks"


def _install_kernel(prefix):
    """A kernelspec for sys.executable under `prefix`, found first through JUPYTER_PATH."""
    import subprocess

    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", prefix, "--name", KERNEL_NAME],
                   check=True, capture_output=True)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(Path(prefix) / "share" / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="build only notebooks whose name contains one of these")
    parser.add_argument("--execute", action="store_true", help="execute and save with outputs")
    args = parser.parse_args()
    for name in NOTEBOOKS:
        if args.only and not any(part in name for part in args.only):
            continue
        nb = build(name)
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s")
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
