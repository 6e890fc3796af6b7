"""Our layers vs Keras': forward + backward, same weights, same process, timed alternately.

Command: python benchmarks/layers.py [--batch 32 --length 256 --width 256 --heads 8 --repeats 7]
Prints a markdown table for benchmarks/RESULTS.md: median ms per step of each, and keras / ours (> 1: ours faster).
A third contender is our layer forced onto its explicit-softmax path (what it runs when attention scores are
requested), to show what `keras.ops.dot_product_attention` buys.

`--layer lstm` (with e.g. `--batch 32 --length 64 --width 128`) compares our LSTM with keras.layers.LSTM instead
(on the CPU Keras' runs its generic loop; cuDNN is a GPU path).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import alternate, environment, markdown_table  # noqa: E402
from keras_tx.layers import LSTM, MultiHeadAttention  # noqa: E402


def _forward(layer, x, causal, explicit):
    if isinstance(layer, (keras.layers.LSTM, LSTM)):
        return layer(x)
    if explicit:  # asking for the scores makes our layer take its explicit softmax path
        return layer(x, x, use_causal_mask=causal, return_attention_scores=True)[0]
    return layer(x, x, use_causal_mask=causal)


def step_function(layer, x, jit_compile, causal, explicit=False):
    """A compiled forward + backward step for `layer` on `x`, as the backend does it."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=jit_compile)
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(_forward(layer, x, causal, explicit) ** 2)
            return tape.gradient(loss, layer.trainable_variables)

        return lambda: [g.numpy() for g in step(x)][-1]
    if backend == "jax":
        import jax

        def loss(trainable, non_trainable, x):
            if isinstance(layer, (keras.layers.LSTM, LSTM)):
                y, _ = layer.stateless_call(trainable, non_trainable, x)
                return (y.astype("float32") ** 2).sum()
            kwargs = {"return_attention_scores": True} if explicit else {}
            y, _ = layer.stateless_call(trainable, non_trainable, x, x, use_causal_mask=causal, **kwargs)
            y = y[0] if explicit else y
            return (y.astype("float32") ** 2).sum()

        grad = jax.grad(loss)
        grad = jax.jit(grad) if jit_compile else grad
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        return lambda: jax.block_until_ready(grad(trainable, non_trainable, x))
    raise SystemExit(f"backend {backend} not supported by this benchmark")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layer", choices=["mha", "lstm"], default="mha")
    args = parser.parse_args()
    keras.config.set_dtype_policy(args.dtype)
    x = np.random.default_rng(0).normal(size=(args.batch, args.length, args.width)).astype("float32")
    if args.layer == "lstm":
        return compare_lstm(x, args)
    rows = []
    for causal in (False, True):
        for jit in (False, True):
            theirs = keras.layers.MultiHeadAttention(args.heads, args.width // args.heads)
            ours = MultiHeadAttention(args.heads, args.width // args.heads)
            theirs(x, x)
            ours(x, x)
            ours.set_weights(theirs.get_weights())
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(ours(x, x, use_causal_mask=causal)),
                keras.ops.convert_to_numpy(theirs(x, x, use_causal_mask=causal)),
                atol=1e-3,
            )
            times = alternate(
                {
                    "keras": step_function(theirs, x, jit, causal),
                    "ours": step_function(ours, x, jit, causal),
                    "explicit": step_function(ours, x, jit, causal, explicit=True),
                },
                repeats=args.repeats,
                iterations=args.iterations,
            )
            rows.append(
                [f"{'causal' if causal else 'full'}", "on" if jit else "off", f"{times['keras'] * 1e3:.1f}",
                 f"{times['ours'] * 1e3:.1f}", f"{times['explicit'] * 1e3:.1f}",
                 f"{times['keras'] / times['ours']:.2f}", f"{times['explicit'] / times['ours']:.2f}"]
            )
            print(rows[-1], flush=True)
    print()
    print(f"MultiHeadAttention forward+backward, batch {args.batch}, length {args.length}, width {args.width}, "
          f"{args.heads} heads, {args.dtype}; {environment()}; median of {args.repeats} x {args.iterations} steps")
    print()
    print(markdown_table(
        ["mask", "jit_compile", "keras ms", "ours ms", "ours, explicit softmax ms", "keras / ours",
         "explicit / fused"], rows))


def compare_lstm(x, args):
    rows = []
    for jit in (False, True):
        theirs = keras.layers.LSTM(args.width, return_sequences=True)
        ours = LSTM(args.width, return_sequences=True)
        theirs(x)
        ours(x)
        ours.set_weights(theirs.get_weights())
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), atol=1e-4
        )
        contenders = {"ours": step_function(ours, x, jit, False)}
        try:
            keras_step = step_function(theirs, x, jit, False)
            keras_step()
            contenders["keras"] = keras_step
        except Exception as error:  # Keras' TF loop has no iteration bound: XLA cannot differentiate it
            print(f"keras.layers.LSTM, jit_compile={jit}: {type(error).__name__}", flush=True)
        times = alternate(contenders, repeats=args.repeats, iterations=args.iterations)
        keras_ms = f"{times['keras'] * 1e3:.1f}" if "keras" in times else "fails"
        ratio = f"{times['keras'] / times['ours']:.2f}" if "keras" in times else "-"
        rows.append(["on" if jit else "off", keras_ms, f"{times['ours'] * 1e3:.1f}", ratio])
        print(rows[-1], flush=True)
    print()
    print(f"LSTM forward+backward, batch {args.batch}, length {args.length}, width {args.width} (units = width), "
          f"{args.dtype}; {environment()}; median of {args.repeats} x {args.iterations} steps")
    print()
    print(markdown_table(["jit_compile", "keras ms", "ours ms", "keras / ours"], rows))


if __name__ == "__main__":
    main()
