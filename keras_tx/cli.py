"""The `keras-tx` command: train, use, evaluate and demo the models.

    keras-tx train gpt --text-file input.txt --steps 2000 --out runs/gpt
    keras-tx generate runs/gpt --prompt "ROMEO:" --max-new-tokens 200 --sampler top_k --top-k 10
    keras-tx evaluate runs/gpt
    keras-tx train igpt --data-dir fashion_mnist --out runs/igpt && keras-tx complete runs/igpt shirt.png --out c.png
    keras-tx demo

Errors a user can cause (a missing file, unknown characters, a directory that is not a model) print one line on
stderr and exit with status 2, never a traceback.
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_tx import validation

# TensorFlow's C++ start-up lines (oneDNN notes, CUDA probes on a machine without a GPU) are not errors of ours:
# keep them out of a newcomer's terminal. Real errors still reach the user as Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")


class UsageError(Exception):
    """A user's mistake: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line on stderr (exit status 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int(low, high=None):
    """An argparse type: an integer in [low, high], checked by `keras_tx.validation` as the API checks it."""

    def parse(text):
        try:
            return validation.integer("", int(text), low, high)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{validation.integer_range(low, high)}, got {text!r}") from None

    parse.__name__ = "integer"
    return parse


def _float(low=None, high=None, low_open=False):
    """An argparse type: a finite number in [low, high] ((low, high] with low_open)."""

    def parse(text):
        try:
            return validation.number("", text, low, high, low_open)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{validation.number_range(low, high, low_open)}, got {text!r}") from None

    parse.__name__ = "number"
    return parse


POSITIVE = _int(1)
SEED = _int(0, 2**63 - 1)


def _add_training_arguments(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="a TensorFlow Datasets name (e.g. tiny_shakespeare); default: built-in text")
    data.add_argument("--text-file", help="a local UTF-8 text file")
    data.add_argument("--data-dir", help="a directory with input.txt, or the tfds data directory with --dataset")
    data.add_argument("--download", action="store_true", help="let tfds download the dataset (needs the network)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True,
                     help="the model directory to write (new, empty, or this command's unfinished run, which resumes)")
    run.add_argument("--force", action="store_true", help="replace a finished model or another run in --out")
    run.add_argument("--steps", type=POSITIVE, default=2000, help="optimizer steps (default 2000)")
    run.add_argument("--batch-size", type=POSITIVE, default=12, help="global batch size (default 12)")
    run.add_argument("--eval-interval", type=POSITIVE, default=250,
                     help="steps between evaluations and backups (and one at the end)")
    run.add_argument("--eval-batches", type=POSITIVE, default=200, help="validation batches per evaluation")
    run.add_argument("--seed", type=SEED, default=1337)
    run.add_argument("--deterministic", action="store_true", help="deterministic TF ops (slower)")
    run.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="1: progress bar, 2: a line per eval")
    run.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    optim = parser.add_argument_group("optimizer (nanoGPT's recipe)")
    optim.add_argument("--learning-rate", type=_float(0, low_open=True), default=1e-3)
    optim.add_argument("--min-learning-rate", type=_float(0), default=1e-4)
    optim.add_argument("--warmup-steps", type=_int(0), default=100)
    optim.add_argument("--weight-decay", type=_float(0), default=0.1)
    optim.add_argument("--beta2", type=_float(0, 0.9999), default=0.99)
    optim.add_argument("--clip-norm", type=_float(0, low_open=True), default=1.0, help="global gradient-norm clip")
    optim.add_argument("--dropout", type=_float(0, 0.95), default=0.0)
    scale = parser.add_argument_group("scale")
    scale.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "multi-worker", "tpu"))
    scale.add_argument("--cpu-replicas", type=POSITIVE,
                       help="with --strategy mirrored and no GPU: logical CPU replicas")
    scale.add_argument("--tpu", help="TPU name or address for --strategy tpu")
    scale.add_argument("--mixed-precision", choices=("float32", "float16", "bfloat16", "auto"), default=None)
    scale.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                       help="XLA; Keras' auto turns it off on CPU and under tf.distribute")
    scale.add_argument("--steps-per-execution", type=POSITIVE, default=1)


def _parser():
    parser = _Parser(prog="keras-tx", description="The Transformer family as Keras 3 layers.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    verbs = parser.add_subparsers(dest="verb")

    train = verbs.add_parser("train", help="train a model and write a model directory")
    models = train.add_subparsers(dest="model", required=True)
    gpt = models.add_parser("gpt", help="a character-level GPT (default: nanoGPT's CPU baby config)")
    gpt.add_argument("--num-layers", type=POSITIVE, default=4)
    gpt.add_argument("--num-heads", type=POSITIVE, default=4)
    gpt.add_argument("--hidden-dim", type=POSITIVE, default=128)
    gpt.add_argument("--intermediate-dim", type=POSITIVE, help="default 4 * hidden-dim")
    gpt.add_argument("--context", type=_int(2), default=64, help="tokens per training window = max length")
    _add_training_arguments(gpt)
    for cell in ("lstm", "rnn"):
        rnn = models.add_parser(cell, help=f"a character-level {cell.upper()} language model")
        rnn.add_argument("--num-layers", type=POSITIVE, default=1)
        rnn.add_argument("--embedding-dim", type=POSITIVE, default=128)
        rnn.add_argument("--units", type=POSITIVE, default=512)
        rnn.add_argument("--context", type=_int(2), default=64,
                         help="tokens per training window (backpropagation span)")
        _add_training_arguments(rnn)

    vit = models.add_parser("vit", help="a Vision Transformer image classifier (default data: digits)")
    vit.add_argument("--patch-size", type=POSITIVE, default=4)
    vit.add_argument("--num-layers", type=POSITIVE, default=6)
    vit.add_argument("--num-heads", type=POSITIVE, default=4)
    vit.add_argument("--hidden-dim", type=POSITIVE, default=128)
    vit.add_argument("--mlp-dim", type=POSITIVE, help="default 2 * hidden-dim")
    resnet = models.add_parser("resnet", help="a small ResNet image classifier (the CNN baseline)")
    resnet.add_argument("--width", type=POSITIVE, default=32, help="channels of the first stage (64 = ResNet-18)")
    resnet.add_argument("--blocks-per-stage", type=POSITIVE, nargs="+", default=[2, 2, 2])
    for image_model in (vit, resnet):
        _add_training_arguments(image_model)
        image_model.add_argument("--epochs", type=POSITIVE, default=10)
        image_model.add_argument("--train-size", type=POSITIVE, help="use only the first N training images")
        image_model.add_argument("--no-augment", action="store_true", help="no random shifts")
        image_model.add_argument("--flip", action="store_true", help="also random horizontal flips")
        image_model.set_defaults(batch_size=128, steps=None, eval_interval=None, warmup_steps=200,
                                 weight_decay=0.05, beta2=0.999)

    igpt = models.add_parser("igpt", help="image GPT: a GPT over k-means palette indices of downsampled pixels")
    igpt.add_argument("--image-size", type=_int(2), help="side of the token grid (default: half the images' side "
                      "from 16 up: 28 -> 14, digits 16 -> 8)")
    igpt.add_argument("--num-colors", type=_int(2, 4096), default=16, help="k-means palette size (default 16)")
    igpt.add_argument("--num-layers", type=POSITIVE, default=4)
    igpt.add_argument("--num-heads", type=POSITIVE, default=4)
    igpt.add_argument("--hidden-dim", type=POSITIVE, default=128)
    igpt.add_argument("--intermediate-dim", type=POSITIVE, help="default 4 * hidden-dim")
    _add_training_arguments(igpt)
    igpt.add_argument("--epochs", type=POSITIVE, default=10)
    igpt.add_argument("--train-size", type=POSITIVE, help="use only the first N training images")
    igpt.add_argument("--test-size", type=POSITIVE, help="use only the first N test images")
    igpt.set_defaults(batch_size=64, steps=None, eval_interval=None)

    bert = models.add_parser("bert", help="BERT masked-LM pretraining with a WordPiece vocabulary")
    bert.add_argument("--num-layers", type=POSITIVE, default=4)
    bert.add_argument("--num-heads", type=POSITIVE, default=4)
    bert.add_argument("--hidden-dim", type=POSITIVE, default=128)
    bert.add_argument("--intermediate-dim", type=POSITIVE, help="default 4 * hidden-dim")
    bert.add_argument("--sequence-length", type=_int(4), default=64)
    bert.add_argument("--vocabulary-size", type=_int(16), default=8000)
    _add_training_arguments(bert)
    bert.set_defaults(batch_size=64, learning_rate=5e-4, min_learning_rate=5e-5, weight_decay=0.01, beta2=0.999,
                      eval_batches=20, dropout=0.1)

    transformer = models.add_parser(
        "transformer", help="a seq2seq Transformer translator (default data: German->English number words)"
    )
    transformer.add_argument("--source", default="de", help="source language: file suffix or tfds feature")
    transformer.add_argument("--target", default="en", help="target language")
    transformer.add_argument("--num-layers", type=POSITIVE, default=3,
                             help="encoder blocks, and as many decoder blocks")
    transformer.add_argument("--num-heads", type=POSITIVE, default=8)
    transformer.add_argument("--hidden-dim", type=POSITIVE, default=256)
    transformer.add_argument("--intermediate-dim", type=POSITIVE, help="default 2 * hidden-dim")
    transformer.add_argument("--max-length", type=_int(2), default=40, help="source and target pieces kept")
    transformer.add_argument("--vocabulary-size", type=_int(16), default=8000, help="upper bound per language")
    transformer.add_argument("--label-smoothing", type=_float(0, 0.99), default=0.1)
    transformer.add_argument("--epochs", type=POSITIVE, default=15)
    transformer.add_argument("--max-pairs", type=POSITIVE, help="use only the first N training pairs")
    transformer.add_argument("--bleu-sentences", type=_int(0), default=1000,
                             help="test pairs translated (greedy) for BLEU at the end; 0: none")
    _add_training_arguments(transformer)
    transformer.set_defaults(batch_size=128, steps=None, eval_interval=None, learning_rate=5e-4,
                             min_learning_rate=1e-5, warmup_steps=450, weight_decay=0.01, beta2=0.98, dropout=0.1)

    generate = verbs.add_parser("generate", help="continue a prompt with a language model")
    generate.add_argument("model_dir")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--max-new-tokens", type=_int(1, validation.MAX_NEW_TOKENS), default=200)
    generate.add_argument("--sampler", choices=SAMPLERS, default="top_k")
    generate.add_argument("--temperature", type=_float(0), default=1.0, help="0 decodes greedily")
    generate.add_argument("--top-k", type=POSITIVE, default=10)
    generate.add_argument("--top-p", type=_float(0, 1, low_open=True), default=0.9)
    generate.add_argument("--num-beams", type=_int(1, validation.MAX_NUM_BEAMS), default=4)
    generate.add_argument("--seed", type=SEED)

    fill = verbs.add_parser("fill-mask", help="predict the [MASK] tokens of a text with a masked language model")
    fill.add_argument("model_dir")
    fill.add_argument("text")
    fill.add_argument("--top-k", type=POSITIVE, default=5)

    translate = verbs.add_parser("translate", help="translate texts with a seq2seq Transformer")
    translate.add_argument("model_dir")
    translate.add_argument("texts", nargs="+", help="one or more texts in the source language")
    translate.add_argument("--sampler", choices=("greedy", "beam"), default="beam")
    translate.add_argument("--num-beams", type=_int(1, validation.MAX_NUM_BEAMS), default=4)

    classify = verbs.add_parser("classify", help="classify image files (PNG, JPEG, ...) with an image model")
    classify.add_argument("model_dir")
    classify.add_argument("images", nargs="+")
    classify.add_argument("--top-k", type=POSITIVE, default=3)

    complete = verbs.add_parser("complete", help="complete the bottom of an image with an image GPT (PNG grid out)")
    complete.add_argument("model_dir")
    complete.add_argument("image", help="a PNG, JPEG, ... file of any size and mode")
    complete.add_argument("--out", required=True, help="the PNG to write: given image, kept rows, completions")
    complete.add_argument("--keep-rows", type=_int(0), help="rows of the token grid kept (default: the top half)")
    complete.add_argument("--num-samples", type=_int(1, validation.MAX_SAMPLES), default=4,
                          help="completions (default 4)")
    complete.add_argument("--temperature", type=_float(0, low_open=True), default=1.0)
    complete.add_argument("--seed", type=SEED)
    complete.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    evaluate = verbs.add_parser("evaluate", help="print a model's metrics as one JSON line")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--dataset")
    evaluate.add_argument("--text-file")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--batches", type=POSITIVE, default=200, help="validation batches (language models)")
    evaluate.add_argument("--batch-size", type=POSITIVE, default=12)

    export = verbs.add_parser("export", help="write a TF SavedModel with serving signatures (TF Serving)")
    export.add_argument("model_dir")
    export.add_argument("out_dir", help="a new or empty directory; for TF Serving a version folder: serving/gpt/1")

    demo = verbs.add_parser("demo", help="the interactive demo (Streamlit) on saved_models/")
    demo.add_argument("--port", type=_int(1, 65535), default=8501)
    demo.add_argument("--models", default=None, help="the folder of model directories (default: saved_models/)")
    return parser


def _jit(value):
    return {"auto": "auto", "on": True, "off": False}[value]


def cmd_train(args):
    from keras_tx import recipes

    args.jit_compile = _jit(args.jit_compile)
    train = {"gpt": recipes.train_language_model, "lstm": recipes.train_language_model,
             "rnn": recipes.train_language_model, "bert": recipes.train_masked_lm,
             "vit": recipes.train_image_classifier, "resnet": recipes.train_image_classifier,
             "igpt": recipes.train_image_gpt, "transformer": recipes.train_translation}[args.model]
    train(args)


def cmd_generate(args):
    from keras_tx import recipes

    model, tokenizer, _ = recipes.load_language_model(args.model_dir)
    ids, note = recipes.prepare_prompt(tokenizer, args.prompt, getattr(model, "max_length", None), args.max_new_tokens)
    if note:
        print(note, file=sys.stderr)
    sampling = dict(sampler=args.sampler, temperature=args.temperature, seed=args.seed)
    if args.sampler == "top_k":
        sampling["top_k"] = args.top_k
    elif args.sampler == "top_p":
        sampling["top_p"] = args.top_p
    elif args.sampler == "beam":
        sampling["num_beams"] = args.num_beams
    tokens = recipes.generate_text(model, tokenizer, ids, args.max_new_tokens, **sampling)
    print(args.prompt if note is None else tokenizer.decode(ids), end="")
    print(tokenizer.decode(tokens[len(ids):]))


def cmd_fill_mask(args):
    from keras_tx import recipes

    model, _ = recipes.load_masked_lm(args.model_dir)
    for index, candidates in enumerate(model.fill_mask(args.text, top_k=args.top_k), 1):
        print(f"[MASK] {index}: " + ", ".join(f"{token} {p:.3f}" for token, p in candidates))


def cmd_translate(args):
    from keras_tx import recipes

    translator, _ = recipes.load_translator(args.model_dir)
    for translation in translator.translate(args.texts, sampler=args.sampler, num_beams=args.num_beams):
        print(translation)


def cmd_classify(args):
    from keras_tx import recipes

    model, metadata = recipes.load_image_classifier(args.model_dir)
    for path, predictions in recipes.classify_files(model, metadata, args.images, args.top_k):
        print(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in predictions))


def cmd_complete(args):
    from keras_tx import recipes

    recipes.check_output_file(args.out, args.force)  # checked first, so no work is done for nothing
    model, metadata = recipes.load_image_gpt(args.model_dir)
    pixels = recipes.complete_image_file(model, metadata, args.image, args.keep_rows, args.num_samples,
                                         args.temperature, args.seed)
    recipes.write_png(pixels, args.out, force=args.force)
    kept = model.grid_size[0] // 2 if args.keep_rows is None else args.keep_rows
    print(f"wrote {args.out}: the given image, its top {kept} of {model.grid_size[0]} rows, "
          f"{args.num_samples} completion(s)")


def cmd_evaluate(args):
    from keras_tx import artifacts, recipes

    metadata = artifacts.read_metadata(args.model_dir)
    if metadata.get("kind") == "image_classifier":
        return _evaluate_image_classifier(args, metadata)
    if metadata.get("kind") == "image_gpt":
        return _evaluate_image_gpt(args)
    if metadata.get("kind") == "translation":
        return _evaluate_translation(args)
    if metadata.get("kind") == "masked_lm":
        return _evaluate_masked_lm(args)
    if metadata.get("kind") != "language_model":
        raise UsageError(f"evaluate does not know {metadata.get('kind', 'this')} models yet.")
    import keras

    from keras_tx.data.text import load_text, split_text

    model, tokenizer, metadata = recipes.load_language_model(args.model_dir)
    if args.dataset or args.text_file or args.data_dir:
        text = load_text(dataset=args.dataset, text_file=args.text_file, data_dir=args.data_dir)
    else:  # the data the model was trained on, as the image verbs do
        text = recipes.language_model_text(metadata)
    _, val_text = split_text(text, 0.1)
    context = metadata.get("context") or getattr(model, "max_length", None) or 64
    val = recipes.random_window_batches(
        tokenizer.encode(val_text), context, args.batch_size, seed=1, total_steps=args.batches
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    print(json.dumps({"model_dir": args.model_dir, "val_loss": round(float(loss), 4), "batches": args.batches}))


def _evaluate_image_classifier(args, metadata):
    from keras_tx import recipes
    from keras_tx.data.images import image_dataset, load_image_data

    model, metadata = recipes.load_image_classifier(args.model_dir)
    source = args.data_dir or args.dataset or metadata["dataset"]
    data = load_image_data(source)
    model.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    logits = model.predict(image_dataset(data.x_test, None, 256), verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == data.y_test))
    print(json.dumps({"model_dir": args.model_dir, "dataset": source, "test_accuracy": round(accuracy, 4),
                      "test_images": int(len(data.y_test))}))


def _evaluate_image_gpt(args):
    from keras_tx import recipes

    model, metadata = recipes.load_image_gpt(args.model_dir)
    source = args.data_dir or args.dataset or metadata["dataset"]
    _, x_test, _ = recipes.image_gpt_data(source)
    if source == metadata["dataset"] and metadata.get("test_size"):
        x_test = x_test[: metadata["test_size"]]  # the test images the training run reported on
    nats = recipes.image_gpt_nll(model, x_test)
    print(json.dumps({"model_dir": args.model_dir, "dataset": source, "test_images": int(len(x_test)),
                      "test_nll_nats_per_pixel": round(nats, 4), "test_nll_bits_per_pixel": round(nats / np.log(2), 4)}))


def _evaluate_masked_lm(args):
    from keras_tx import recipes

    if not (args.dataset or args.text_file or args.data_dir):
        raise UsageError("evaluate on a masked LM needs the text: --data-dir (e.g. an SST-2 folder), --dataset or "
                         "--text-file.")
    model, metadata = recipes.load_masked_lm(args.model_dir)
    args.download = False
    _, validation, source = recipes.masked_lm_texts(args)
    scores = recipes.masked_lm_scores(model, validation, metadata["sequence_length"])
    print(json.dumps({"model_dir": args.model_dir, "dataset": source, "validation_texts": len(validation),
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}}))


def _evaluate_translation(args):
    from keras_tx import recipes

    translator, metadata = recipes.load_translator(args.model_dir)
    args.source, args.target = metadata.get("languages", ("de", "en"))
    args.download = False
    pairs, source = recipes.translation_pairs(args, "test")
    scores = {sampler: translator.evaluate_bleu(pairs, sampler=sampler) for sampler in ("greedy", "beam")}
    print(json.dumps({"model_dir": args.model_dir, "dataset": source, "test_pairs": len(pairs),
                      "bleu_greedy": round(float(scores["greedy"]), 2), "bleu_beam4": round(float(scores["beam"]), 2)}))


def cmd_export(args):
    from keras_tx import export

    result = export.export(args.model_dir, args.out_dir)  # checks both directories before loading anything
    print(f"wrote {args.out_dir} ({result['kind']}), signatures:")
    for name, spec in result["signatures"].items():
        inputs = ", ".join(f"{key}: {value}" for key, value in spec["inputs"].items())
        outputs = ", ".join(f"{key}: {value}" for key, value in spec["outputs"].items())
        print(f"  {name}({inputs}) -> {outputs}")


def cmd_demo(args):
    from keras_tx import demo_runner

    return demo_runner.run(port=args.port, models_dir=args.models)


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras with their start-up chatter kept off stderr (`keras_tx.quiet`): the CLI's promise
    is one line on stderr for an error. Devices are only listed, not initialized, so that `--cpu-replicas` can still
    split the CPU afterwards."""
    from keras_tx.quiet import muted_stderr

    with muted_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        import keras  # noqa: F401

        from keras_tx import layers, models  # noqa: F401  registered, as `import keras_tx` does elsewhere


COMMANDS = {
    "train": cmd_train,
    "generate": cmd_generate,
    "fill-mask": cmd_fill_mask,
    "translate": cmd_translate,
    "classify": cmd_classify,
    "complete": cmd_complete,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "demo": cmd_demo,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # --help (0) or a usage error (2, its line already on stderr)
        return exit.code
    if args.version:
        from keras_tx import __version__

        print(__version__)
        return 0
    if not args.verb:
        _parser().print_help()
        return 2
    if args.verb != "demo":
        _import_tensorflow_quietly()
        from keras_tx import artifacts  # imports keras: only after the quiet TensorFlow start

        artifacts.CLI_ARGV = argv
    try:
        return COMMANDS[args.verb](args) or 0
    except (UsageError, ValueError, OSError, UnicodeError) as error:
        print(f"keras-tx {args.verb}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        note = " (rerun the same command to resume from the last backup)" if args.verb == "train" else ""
        print(f"keras-tx {args.verb}: interrupted{note}.", file=sys.stderr)
        return 130


def _one_line(error):
    """The first line of an error's message, or its type when it has none."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}." if error.filename else f"{error.strerror}."
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
