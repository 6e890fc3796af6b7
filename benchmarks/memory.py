"""Peak memory (RSS) of a GPT training step and of cached generation: ours vs keras-hub's GPT2.

Command:
    python benchmarks/memory.py [--configs baby shakespeare] [--repeats 3] [--new-tokens 256] [--jit on]

Every measurement runs in a fresh child process, so one model's allocations (or the allocator's cache, or
XLA's compiled programs) cannot inflate another's figure. The parent reads each child's peak resident set size
from `os.wait4` (the child's own `ru_maxrss`). For every (config, task, model) two children run, alternating:

    build: import keras, keras-hub and keras-tx, build the model and its inputs (and compile it), exit;
    run:   the same, then `--train-steps` training steps (`train_on_batch`, AdamW, the tied-logits loss of
           benchmarks/gpt.py) or `--generations` greedy generations of `--new-tokens` tokens with the cache
           (`GPT.generate`, `GPT2CausalLM.generate`), exit.

"adds" = peak(run) - peak(build): the memory that the step or the generation itself costs (activations,
gradients, optimizer slots, the compiled program, the cache), with the interpreter, the libraries and the weights
subtracted. Medians over `--repeats` pairs. Both models import the same libraries; ours is built directly
(`keras_tx.models.GPT`), keras-hub's as in benchmarks/gpt.py, with the configurations of benchmarks/gpt.py.
Prints a markdown table for benchmarks/RESULTS.md; "keras-hub / keras-tx" > 1 means ours needs less.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = ("keras-hub", "keras-tx")


def child(args):
    """Build one model (and run it if --stage run) in this process; the parent measures the peak RSS."""
    import keras
    import keras_hub  # noqa: F401  (both children import the same libraries)
    import numpy as np

    from benchmarks.gpt import CONFIGS, VOCABULARY, _compile, _keras_hub_lm
    from keras_tx.models import GPT

    config = dict(CONFIGS[args.config])
    if args.task == "generate":
        config["context"] = args.prompt + args.new_tokens
    rng = np.random.default_rng(0)

    def ours():
        return GPT(VOCABULARY, config["num_layers"], config["num_heads"], config["hidden_dim"],
                   4 * config["hidden_dim"], config["context"])

    if args.task == "train":
        model = _keras_hub_lm(config)[1] if args.model == "keras-hub" else ours()
        _compile(model, args.jit == "on")
        x = rng.integers(0, VOCABULARY, (config["batch"], config["context"])).astype("int32")
        y = rng.integers(0, VOCABULARY, (config["batch"], config["context"])).astype("int32")
        work = lambda: model.train_on_batch(x, y)  # noqa: E731
        repeats = args.train_steps
    else:
        prompt = rng.integers(0, VOCABULARY, (args.generate_batch, args.prompt)).astype("int32")
        if args.model == "keras-hub":
            causal_lm = keras_hub.models.GPT2CausalLM(backbone=_keras_hub_lm(config)[0], preprocessor=None)
            causal_lm.compile(sampler="greedy")
            padding = np.zeros((args.generate_batch, args.new_tokens), "int32")
            inputs = {"token_ids": np.concatenate([prompt, padding], axis=1),
                      "padding_mask": np.concatenate([np.ones_like(prompt), padding], axis=1)}
            work = lambda: keras.ops.convert_to_numpy(  # noqa: E731
                causal_lm.generate(inputs, stop_token_ids=None)["token_ids"])
        else:
            model = ours()
            work = lambda: model.generate(prompt, args.new_tokens)  # noqa: E731
        repeats = args.generations
    if args.stage == "run":
        for _ in range(repeats):
            work()


def measure(argv):
    """Run `python memory.py --child ...argv` in a fresh process; its peak RSS in MiB."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would block the child we wait for
        process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", *argv],
                                   stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            log.seek(0)
            raise SystemExit(f"child {argv} failed ({process.returncode}):\n{log.read().decode()[-3000:]}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["baby", "shakespeare"])
    parser.add_argument("--tasks", nargs="+", choices=("train", "generate"), default=["train", "generate"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit", choices=("on", "off"), default="on", help="jit_compile of the training step")
    parser.add_argument("--train-steps", type=int, default=2, help="the first compiles and creates optimizer slots")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--generate-batch", type=int, default=1)
    parser.add_argument("--generations", type=int, default=2, help="the first compiles")
    parser.add_argument("--json", help="also write the raw measurements here")
    # child-only arguments
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from benchmarks.gpt import CONFIGS
    from benchmarks.harness import environment, markdown_table

    common = ["--jit", args.jit, "--train-steps", str(args.train_steps), "--new-tokens", str(args.new_tokens),
              "--prompt", str(args.prompt), "--generate-batch", str(args.generate_batch),
              "--generations", str(args.generations)]
    raw, rows = [], []
    for config in args.configs:
        for task in args.tasks:
            peaks = {(model, stage): [] for model in MODELS for stage in ("build", "run")}
            for repeat in range(args.repeats):
                for model in MODELS:  # alternating, so slow drifts of the machine hit both
                    for stage in ("build", "run"):
                        argv = ["--config", config, "--task", task, "--model", model, "--stage", stage, *common]
                        peak = measure(argv)
                        peaks[model, stage].append(peak)
                        raw.append({"config": config, "task": task, "model": model, "stage": stage, "repeat": repeat,
                                    "peak_mib": round(peak, 1)})
                        print(json.dumps(raw[-1]), flush=True)
            added = {m: statistics.median(r - b for r, b in zip(peaks[m, "run"], peaks[m, "build"])) for m in MODELS}
            what = (f"train step (batch {CONFIGS[config]['batch']} x {CONFIGS[config]['context']}, jit {args.jit})"
                    if task == "train" else f"generate {args.new_tokens} tokens (batch {args.generate_batch})")
            for model in MODELS:
                rows.append([config, what, model, f"{statistics.median(peaks[model, 'build']):,.0f}",
                             f"{statistics.median(peaks[model, 'run']):,.0f}", f"{added[model]:,.0f}",
                             f"{added['keras-hub'] / added['keras-tx']:.2f}" if model == "keras-tx" else ""])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    print(f"\nPeak RSS (MiB) of fresh processes; median of {args.repeats}; float32; {environment()}\n")
    print(markdown_table(["config", "task", "model", "build only", "build + task", "task adds",
                          "keras-hub / keras-tx (adds)"], rows))


if __name__ == "__main__":
    main()
