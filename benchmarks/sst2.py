"""BERT on SST-2: masked-LM pretraining, then fine-tuning, beside the same classifier trained from scratch.

    python benchmarks/sst2.py prepare --data-dir ../shared/datasets/sst2 --out .data/sst2
        (TensorFlow side) a WordPiece vocabulary of the training sentences and every split as fixed-length ids.
    KERAS_BACKEND=jax python benchmarks/sst2.py train --data .data/sst2 --out runs/sst2 --pretrain-budget 120
        (any backend) 1. BERTMaskedLM on the training sentences (labels unused; 15% of tokens selected, of those
        80% [MASK], 10% a random token, 10% unchanged; masks drawn afresh every epoch); 2. BERTClassifier on the
        pretrained backbone, fine-tuned; 3. the same classifier from a fresh backbone, same budget. Dev accuracy
        of both after every epoch; weights of the masked LM as .npz shards; results.json.

SST-2's 67,349 training rows are phrases of the parse trees of ~8,000 sentences, most of them parts of others
("is great" of "the acting is great"), averaging 13 tokens. Pretraining therefore reads the distinct maximal
phrases (those inside no other one, cut to 62 pieces: 6,888 and 162k pieces), packed several to a sequence
([CLS] a [SEP] b [SEP] ..., RoBERTa's "full sentences"), packed afresh each epoch: no sequence holds a phrase and a
part of it to copy from. Fine-tuning uses every labelled phrase, in batches of similar length cut to their
longest member (a few compiled shapes instead of 64 positions for 13 tokens).
    python benchmarks/sst2.py score --data .data/sst2 --run runs/sst2 --out runs/sst2_mlm
        (TensorFlow side) the masked LM rebuilt with its tokenizer, written as a model directory.

The packing and masking are keras_tx's (`keras_tx.data.masking`), so `keras-tx train bert --pack` pretrains on the
same sequences through tf.data; that command (the Makefile's saved-models recipe) makes saved_models/bert_mlm.

The dev set (872 sentences) is GLUE's; its test labels are not public. Measurement 3 of issue "text models": goal
>= 82% dev accuracy after pretraining, and the from-scratch number beside it.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.budget import load_shards, save_shards  # noqa: E402

MODEL = dict(num_layers=4, num_heads=4, hidden_dim=128, intermediate_dim=512, dropout=0.1)


def prepare(args):
    from keras_tx.data.wordpiece import (
        encode_texts, load_sst2, make_wordpiece_tokenizer, save_tokenizer, train_wordpiece_vocabulary,
    )

    splits = {split: load_sst2(args.data_dir, split) for split in ("train", "validation")}
    vocabulary = train_wordpiece_vocabulary(splits["train"][0], args.vocabulary_size)
    tokenizer = make_wordpiece_tokenizer(vocabulary)
    arrays = {}
    for split, (texts, labels) in splits.items():
        ids = encode_texts(texts, tokenizer, args.sequence_length)["token_ids"]
        arrays[f"{split}_ids"], arrays[f"{split}_labels"] = ids.astype("int16"), np.asarray(labels, "int8")
    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(os.path.join(args.out, "ids.npz"), **arrays)
    save_tokenizer(tokenizer, args.out)
    special = {name: int(tokenizer.token_to_id(name)) for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    with open(os.path.join(args.out, "special.json"), "w") as file:
        json.dump({"special": special, "vocabulary_size": len(vocabulary), "data_dir": args.data_dir}, file)
    print(f"vocabulary {len(vocabulary)}; train {len(arrays['train_ids'])}, dev {len(arrays['validation_ids'])}")


def features(ids, pad):
    ids = ids.astype("int32")
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids != pad).astype("int32")}


def mask_tokens(ids, special, vocabulary_size, rng, max_predictions=10):
    """BERT's masking (keras_tx.data.masking.mask_token_ids): (masked ids, positions, labels, weights)."""
    from keras_tx.data.masking import mask_token_ids

    return mask_token_ids(ids, special, vocabulary_size, rng, max_predictions=max_predictions)


def maximal_phrases(ids, special):
    """The token lists of the rows that are not part of another row (duplicates once), longest first."""
    from keras_tx.data.masking import distinct_rows

    return distinct_rows([row[~np.isin(row, [special["[PAD]"], special["[CLS]"], special["[SEP]"]])] for row in ids])


def pack(phrases, length, special, rng):
    """Shuffled phrases packed into (N, length) rows: [CLS] a [SEP] b [SEP] ... [PAD]...; a phrase never split."""
    from keras_tx.data.masking import pack_rows

    return pack_rows(phrases, length, special, rng)


class LengthBuckets(keras.utils.PyDataset):
    """Batches of rows of similar length, each cut to its longest row (rounded up to `granularity`), in an order
    shuffled afresh every epoch: (dict of features, labels) for `fit`."""

    def __init__(self, ids, labels, batch_size, pad, seed, granularity=8):
        super().__init__()
        self.ids, self.labels, self.pad, self.batch_size = ids, labels, pad, batch_size
        lengths = (ids != pad).sum(1)
        self.widths = np.minimum(-(-lengths // granularity) * granularity, ids.shape[1])
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self):
        order = self.rng.permutation(len(self.ids))
        order = order[np.argsort(self.widths[order], kind="stable")]  # by width, random within a width
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        self.batches = [batches[i] for i in self.rng.permutation(len(batches))]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        rows = self.batches[index]
        return features(self.ids[rows, : self.widths[rows].max()], self.pad), self.labels[rows]


def _backbone(vocabulary_size, length):
    from keras_tx.models import BERT

    return BERT(vocabulary_size, max_length=length, **MODEL)


def train(args):
    import time

    from keras_tx import training
    from keras_tx.models import BERTClassifier, BERTMaskedLM

    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy(args.mixed_precision)
    with open(os.path.join(args.data, "special.json")) as file:
        info = json.load(file)
    special, vocabulary_size = info["special"], info["vocabulary_size"]
    data = dict(np.load(os.path.join(args.data, "ids.npz")))
    train_ids, dev_ids = data["train_ids"].astype("int32"), data["validation_ids"].astype("int32")
    train_labels, dev_labels = data["train_labels"].astype("int32"), data["validation_labels"].astype("int32")
    if args.max_texts:
        train_ids, train_labels = train_ids[: args.max_texts], train_labels[: args.max_texts]
    length = train_ids.shape[1]
    rng = np.random.default_rng(args.seed)
    log = lambda line: print(line, flush=True)
    phrases = maximal_phrases(train_ids, special)
    results = {"config": MODEL, "sequence_length": length, "vocabulary_size": vocabulary_size,
               "backend": keras.backend.backend(), "command": " ".join(sys.argv),
               "pretraining_text": {"phrases": len(phrases), "tokens": int(sum(map(len, phrases)))}}
    log(json.dumps(results["pretraining_text"]))

    # 1. Masked-LM pretraining on packed maximal phrases; packing and masks drawn afresh every epoch.
    backbone = _backbone(vocabulary_size, length)
    mlm = BERTMaskedLM(backbone)
    steps_per_epoch = len(pack(phrases, length, special, np.random.default_rng(0))) // args.mlm_batch_size
    optimizer = training.make_optimizer(steps_per_epoch * args.pretrain_epochs, learning_rate=args.mlm_learning_rate,
                                        min_learning_rate=args.mlm_learning_rate / 10,
                                        warmup_steps=min(500, steps_per_epoch * args.pretrain_epochs // 10),
                                        weight_decay=0.01, beta_2=0.999)
    training.exclude_non_matrices(optimizer, mlm)
    mlm.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=["sparse_categorical_accuracy"], jit_compile=True)

    def mlm_arrays(ids, generator):
        masked, positions, labels, weights = mask_tokens(ids, special, vocabulary_size, generator)
        return {**features(masked, special["[PAD]"]), "mask_positions": positions}, labels, weights

    dev_generator = np.random.default_rng(12345)
    dev_mlm = mlm_arrays(pack(maximal_phrases(dev_ids, special), length, special, dev_generator), dev_generator)
    pretraining, spent = [], 0.0
    for epoch in range(args.pretrain_epochs):
        begin = time.perf_counter()
        packed = pack(phrases, length, special, rng)[: steps_per_epoch * args.mlm_batch_size]
        x, y, w = mlm_arrays(packed, rng)
        history = mlm.fit(x, y, sample_weight=w, batch_size=args.mlm_batch_size, epochs=1, shuffle=False, verbose=0)
        spent += time.perf_counter() - begin
        last = epoch + 1 == args.pretrain_epochs or (args.pretrain_budget and spent * (epoch + 2) / (epoch + 1)
                                                      > args.pretrain_budget)
        if (epoch + 1) % args.eval_every and not last:
            continue
        scores = mlm.evaluate(dev_mlm[0], dev_mlm[1], sample_weight=dev_mlm[2], batch_size=256, verbose=0,
                              return_dict=True)
        record = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "loss": float(history.history["loss"][-1]),
                  "dev_masked_accuracy": float(scores["sparse_categorical_accuracy"]),
                  "dev_loss": float(scores["loss"]), "seconds": round(spent, 1)}
        pretraining.append(record)
        log(json.dumps(record))
        if last:
            break
    results["pretraining"] = pretraining
    os.makedirs(args.out, exist_ok=True)
    save_shards([np.asarray(v, "float32") for v in mlm.get_weights()], os.path.join(args.out, "mlm_weights"))

    # 2./3. The classifier on the pretrained backbone, and on a fresh one, with the same recipe and batches.
    dev = (features(dev_ids, special["[PAD]"]), dev_labels)
    for name, encoder in (("pretrained", backbone), ("scratch", _backbone(vocabulary_size, length))):
        keras.utils.set_random_seed(args.seed)
        batches = LengthBuckets(train_ids, train_labels, args.batch_size, special["[PAD]"], seed=args.seed)
        classifier = BERTClassifier(encoder, num_classes=2)
        steps = len(batches) * args.finetune_epochs
        optimizer = training.make_optimizer(steps, learning_rate=args.learning_rate,
                                            min_learning_rate=args.learning_rate / 100, warmup_steps=steps // 10,
                                            weight_decay=0.01, beta_2=0.999)
        training.exclude_non_matrices(optimizer, classifier)
        classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"], jit_compile=True)
        begin = time.perf_counter()
        history = classifier.fit(batches, epochs=args.finetune_epochs, validation_data=dev, verbose=0,
                                 callbacks=[keras.callbacks.LambdaCallback(
                                     on_epoch_end=lambda epoch, logs: log(json.dumps(
                                         {"model": name, "epoch": epoch + 1,
                                          **{k: round(float(v), 4) for k, v in logs.items()}})))])
        accuracies = [float(a) for a in history.history["val_accuracy"]]
        results[name] = {"dev_accuracy_last_epoch": accuracies[-1], "dev_accuracy_by_epoch": accuracies,
                         "train_accuracy_by_epoch": [float(a) for a in history.history["accuracy"]],
                         "training_seconds": round(time.perf_counter() - begin, 1)}
        log(f"{name}: dev accuracy {accuracies[-1]:.4f} after {args.finetune_epochs} epochs "
            f"(by epoch {', '.join(f'{a:.4f}' for a in accuracies)})")
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump(results, file, indent=1, default=str)


def score(args):
    from keras_tx import artifacts
    from keras_tx.data.wordpiece import load_tokenizer
    from keras_tx.models import BERTMaskedLM

    with open(os.path.join(args.run, "results.json")) as file:
        results = json.load(file)
    with open(os.path.join(args.data, "special.json")) as file:
        info = json.load(file)
    tokenizer = load_tokenizer(args.data)
    mlm = BERTMaskedLM(_backbone(info["vocabulary_size"], results["sequence_length"]), tokenizer=tokenizer)
    mlm.set_weights(load_shards(os.path.join(args.run, "mlm_weights")))
    for text in ("this movie is [MASK] .", "the acting was [MASK] , but the story was boring ."):
        print(text, mlm.fill_mask(text, top_k=5))
    if not args.out:
        return
    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"{args.out} exists; pass --force to replace it.")
    staging = args.out.rstrip("/") + ".tmp"
    from keras_tx.data.wordpiece import save_tokenizer
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    save_tokenizer(tokenizer, staging)
    last = results["pretraining"][-1]
    # The validation figures `keras-tx evaluate` prints: one dev sentence per sequence, seeded masks, mean over
    # the masked tokens only (the packed figures of training average in the empty mask slots as zeros).
    from keras_tx.data.wordpiece import load_sst2
    from keras_tx.tasks import MaskedLM

    dev_texts, _ = load_sst2(info["data_dir"], "validation")
    dev = MaskedLM(mlm, {"sequence_length": results["sequence_length"]}).scores(dev_texts)
    print(json.dumps(dev))
    artifacts.save_model(staging, mlm, {
        "kind": "masked_lm",
        "architecture": "bert",
        "config": mlm.backbone.get_config(),
        "tokenizer": "vocab.txt",
        "dataset": f"{info['data_dir']} (SST-2 training sentences, labels unused)",
        "split": "SST-2 train / dev (GLUE)",
        "sequence_length": results["sequence_length"],
        "masking": "15% of tokens selected; of those 80% [MASK], 10% random token, 10% unchanged",
        "metrics": {
            "val_masked_accuracy": dev["masked_accuracy"], "val_loss": dev["masked_loss"],
            "val_measure": "SST-2 dev, one sentence per sequence, seeded masks, mean over masked tokens "
                           "(keras-tx evaluate)",
            "packed_dev_masked_accuracy_in_training": last["dev_masked_accuracy"],
            "pretraining_epochs": last["epoch"], "pretraining_seconds": last["seconds"],
            "sst2_dev_accuracy_finetuned": results["pretrained"]["dev_accuracy_last_epoch"],
            "sst2_dev_accuracy_from_scratch": results["scratch"]["dev_accuracy_last_epoch"],
        },
        "trained_on": f"{results['backend']} backend, {args.device}",
        "commands": [
            f"python benchmarks/sst2.py prepare --data-dir {info['data_dir']} --out {args.data}",
            "python " + results["command"],
            "python " + " ".join(sys.argv),
        ],
    })
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(staging, args.out)
    print(f"wrote {args.out}/")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--vocabulary-size", type=int, default=8000)
    p.add_argument("--sequence-length", type=int, default=64)
    p.add_argument("--out", required=True)
    t = steps.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--pretrain-epochs", type=int, default=100, help="passes over the packed phrases")
    t.add_argument("--eval-every", type=int, default=10, help="epochs between masked-LM evaluations on dev")
    t.add_argument("--pretrain-budget", type=float, help="seconds of masked-LM pretraining at most")
    t.add_argument("--mlm-batch-size", type=int, default=128)
    t.add_argument("--mlm-learning-rate", type=float, default=1e-3)
    t.add_argument("--finetune-epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=1e-4)
    t.add_argument("--max-texts", type=int, help="use only the first N training texts (smoke runs)")
    t.add_argument("--mixed-precision")
    t.add_argument("--seed", type=int, default=0)
    s = steps.add_parser("score")
    s.add_argument("--data", required=True)
    s.add_argument("--run", required=True)
    s.add_argument("--out")
    s.add_argument("--force", action="store_true")
    s.add_argument("--device", default="unknown device")
    args = parser.parse_args()
    {"prepare": prepare, "train": train, "score": score}[args.step](args)


if __name__ == "__main__":
    main()
