"""Writes the notebooks of this folder from the cell sources below, and optionally executes them.

The .ipynb files are what readers open; this script is where they are edited, so that the three notebooks share
one set-up cell and one data loader. After editing, regenerate and re-execute (at default size, a few minutes
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

ELAPSED = """
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
"""


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


NOTEBOOKS = {
    "01_rnn_vs_lstm.ipynb": notebook_01,
    "02_attention_scaling.ipynb": notebook_02,
    "04_parallel_training_serial_decoding.ipynb": notebook_04,
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
