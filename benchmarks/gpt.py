"""Our GPT vs keras-hub's GPT2 (same configuration, same weights): training tokens/s and generation tokens/s.

Commands:
    python benchmarks/gpt.py train [--config baby|shakespeare] [--repeats 5]
    python benchmarks/gpt.py generate [--new-tokens 256] [--batch 1 16]
    KERAS_BACKEND=jax python benchmarks/gpt.py train generate --config shakespeare --dtype bfloat16 --quick

Runs under the TensorFlow and the JAX backend (under JAX nothing here imports tensorflow). `--dtype bfloat16`
sets the mixed_bfloat16 policy for both models; `--jit on|off|both` picks the `jit_compile` settings of `train`;
`--quick` is a short run for a fixed device budget (jit_compile on only, 3 repeats, no uncached baseline).

`train`: one optimizer step (AdamW, sparse cross-entropy on tied logits) of each model, `train_on_batch`
alternating in one process, jit_compile off and on. keras-hub's side is `GPT2Backbone` + the same tied
projection, the way `GPT2CausalLM` computes its logits.
`generate`: greedy decoding of `--new-tokens` tokens: our compiled cached loop, a compiled uncached baseline (the
full model re-run at every step, XLA-compiled once on a fixed-size buffer), and `keras_hub.models.GPT2CausalLM.generate` (no preprocessor), all with
the weights of one keras-hub backbone (`GPT.from_keras_hub`).
`nanogpt`: our side of `benchmarks/nanogpt_torch.py --alternate-with` (run by it, not by hand): our GPT at the baby
config with keras-tx's training recipe (`keras_tx.training.make_optimizer`: AdamW, warm-up + cosine, global-norm
clip; decay on matrices only), jit_compile on, trained by `model.fit` on `keras-tx train gpt`'s tf.data pipeline
(`--loop fit`, paused between turns by a callback) or by `train_on_batch` on random windows; it reads a step count
on stdin, trains that many steps and answers with one JSON line of their seconds.
Prints markdown tables for benchmarks/RESULTS.md; ratios > 1 mean ours is faster.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks.harness import alternate, environment, markdown_table  # noqa: E402

CONFIGS = {
    # nanoGPT's CPU baby config and its shakespeare_char config (nanoGPT's README).
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
    for jit in args.jit_settings:
        backbone, theirs = _keras_hub_lm(config)
        ours = GPT.from_keras_hub(backbone)
        _compile(theirs, jit)
        _compile(ours, jit)
        times = alternate(
            {"keras-hub": lambda: theirs.train_on_batch(x, y), "keras-tx": lambda: ours.train_on_batch(x, y)},
            repeats=args.repeats,
            iterations=args.iterations,
            warmup=args.warmup,
        )
        rows.append([
            args.config, "on" if jit else "off", f"{times['keras-hub'] * 1e3:.1f}", f"{times['keras-tx'] * 1e3:.1f}",
            f"{tokens / times['keras-hub']:,.0f}", f"{tokens / times['keras-tx']:,.0f}",
            f"{times['keras-hub'] / times['keras-tx']:.2f}",
        ])
        print(rows[-1], flush=True)
    print(f"\nGPT training step, config {args.config} {config}, {args.dtype}; {environment()}; "
          f"median of {args.repeats} x {args.iterations} steps\n")
    print(markdown_table(["config", "jit_compile", "keras-hub ms/step", "keras-tx ms/step", "keras-hub tokens/s",
                          "keras-tx tokens/s", "keras-hub / keras-tx time"], rows))


_UNCACHED_STEPS = {}


def _compiled(model, fn):
    """`fn` compiled once with XLA: tf.function(jit_compile=True), or jax.jit with the weights as arguments."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, autograph=False)
    if backend == "jax":
        import jax

        def pure(values, *args):  # jax.jit needs the weights as arguments, not captured state
            with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                return fn(*args)

        jitted = jax.jit(pure)
        return lambda *args: jitted([v.value for v in model.variables], *args)
    raise SystemExit(f"backend {backend} not supported by this benchmark")


def compiled_uncached(model, prompt, new_tokens):
    """A fair no-cache baseline: each step re-runs the whole model, XLA-compiled once, on a fixed-size buffer.

    The buffer has room for prompt + new tokens (zeros after the current position do not matter under the
    causal mask), so every step has the same shapes and one compiled program serves them all; the position is
    an argument of that program, not a constant in it.
    """
    if model not in _UNCACHED_STEPS:

        def step(buffer, position):
            logits = model(buffer, training=False)  # (B, T_max, V): the full forward pass, every step
            token = ops.cast(ops.argmax(ops.take(logits, position - 1, axis=1), axis=-1), "int32")  # (B,)
            here = ops.cast(ops.arange(ops.shape(buffer)[1], dtype="int32") == position, "int32")  # (T_max,)
            return buffer * (1 - here)[None] + token[:, None] * here[None]

        _UNCACHED_STEPS[model] = _compiled(model, step)
    step = _UNCACHED_STEPS[model]

    batch, length = prompt.shape
    buffer = ops.convert_to_tensor(np.concatenate([prompt, np.zeros((batch, new_tokens), "int32")], axis=1))
    for position in range(length, length + new_tokens):
        buffer = step(buffer, ops.convert_to_tensor(np.int32(position)))
    return ops.convert_to_numpy(buffer)


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
        contenders = {  # each returns numpy, so that asynchronous backends have finished when it returns
            "keras-hub": lambda: ops.convert_to_numpy(causal_lm.generate(hub_inputs, stop_token_ids=None)["token_ids"]),
            "keras-tx cached": lambda: ours.generate(prompt, args.new_tokens),
        }
        if not args.skip_uncached:
            # The same tokens, unless near-ties break differently between the two programs (bfloat16, or TF32
            # matmuls on a GPU): report, don't abort a timed run.
            same = float(np.mean(compiled_uncached(ours, prompt, args.new_tokens) == ours_out))
            if same < 1.0:
                print(f"note: uncached and cached decoding agree on {same:.3f} of the tokens", flush=True)
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
    print(f"\nGreedy generation of {args.new_tokens} tokens after a {args.prompt}-token prompt, config {args.config}, "
          f"{args.dtype}; "
          f"{environment()}; median of {args.repeats}\n")
    print(markdown_table(["batch", "keras-hub tokens/s", "keras-tx cached tokens/s", "keras-tx uncached tokens/s",
                          "cached vs keras-hub", "cached vs uncached", "same tokens as keras-hub"], rows))


def nanogpt(args):
    import json
    import time

    from keras_tx import training
    from keras_tx.models import GPT

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    with open(os.path.join(args.data_dir, "input.txt"), encoding="utf-8") as f:
        text = f.read()
    symbols = sorted(set(text))
    ids = np.searchsorted(np.array([ord(c) for c in symbols]), np.array([ord(c) for c in text])).astype("int32")
    train_ids = ids[: int(0.9 * len(ids))]  # nanoGPT's split: first 90% train
    config = CONFIGS["baby"]
    keras.utils.set_random_seed(args.seed)
    model = GPT(len(symbols), config["num_layers"], config["num_heads"], config["hidden_dim"],
                4 * config["hidden_dim"], config["context"])
    optimizer = training.make_optimizer(2000)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    training.exclude_non_matrices(optimizer, model)
    rng = np.random.default_rng(args.seed)
    window = np.arange(config["context"] + 1)

    def sample():
        tokens = train_ids[rng.integers(0, len(train_ids) - config["context"], config["batch"])[:, None] + window]
        return tokens[:, :-1], tokens[:, 1:]

    def turns():  # the step counts asked for on stdin; 0 at the end
        for line in sys.stdin:
            yield int(line)
        yield 0

    asked = turns()
    if args.loop == "train_on_batch":
        for steps in asked:
            times = []
            for _ in range(steps):
                tick = time.perf_counter()
                model.train_on_batch(*sample())  # returns numpy: the step has finished
                times.append(time.perf_counter() - tick)
            print(json.dumps(times), flush=True)
        return

    class Turns(keras.callbacks.Callback):
        """Pauses `fit` after each turn: answers with the turn's step times, then waits for the next count."""

        def __init__(self):
            super().__init__()
            self.times, self.wanted = [], next(asked)
            self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self.last)  # end to end: data, step, callbacks
            if len(self.times) == self.wanted:
                print(json.dumps(self.times), flush=True)
                self.times, self.wanted = [], next(asked)
                self.model.stop_training = not self.wanted
            self.last = time.perf_counter()

    if keras.backend.backend() == "tensorflow":  # `keras-tx train gpt`'s own input pipeline
        from keras_tx.data.text import language_model_dataset

        data = language_model_dataset(train_ids, config["context"], config["batch"], seed=args.seed).repeat()
    else:
        def forever():
            while True:
                yield sample()

        data = forever()
    model.fit(data, epochs=1, steps_per_epoch=10**9, callbacks=[Turns()], shuffle=False, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("train", "generate", "nanogpt"), nargs="+",
                        help="train and/or generate, in one process; nanogpt: see above")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="baby")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the mixed_bfloat16 policy (float32 variables) for both models")
    parser.add_argument("--jit", choices=("off", "on", "both"), default=None,
                        help="jit_compile of the training step (default both; on with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: jit on, 3 repeats of 5 steps, batch 1 and 64, no uncached baseline")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--iterations", type=int, default=None, help="default 10 (5 with --quick)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="default 1 16 (1 64 with --quick)")
    parser.add_argument("--warmup", type=int, default=3, help="train: untimed steps of each model first")
    parser.add_argument("--skip-uncached", action="store_true")
    parser.add_argument("--data-dir", help="nanogpt: a folder with input.txt")
    parser.add_argument("--threads", type=int, help="nanogpt: TensorFlow's intra- and inter-op threads")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--loop", choices=("fit", "train_on_batch"), default="fit",
                        help="nanogpt: time model.fit on keras-tx's tf.data pipeline (as `keras-tx train gpt`), or "
                             "train_on_batch on numpy windows")
    args = parser.parse_args()
    quick = args.quick
    args.repeats = args.repeats or (3 if quick else 5)
    args.iterations = args.iterations or (5 if quick else 10)
    args.batch = args.batch or ([1, 64] if quick else [1, 16])
    args.skip_uncached = args.skip_uncached or quick
    jit = args.jit or ("on" if quick else "both")
    args.jit_settings = {"off": (False,), "on": (True,), "both": (False, True)}[jit]
    if args.dtype == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    for what in args.what:
        {"train": train, "generate": generate, "nanogpt": nanogpt}[what](args)


if __name__ == "__main__":
    main()
