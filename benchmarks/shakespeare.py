"""Character-level language models on tiny_shakespeare with nanoGPT's recipe, on any Keras backend.

    python benchmarks/shakespeare.py --config baby --model gpt lstm rnn --seeds 1337 1338 1339
    KERAS_BACKEND=jax python benchmarks/shakespeare.py --config shakespeare --model gpt --mixed-precision mixed_bfloat16

Measures what issue "text models" asks: GPT at nanoGPT's CPU baby configuration (goal val loss <= 1.88 at step
2000; nanoGPT 1.8857), an LSTM and a plain RNN language model of about the same parameter count trained the same
way (what attention buys), and, on a GPU, nanoGPT's shakespeare_char recipe (5000 steps, goal val loss <= 1.47 in
under 60 s of training; nanoGPT 1.4697). The split is nanoGPT's: first 90% of characters train, last 10%
validation; the loss is the mean over 200 random validation windows (nanoGPT's eval_iters). Training windows are
drawn at random from a seeded generator, one batch per step, as nanoGPT's get_batch does.

This script trains from numpy arrays (no tf.data), so it also runs where TensorFlow is not installed; the same
training through the CLI is `keras-tx train gpt --data-dir ../shared/datasets/tiny_shakespeare ...` (RESULTS.md).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets",
                    "tiny_shakespeare")
CONFIGS = {
    # nanoGPT's README: the CPU "baby GPT", and config/train_shakespeare_char.py.
    "baby": dict(num_layers=4, num_heads=4, hidden_dim=128, context=64, batch=12, steps=2000, dropout=0.0),
    "shakespeare": dict(num_layers=6, num_heads=6, hidden_dim=384, context=256, batch=64, steps=5000, dropout=0.2),
}
# Recurrent models of about the GPT's parameter count at each configuration (embedding 128 wide).
RECURRENT_UNITS = {"baby": {"lstm": 384, "rnn": 820}, "shakespeare": {"lstm": 1536, "rnn": 3072}}


def load_split(data_dir):
    with open(os.path.join(data_dir, "input.txt"), encoding="utf-8") as file:
        text = file.read()
    characters = sorted(set(text))
    lookup = {c: i for i, c in enumerate(characters)}
    ids = np.array([lookup[c] for c in text], "int32")
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], len(characters)


def windows(ids, count, length, rng):
    starts = rng.integers(0, len(ids) - length - 1, size=count)
    batch = ids[starts[:, None] + np.arange(length + 1)]
    return batch[:, :-1], batch[:, 1:]


def build(model_name, config_name, vocabulary_size):
    from keras_tx.models import GPT, RNNLanguageModel

    config = CONFIGS[config_name]
    if model_name == "gpt":
        return GPT(vocabulary_size, config["num_layers"], config["num_heads"], config["hidden_dim"],
                   4 * config["hidden_dim"], config["context"], dropout=config["dropout"])
    return RNNLanguageModel(vocabulary_size, cell=model_name, embedding_dim=128,
                            units=RECURRENT_UNITS[config_name][model_name], dropout=config["dropout"])


class StepClock(keras.callbacks.Callback):
    """Times between successive batch ends (each covers steps_per_execution steps)."""

    def on_train_begin(self, logs=None):
        self.marks = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append(time.perf_counter())


def run(model_name, config_name, seed, args, train_ids, val_ids, vocabulary_size):
    from keras_tx import training

    keras.utils.set_random_seed(seed)
    config = CONFIGS[config_name]
    steps = args.steps or config["steps"]
    rng = np.random.default_rng(seed)
    x, y = windows(train_ids, steps * config["batch"], config["context"], rng)
    x_val, y_val = windows(val_ids, 200 * config["batch"], config["context"], np.random.default_rng(seed + 1))
    model = build(model_name, config_name, vocabulary_size)
    model(np.zeros((1, config["context"]), "int32"))
    if args.scaled_residual_init and model_name == "gpt":
        # GPT-2's (and nanoGPT's) initialization: each block's two residual output projections at
        # 0.02 / sqrt(2 * layers) instead of 0.02. Tried against ours in RESULTS.md; not the model's default.
        factor = 1 / np.sqrt(2 * len(model.blocks))
        for block in model.blocks:
            for layer in (block.self_attention.output_dense, block.feedforward.output_dense):
                layer.kernel.assign(layer.kernel * factor)
    optimizer = training.make_optimizer(steps, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                                        weight_decay=0.1, beta_2=0.99, clip_norm=1.0)
    training.exclude_non_matrices(optimizer, model)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True, steps_per_execution=args.steps_per_execution)
    clock = StepClock()
    begin = time.perf_counter()
    history = model.fit(x, y, batch_size=config["batch"], epochs=1, shuffle=False, verbose=0,
                        callbacks=[clock])
    wall = time.perf_counter() - begin
    gaps = np.diff(clock.marks) / args.steps_per_execution
    steady = gaps[1:] if len(gaps) > 1 else gaps  # the first chunk includes compilation
    val_loss = model.evaluate(x_val, y_val, batch_size=config["batch"], verbose=0)
    result = {
        "model": model_name, "config": config_name, "seed": seed, "parameters": int(model.count_params()),
        "steps": steps, "val_loss": round(float(val_loss), 4), "train_loss_epoch_mean": round(float(history.history["loss"][-1]), 4),
        "ms_per_step_median": round(1000 * float(np.median(steady)), 2),
        "tokens_per_second": round(config["batch"] * config["context"] / float(np.median(steady))),
        "fit_seconds_with_compile": round(wall, 1),
        "fit_seconds_after_first_chunk": round(float(np.sum(steady)) * args.steps_per_execution, 1),
        "backend": keras.backend.backend(), "dtype_policy": keras.config.dtype_policy().name,
    }
    print(json.dumps(result), flush=True)
    keras.backend.clear_session()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="baby")
    parser.add_argument("--model", nargs="+", choices=("gpt", "lstm", "rnn"), default=["gpt"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--steps", type=int, help="default: the configuration's (2000 / 5000)")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--mixed-precision", help="e.g. mixed_bfloat16")
    parser.add_argument("--scaled-residual-init", action="store_true",
                        help="gpt: scale the residual output projections' initial weights by 1/sqrt(2 * layers)")
    parser.add_argument("--data-dir", default=DATA)
    parser.add_argument("--out", help="append the JSON results to this file")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.data_dir, "input.txt")):
        raise SystemExit(f"tiny_shakespeare not found in {args.data_dir} (pass --data-dir).")

    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy(args.mixed_precision)
    train_ids, val_ids, vocabulary_size = load_split(args.data_dir)
    results = [run(m, args.config, s, args, train_ids, val_ids, vocabulary_size) for m in args.model for s in args.seeds]
    if args.out:
        with open(args.out, "a") as file:
            file.writelines(json.dumps(r) + "\n" for r in results)
    print("| model | parameters | seeds | val loss (mean ± sd) | ms/step (median) |")
    print("|---|---|---|---|---|")
    for model_name in args.model:
        rows = [r for r in results if r["model"] == model_name]
        losses = np.array([r["val_loss"] for r in rows])
        print(f"| {model_name} | {rows[0]['parameters']:,} | {len(rows)} | {losses.mean():.4f} ± {losses.std():.4f} "
              f"| {np.median([r['ms_per_step_median'] for r in rows]):.1f} |")


if __name__ == "__main__":
    main()
