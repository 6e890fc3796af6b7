"""Our GPT vs keras-hub's GPT2 (same configuration, same weights): training tokens/s and generation tokens/s.

Commands:
    python benchmarks/gpt.py train [--config baby|shakespeare] [--repeats 5]
    python benchmarks/gpt.py generate [--new-tokens 256] [--batch 1 16]

`train`: one optimizer step (AdamW, sparse cross-entropy on tied logits) of each model, `train_on_batch`
alternating in one process, jit_compile off and on. keras-hub's side is `GPT2Backbone` + the same tied
projection, the way `GPT2CausalLM` computes its logits.
`generate`: greedy decoding of `--new-tokens` tokens: our compiled cached loop, a compiled uncached baseline (the
full model re-run at every step, XLA-compiled once on a fixed-size buffer), and `keras_hub.models.GPT2CausalLM.generate` (no preprocessor), all with
the weights of one keras-hub backbone (`GPT.from_keras_hub`).
Prints markdown tables for benchmarks/RESULTS.md; ratios > 1 mean ours is faster.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import alternate, environment, markdown_table  # noqa: E402

CONFIGS = {
    # nanoGPT's CPU baby config and its shakespeare_char config (ANCHORS.md).
    "baby": dict(num_layers=4, num_heads=4, hidden_dim=128, context=64, batch=12),
    "shakespeare": dict(num_layers=6, num_heads=6, hidden_dim=384, context=256, batch=64),
}
VOCABULARY = 65


def _keras_hub_lm(config):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        intermediate_dim=4 * config["hidden_dim"],
        max_sequence_length=config["context"],
        dropout=0.0,
    )
    token_ids = keras.Input((None,), dtype="int32")
    hidden = backbone({"token_ids": token_ids, "padding_mask": keras.ops.ones_like(token_ids)})
    logits = backbone.token_embedding(hidden, reverse=True)
    return backbone, keras.Model(token_ids, logits)


def _compile(model, jit):
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def train(args):
    from keras_tx.models import GPT

    config = CONFIGS[args.config]
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCABULARY, (config["batch"], config["context"])).astype("int32")
    y = rng.integers(0, VOCABULARY, (config["batch"], config["context"])).astype("int32")
    tokens = config["batch"] * config["context"]
    rows = []
    for jit in (False, True):
        backbone, theirs = _keras_hub_lm(config)
        ours = GPT.from_keras_hub(backbone)
        _compile(theirs, jit)
        _compile(ours, jit)
        times = alternate(
            {"keras-hub": lambda: theirs.train_on_batch(x, y), "keras-tx": lambda: ours.train_on_batch(x, y)},
            repeats=args.repeats,
            iterations=args.iterations,
            warmup=3,
        )
        rows.append([
            args.config, "on" if jit else "off", f"{times['keras-hub'] * 1e3:.1f}", f"{times['keras-tx'] * 1e3:.1f}",
            f"{tokens / times['keras-hub']:,.0f}", f"{tokens / times['keras-tx']:,.0f}",
            f"{times['keras-hub'] / times['keras-tx']:.2f}",
        ])
        print(rows[-1], flush=True)
    print(f"\nGPT training step, config {args.config} {config}; {environment()}; "
          f"median of {args.repeats} x {args.iterations} steps\n")
    print(markdown_table(["config", "jit_compile", "keras-hub ms/step", "keras-tx ms/step", "keras-hub tokens/s",
                          "keras-tx tokens/s", "keras-hub / keras-tx time"], rows))


_UNCACHED_STEPS = {}


def compiled_uncached(model, prompt, new_tokens):
    """A fair no-cache baseline: each step re-runs the whole model, XLA-compiled once, on a fixed-size buffer.

    The buffer has room for prompt + new tokens (zeros after the current position do not matter under the
    causal mask), so every step has the same shapes and one compiled program serves them all.
    """
    import tensorflow as tf

    if model not in _UNCACHED_STEPS:

        @tf.function(jit_compile=True)
        def step(buffer, position):
            logits = model(buffer, training=False)  # (B, T_max, V): the full forward pass, every step
            token = tf.argmax(tf.gather(logits, position - 1, axis=1), axis=-1, output_type=tf.int32)
            return tf.tensor_scatter_nd_update(tf.transpose(buffer), tf.reshape(position, (1, 1)), token[None])

        _UNCACHED_STEPS[model] = step
    step = _UNCACHED_STEPS[model]

    batch, length = prompt.shape
    buffer = tf.constant(np.concatenate([prompt, np.zeros((batch, new_tokens), "int32")], axis=1))
    for position in range(length, length + new_tokens):
        buffer = tf.transpose(step(buffer, tf.constant(position)))
    return buffer.numpy()


def generate(args):
    import keras_hub

    from keras_tx.models import GPT

    config = dict(CONFIGS[args.config], context=args.prompt + args.new_tokens)
    backbone, _ = _keras_hub_lm(config)
    ours = GPT.from_keras_hub(backbone)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    rows = []
    for batch in args.batch:
        prompt = np.random.default_rng(1).integers(0, VOCABULARY, (batch, args.prompt)).astype("int32")
        # keras-hub generates into the padded part of a fixed-length input (padding_mask marks the prompt).
        hub_inputs = {
            "token_ids": np.concatenate([prompt, np.zeros((batch, args.new_tokens), "int32")], axis=1),
            "padding_mask": np.concatenate([np.ones_like(prompt), np.zeros((batch, args.new_tokens), "int32")], 1),
        }
        ours_out = ours.generate(prompt, args.new_tokens)
        hub_out = keras.ops.convert_to_numpy(causal_lm.generate(hub_inputs, stop_token_ids=None)["token_ids"])
        agree = float(np.mean(ours_out == hub_out))
        contenders = {
            "keras-hub": lambda: causal_lm.generate(hub_inputs, stop_token_ids=None),
            "keras-tx cached": lambda: ours.generate(prompt, args.new_tokens),
        }
        if not args.skip_uncached:
            np.testing.assert_array_equal(compiled_uncached(ours, prompt, args.new_tokens), ours_out)
            contenders["keras-tx uncached"] = lambda: compiled_uncached(ours, prompt, args.new_tokens)
        times = alternate(contenders, repeats=args.repeats, iterations=1, warmup=1)
        new = batch * args.new_tokens
        row = [str(batch), f"{new / times['keras-hub']:,.0f}", f"{new / times['keras-tx cached']:,.0f}"]
        row += [f"{new / times['keras-tx uncached']:,.0f}" if "keras-tx uncached" in times else "-"]
        row += [f"{times['keras-hub'] / times['keras-tx cached']:.2f}"]
        row += [f"{times['keras-tx uncached'] / times['keras-tx cached']:.1f}" if "keras-tx uncached" in times else "-"]
        row += [f"{agree:.3f}"]
        rows.append(row)
        print(rows[-1], flush=True)
    print(f"\nGreedy generation of {args.new_tokens} tokens after a {args.prompt}-token prompt, config {args.config}; "
          f"{environment()}; median of {args.repeats}\n")
    print(markdown_table(["batch", "keras-hub tokens/s", "keras-tx cached tokens/s", "keras-tx uncached tokens/s",
                          "cached vs keras-hub", "cached vs uncached", "same tokens as keras-hub"], rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("train", "generate"))
    parser.add_argument("--config", choices=sorted(CONFIGS), default="baby")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--skip-uncached", action="store_true")
    args = parser.parse_args()
    train(args) if args.what == "train" else generate(args)


if __name__ == "__main__":
    main()
