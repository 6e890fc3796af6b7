"""Greedy generation at GPT-2 124M's configuration: our compiled cached loop vs keras-hub's GPT2CausalLM.generate.

Commands:
    python benchmarks/gpt2_generation.py                      # GPT-2 124M's shape, batch 1 and 8, 32 + 128 tokens
    python benchmarks/gpt2_generation.py --small              # 2 layers, 128 wide: a smoke test, well under a minute
    python benchmarks/gpt2_generation.py --batch-sizes 1 --new-tokens 64 --repeats 5 --json /tmp/gen.json

Model: `keras_hub.models.GPT2Backbone` with GPT-2 124M's configuration (vocabulary 50,257, 12 layers, 12 heads,
width 768, MLP 3,072, 1,024 positions) and seeded random weights: nothing is downloaded. Ours is
`GPT.from_keras_hub(backbone)`, the same weights. Contenders, each returning the prompt and the new tokens as a
numpy (B, P + N) array, so that each has finished when it returns:

    keras-hub: `GPT2CausalLM(backbone, preprocessor=None)` compiled with `sampler="greedy"` (its default
               `jit_compile`: on a CPU-only TensorFlow, "auto" resolves to False, a plain tf.function; printed),
               called on {"token_ids": the prompt then N padding ids, "padding_mask": True on the prompt} with
               `stop_token_ids=None`: without a preprocessor the input's length is the output's (`max_length` is
               ignored), and the sampler fills every position the mask leaves False.
    keras-tx:  `GPT.generate(prompt, N)`, greedy: one XLA program (prefill + while_loop) with a key/value cache.
    exported:  batch 1 only: the `generate` signature of `keras-tx export` on a model directory of the same GPT
               and a byte-level BPE tokenizer of GPT-2's size (the 256 byte tokens, filler tokens up to 50,256 and
               <|endoftext|> last; no merges, so the prompt is 32 random ASCII bytes, one token each), loaded with
               `tf.saved_model.load` and called with the prompt text, max_new_tokens N, temperature 0: the
               tokenizer, the decoding loop and the detokenizer as one TensorFlow graph (no XLA), what TF Serving
               runs. Writing the directory and the SavedModel (~1 GB in a temporary folder) is not timed.

Before timing, the script checks that the contenders compute the same thing: the count of new tokens equal to
keras-hub's (random weights can give near-ties that two float32 programs break differently; pick another
`--seed` if they do not all agree). Timing per batch size: the first call (tracing and compiling included), then
`--repeats` rounds in which the contenders alternate (as benchmarks/harness.py), median (and range) per
contender; `--json` keeps every call's time. Ratios are keras-hub's time / the contender's (> 1: the contender
is faster), measured in the same process.

Adding a contender: append a (name, function) pair in `contenders`; the table grows a column group.
Prints a markdown table for benchmarks/RESULTS.md; `--json PATH` also writes the measurements.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import environment, markdown_table  # noqa: E402

REFERENCE = "keras-hub"
CONFIGS = {
    # GPT-2 124M ("gpt2" in keras-hub's presets / OpenAI's release).
    "gpt2": dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                 max_sequence_length=1024),
    # --small: the same vocabulary and positions, 2 layers 128 wide.
    "small": dict(vocabulary_size=50257, num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512,
                  max_sequence_length=1024),
}


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "n/a"


def build(config, seed):
    """(keras-hub GPT2CausalLM compiled for greedy decoding, our GPT with its backbone's weights)."""
    import keras_hub

    from keras_tx.models import GPT

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(**config)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    return causal_lm, GPT.from_keras_hub(backbone)


def byte_level_tokenizer(vocabulary_size):
    """A BytePairTokenizer of `vocabulary_size` tokens: the 256 byte tokens first (ASCII bytes are their own ids'
    characters), filler tokens, <|endoftext|> last as in GPT-2; no merges."""
    from keras_tx.data.bpe import BytePairTokenizer, bytes_to_unicode

    tokens = list(bytes_to_unicode().values())
    tokens += [f"filler{i}" for i in range(vocabulary_size - len(tokens) - 1)] + ["<|endoftext|>"]
    return BytePairTokenizer({token: i for i, token in enumerate(tokens)}, [])


def exported_generate(ours, folder):
    """`keras-tx export` of a model directory holding `ours` and a byte-level tokenizer of its vocabulary size;
    returns (generate(text, new_tokens) -> token ids (P + N,), the tokenizer)."""
    import tensorflow as tf

    from keras_tx import export
    from keras_tx.tasks import TextGeneration

    tokenizer = byte_level_tokenizer(ours.vocabulary_size)
    task = TextGeneration(ours, tokenizer, {"kind": TextGeneration.kind, "architecture": "gpt",
                                            "config": ours.get_config(), "tokenizer": "tokenizer.json"})
    task.save(os.path.join(folder, "model"), command="benchmarks/gpt2_generation.py")
    start = time.perf_counter()
    export.export(os.path.join(folder, "model"), os.path.join(folder, "saved"))
    print(f"  exported in {time.perf_counter() - start:.1f} s (not timed below)", flush=True)
    signature = tf.saved_model.load(os.path.join(folder, "saved")).signatures["generate"]

    def generate(text, new_tokens):
        out = signature(prompt=tf.constant(text), max_new_tokens=tf.constant(new_tokens, tf.int32),
                        temperature=tf.constant(0.0), seed=tf.constant(0, tf.int64))
        return out["token_ids"].numpy()

    return generate, tokenizer


def contenders(causal_lm, ours, prompt, new_tokens, exported=None, text=None):
    """[(name, fn)]: each fn() returns (B, P + new_tokens) int numpy, the prompt then the greedy tokens."""
    batch = prompt.shape[0]
    hub_inputs = {  # keras-hub writes into the padded tail: its length is the output's
        "token_ids": np.concatenate([prompt, np.zeros((batch, new_tokens), "int32")], axis=1),
        "padding_mask": np.concatenate([np.ones(prompt.shape, bool), np.zeros((batch, new_tokens), bool)], axis=1),
    }

    def keras_hub_generate():
        return keras.ops.convert_to_numpy(causal_lm.generate(hub_inputs, stop_token_ids=None)["token_ids"])

    pairs = [
        (REFERENCE, keras_hub_generate),
        ("keras-tx", lambda: ours.generate(prompt, new_tokens)),
    ]
    if exported is not None and batch == 1:
        pairs.append(("exported", lambda: exported(text, new_tokens)[None]))
    return pairs


def measure(pairs, prompt_length, new_tokens, repeats):
    """First call of each (timed, its tokens kept), agreement with the reference, then alternating warm calls."""
    first, tokens = {}, {}
    for name, fn in pairs:
        start = time.perf_counter()
        tokens[name] = np.asarray(fn())
        first[name] = time.perf_counter() - start
        print(f"  {name}: first call {first[name]:.2f} s", flush=True)
    reference = tokens[REFERENCE][:, prompt_length:]
    assert reference.shape[1] == new_tokens, reference.shape
    equal = {}
    for name, out in tokens.items():
        assert out.shape == tokens[REFERENCE].shape, (name, out.shape, tokens[REFERENCE].shape)
        assert (out[:, :prompt_length] == tokens[REFERENCE][:, :prompt_length]).all(), f"{name} changed the prompt"
        equal[name] = int((out[:, prompt_length:] == reference).sum())
        if equal[name] < reference.size:
            print(f"  warning: {name} agrees with {REFERENCE} on {equal[name]} of {reference.size} new tokens",
                  flush=True)
    samples = {name: [] for name, _ in pairs}
    for _ in range(repeats):  # alternating, as benchmarks/harness.py's `alternate`, keeping every call's time
        for name, fn in pairs:
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return first, samples, equal


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls of each contender, alternating (>= 3)")
    parser.add_argument("--seed", type=int, default=0, help="of the weights (keras.utils.set_random_seed) and prompts")
    parser.add_argument("--small", action="store_true", help="2 layers, 128 wide: a quick smoke test")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--no-export", action="store_true", help="leave out the exported SavedModel's generate")
    args = parser.parse_args()
    config_name = "small" if args.small else "gpt2"
    config = CONFIGS[config_name]
    if args.prompt_length + args.new_tokens > config["max_sequence_length"]:
        parser.error("prompt length + new tokens exceeds the model's 1,024 positions")

    loads = [load_average()]
    print(f"{environment()}; {os.cpu_count()} CPUs ({platform.node()}); load average {loads[0]}", flush=True)
    causal_lm, ours = build(config, args.seed)
    print(f"config {config_name} {config}: {ours.count_params():,} parameters; keras-hub generate "
          f"jit_compile={causal_lm.jit_compile}", flush=True)

    rng = np.random.default_rng(args.seed)
    folder = tempfile.TemporaryDirectory()
    exported = None if args.no_export else exported_generate(ours, folder.name)
    results, rows, names = [], [], [REFERENCE, "keras-tx"] + ([] if args.no_export else ["exported"])
    for batch in args.batch_sizes:
        prompt = rng.integers(0, config["vocabulary_size"], (batch, args.prompt_length)).astype("int32")
        text = None
        if exported is not None and batch == 1:  # a text the exported signature reads: ASCII bytes, one token each
            text = "".join(chr(c) for c in rng.integers(ord("a"), ord("z") + 1, args.prompt_length))
            prompt = exported[1].encode(text)[None]
        print(f"batch {batch}, prompt {args.prompt_length}, {args.new_tokens} new tokens", flush=True)
        pairs = contenders(causal_lm, ours, prompt, args.new_tokens, exported and exported[0], text)
        present = [name for name, _ in pairs]
        first, samples, equal = measure(pairs, args.prompt_length, args.new_tokens, args.repeats)
        warm = {name: statistics.median(times) for name, times in samples.items()}
        total = batch * args.new_tokens
        results.append({"batch": batch, "prompt_length": args.prompt_length, "new_tokens": args.new_tokens,
                        "first_call_s": first, "warm_median_s": warm, "warm_calls_s": samples,
                        "equal_tokens": equal, "tokens": total})
        row = [batch]
        for name in names:
            row += ([f"{first[name]:.2f}", f"{warm[name]:.2f} ({min(samples[name]):.2f}-{max(samples[name]):.2f})",
                     f"{total / warm[name]:,.0f}"] if name in present else ["-"] * 3)
        for name in names[1:]:
            row += ([f"{first[REFERENCE] / first[name]:.2f}", f"**{warm[REFERENCE] / warm[name]:.2f}**",
                     f"{equal[name]}/{total}"] if name in present else ["-"] * 3)
        rows.append(row)
        print(rows[-1], flush=True)
    loads.append(load_average())
    folder.cleanup()

    header = ["batch"]
    for name in names:
        header += [f"{name} first call s", f"{name} warm s (min-max)", f"{name} tokens/s"]
    for name in names[1:]:
        header += [f"{REFERENCE} / {name} first call", f"{REFERENCE} / {name} warm",
                   f"{name} tokens equal to {REFERENCE}'s"]
    print(f"\nGreedy generation of {args.new_tokens} tokens after a {args.prompt_length}-token prompt, config "
          f"{config_name} ({ours.count_params():,} parameters), float32, seed {args.seed}; {environment()}; "
          f"warm: median of {args.repeats} alternating calls; load average {loads[0]} at the start, {loads[1]} at "
          f"the end\n")
    print(markdown_table(header, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": config_name, "model": config, "seed": args.seed, "repeats": args.repeats,
                       "keras_hub_jit_compile": bool(causal_lm.jit_compile), "environment": environment(),
                       "load_average": loads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
