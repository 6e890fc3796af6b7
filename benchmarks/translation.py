"""Multi30k de->en with the seq2seq Transformer: BLEU on test_2016_flickr (issue: text models, measurement 4).

Three steps, so that training can run on a GPU machine that has JAX but not TensorFlow:

    python benchmarks/translation.py prepare --data-dir ../shared/datasets/multi30k --out .data/multi30k
        (TensorFlow side) WordPiece vocabularies of each language from the training pairs, and every split
        tokenized to fixed-length id arrays: .data/multi30k/ids.npz, source_vocab.txt, target_vocab.txt.
    KERAS_BACKEND=jax python benchmarks/translation.py train --data .data/multi30k --out runs/multi30k
        (any backend) the Transformer trained with the project's recipe (AdamW, warm-up + cosine, label smoothing
        0.1), keeping the epoch of lowest validation loss; weights written as .npz shards + train.json.
    python benchmarks/translation.py score --data .data/multi30k --run runs/multi30k --out runs/multi30k_model
        (TensorFlow side) the model rebuilt from its shards, test BLEU (greedy and beam 4, case-insensitive,
        sacrebleu's 13a tokenization via keras_tx.bleu), written as a model directory `keras-tx translate` and
        the demo read.

Without a GPU, `keras-tx train transformer --data-dir ../shared/datasets/multi30k --jit-compile on` trains the
same model on the CPU through tf.data; with `--num-layers 2 --hidden-dim 128 --intermediate-dim 512 --epochs 8`
(the Makefile's saved-models recipe) it makes saved_models/translation_de_en in about an hour.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.budget import fit_epochs, load_shards, save_shards  # noqa: E402

SPLITS = ("train", "validation", "test")
# The configuration of the measurement: ~5.6M parameters (the PyTorch tutorial's model has 9M).
MODEL = dict(num_layers=3, num_heads=8, hidden_dim=256, intermediate_dim=512, dropout=0.1)


def prepare(args):
    from keras_tx.data.translation import (
        END, START, load_parallel, save_translation_tokenizers, train_translation_tokenizers,
    )

    pairs = {split: load_parallel(args.data_dir, args.source, args.target, split) for split in SPLITS}
    source_tokenizer, target_tokenizer = train_translation_tokenizers(pairs["train"], args.vocabulary_size,
                                                                      args.vocabulary_size)
    start, end = target_tokenizer.token_to_id(START), target_tokenizer.token_to_id(END)
    arrays = {}
    for split, split_pairs in pairs.items():
        sources = source_tokenizer([s for s, _ in split_pairs])
        targets = target_tokenizer([t for _, t in split_pairs])
        length = args.max_length
        encoder = np.zeros((len(split_pairs), length), "int16")
        decoder = np.zeros((len(split_pairs), length), "int16")
        labels = np.zeros((len(split_pairs), length), "int16")
        for row, (source, target) in enumerate(zip(sources, targets)):
            source, target = np.asarray(source)[:length], list(np.asarray(target)[: length - 1])
            encoder[row, : len(source)] = source
            decoder[row, : len(target) + 1] = [start] + target
            labels[row, : len(target) + 1] = target + [end]
        arrays.update({f"{split}_encoder": encoder, f"{split}_decoder": decoder, f"{split}_labels": labels})
    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(os.path.join(args.out, "ids.npz"), **arrays)
    save_translation_tokenizers(args.out, source_tokenizer, target_tokenizer)
    with open(os.path.join(args.out, "references.json"), "w", encoding="utf-8") as file:
        json.dump({"test": pairs["test"], "languages": [args.source, args.target],
                   "data_dir": args.data_dir, "max_length": args.max_length}, file)
    print(f"vocabularies {source_tokenizer.vocabulary_size()} / {target_tokenizer.vocabulary_size()}; "
          + ", ".join(f"{split} {len(p)}" for split, p in pairs.items()) + f"; wrote {args.out}/")


def _vocabulary_size(path):
    with open(path, encoding="utf-8") as file:
        return sum(1 for _ in file)


def build_model(data_dir, max_length, **overrides):
    from keras_tx.models import Seq2SeqTransformer

    return Seq2SeqTransformer(
        _vocabulary_size(os.path.join(data_dir, "source_vocab.txt")),
        _vocabulary_size(os.path.join(data_dir, "target_vocab.txt")),
        max_source_length=max_length, max_target_length=max_length, **{**MODEL, **overrides},
    )


def _split(ids, split):
    x = {"encoder_token_ids": ids[f"{split}_encoder"].astype("int32"),
         "decoder_token_ids": ids[f"{split}_decoder"].astype("int32")}
    return x, ids[f"{split}_labels"].astype("int32")


def train(args):
    import keras

    from keras_tx import training
    from keras_tx.models import MaskedCrossentropy, masked_accuracy

    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy(args.mixed_precision)
    ids = dict(np.load(os.path.join(args.data, "ids.npz")))
    max_length = ids["train_encoder"].shape[1]
    x, y = _split(ids, "train")
    if args.max_pairs:
        x, y = {k: v[: args.max_pairs] for k, v in x.items()}, y[: args.max_pairs]
    sizes = {k: v for k, v in (("num_layers", args.num_layers), ("hidden_dim", args.hidden_dim),
                                ("intermediate_dim", args.intermediate_dim)) if v}
    earlier = None
    if args.init_from:  # continue an earlier run: its configuration and weights, a fresh schedule
        with open(os.path.join(args.init_from, "train.json")) as file:
            earlier = json.load(file)
        sizes = {k: earlier["config"][k] for k in ("num_layers", "hidden_dim", "intermediate_dim")}
    model = build_model(args.data, max_length, **sizes)
    if earlier:
        model.set_weights(load_shards(os.path.join(args.init_from, "weights")))
    total_steps = (len(y) // args.batch_size) * args.epochs
    optimizer = training.make_optimizer(total_steps, learning_rate=args.learning_rate, min_learning_rate=1e-5,
                                        warmup_steps=args.warmup_steps, weight_decay=0.01, beta_2=0.98)
    training.exclude_non_matrices(optimizer, model)
    model.compile(optimizer=optimizer, loss=MaskedCrossentropy(label_smoothing=0.1), metrics=[masked_accuracy],
                  jit_compile=True)
    print(f"{model.count_params():,} parameters, {len(y):,} training pairs, {total_steps} steps at most",
          flush=True)
    summary = fit_epochs(model, x, y, args.epochs, args.batch_size, validation=_split(ids, "validation"),
                         time_budget=args.time_budget, seed=args.seed, log=lambda line: print(line, flush=True))
    os.makedirs(args.out, exist_ok=True)
    save_shards([np.asarray(w, "float32") for w in model.get_weights()], os.path.join(args.out, "weights"))
    begin = time.perf_counter()
    x_test, _ = _split(ids, "test")
    greedy = model.translate_ids(x_test["encoder_token_ids"], sampler="greedy")
    summary["greedy_decode_seconds"] = round(time.perf_counter() - begin, 2)
    np.save(os.path.join(args.out, "test_greedy.npy"), greedy.astype("int16"))
    summary.update(parameters=int(model.count_params()), config=model.get_config(), backend=keras.backend.backend(),
                   command=" ".join(sys.argv), batch_size=args.batch_size, learning_rate=args.learning_rate,
                   warmup_steps=args.warmup_steps, mixed_precision=args.mixed_precision)
    if earlier:  # the whole history, so that the model's metadata lists every command that made it
        summary["earlier_commands"] = earlier.get("earlier_commands", []) + [earlier["command"]]
        summary["earlier_epochs"] = earlier.get("earlier_epochs", 0) + earlier["epochs_run"]
        summary["earlier_training_seconds"] = round(
            earlier.get("earlier_training_seconds", 0) + earlier["training_seconds"], 1)
    with open(os.path.join(args.out, "train.json"), "w") as file:
        json.dump(summary, file, indent=1, default=str)
    print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, {summary['training_seconds']} s",
          flush=True)


def score(args):
    import keras

    from keras_tx import artifacts
    from keras_tx.bleu import corpus_bleu
    from keras_tx.data.translation import load_translation_tokenizers, save_translation_tokenizers
    from keras_tx.tasks.translation import Translator

    with open(os.path.join(args.data, "references.json"), encoding="utf-8") as file:
        references = json.load(file)
    with open(os.path.join(args.run, "train.json")) as file:
        summary = json.load(file)
    from keras_tx.models import Seq2SeqTransformer

    config = {**summary["config"], "dtype": None}  # trained perhaps in mixed precision: score in float32
    model = Seq2SeqTransformer.from_config(config)
    model.set_weights(load_shards(os.path.join(args.run, "weights")))
    translator = Translator(model, *load_translation_tokenizers(args.data))
    pairs = references["test"]
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    results = {}
    for sampler in ("greedy", "beam"):
        begin = time.perf_counter()
        hypotheses = translator.translate(sources, sampler=sampler, num_beams=4, truncate=True, batch_size=100)
        results[sampler] = round(float(corpus_bleu(hypotheses, targets, lowercase=True)), 2)
        results[f"{sampler}_seconds_cpu"] = round(time.perf_counter() - begin, 1)
        if sampler == "greedy" and os.path.exists(os.path.join(args.run, "test_greedy.npy")):
            # The GPU's greedy tokens, decoded here: the same BLEU up to float rounding across machines.
            gpu = translator.decode_targets(np.load(os.path.join(args.run, "test_greedy.npy")))
            results["greedy_gpu_tokens"] = round(float(corpus_bleu(gpu, targets, lowercase=True)), 2)
    examples = [(s, translator.translate(s, sampler="beam"), t) for s, t in pairs[:5]]
    print(json.dumps(results))
    for source, hypothesis, target in examples:
        print(f"  {source}\n  -> {hypothesis}\n  (reference: {target})")
    if args.out:
        if os.path.exists(args.out) and not args.force:
            raise SystemExit(f"{args.out} exists; pass --force to replace it.")
        staging = args.out.rstrip("/") + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        save_translation_tokenizers(staging, translator.source_tokenizer, translator.target_tokenizer)
        artifacts.save_model(staging, model, {
            "kind": "translation",
            "architecture": "seq2seq_transformer",
            "config": model.get_config(),
            "tokenizer": "source_vocab.txt, target_vocab.txt",
            "dataset": f"Multi30k {references['languages'][0]}->{references['languages'][1]} ({references['data_dir']})",
            "split": "train (29,000 pairs) / val (1,014) / test_2016_flickr (1,000)",
            "languages": references["languages"],
            "label_smoothing": 0.1,
            "metrics": {
                "test_bleu_greedy": results["greedy"], "test_bleu_beam4": results["beam"],
                "bleu": "corpus BLEU, case-insensitive, 13a tokenization (keras_tx.bleu)",
                "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
                "val_loss": summary["records"][summary["best_epoch"] - 1].get("val_loss"),
                "training_seconds": round(summary["training_seconds"] + summary.get("earlier_training_seconds", 0), 1),
                "epochs_before_this_run": summary.get("earlier_epochs", 0),
            },
            "trained_on": f"{summary['backend']} backend, {args.device}",
            "commands": [
                f"python benchmarks/translation.py prepare --data-dir {references['data_dir']} --out {args.data}",
                *(command.replace("benchmarks/translation.py", "python benchmarks/translation.py", 1)
                  for command in summary.get("earlier_commands", []) + [summary["command"]]),
                "python " + " ".join(sys.argv),
            ],
        })
        shutil.rmtree(args.out, ignore_errors=True)
        os.replace(staging, args.out)
        print(f"wrote {args.out}/")
    keras.backend.clear_session()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--source", default="de")
    p.add_argument("--target", default="en")
    p.add_argument("--vocabulary-size", type=int, default=8000)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--out", required=True)
    t = steps.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--learning-rate", type=float, default=7e-4)
    t.add_argument("--warmup-steps", type=int, default=600)
    t.add_argument("--time-budget", type=float, help="seconds of training at most")
    t.add_argument("--init-from", metavar="RUN",
                   help="start from the weights (and sizes) of an earlier run's --out folder, with a fresh schedule")
    t.add_argument("--max-pairs", type=int, help="train on the first N pairs (smoke runs)")
    t.add_argument("--mixed-precision", help="e.g. mixed_bfloat16")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--num-layers", type=int, help=f"default {MODEL['num_layers']}")
    t.add_argument("--hidden-dim", type=int, help=f"default {MODEL['hidden_dim']}")
    t.add_argument("--intermediate-dim", type=int, help=f"default {MODEL['intermediate_dim']}")
    s = steps.add_parser("score")
    s.add_argument("--data", required=True)
    s.add_argument("--run", required=True)
    s.add_argument("--out", help="write a model directory here")
    s.add_argument("--force", action="store_true")
    s.add_argument("--device", default="unknown device", help="where `train` ran, for the metadata")
    args = parser.parse_args()
    {"prepare": prepare, "train": train, "score": score}[args.step](args)


if __name__ == "__main__":
    main()
