"""The `keras-tx` command: train, use, evaluate and demo the models.

    keras-tx train gpt --text-file input.txt --steps 2000 --out runs/gpt
    keras-tx generate runs/gpt --prompt "ROMEO:" --max-new-tokens 200 --sampler top_k --top-k 10
    keras-tx evaluate runs/gpt
    keras-tx import hf://openai-community/gpt2 --out models/gpt2 && keras-tx generate models/gpt2 --prompt "Hello"
    keras-tx train igpt --data-dir fashion_mnist --out runs/igpt && keras-tx complete runs/igpt shirt.png --out c.png
    keras-tx demo

Errors a user can cause (a missing file, unknown characters, a directory that is not a model) print one line on
stderr and exit with status 2, never a traceback.
"""

import argparse
import json
import os
import sys

from keras_tx import config, tasks, validation
from keras_tx.config import POSITIVE, SEED
from keras_tx.config import integer as _int
from keras_tx.config import number as _float

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


def _parser():
    parser = _Parser(prog="keras-tx", description="The Transformer family as Keras 3 layers.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    verbs = parser.add_subparsers(dest="verb")

    train = verbs.add_parser("train", help="train a model and write a model directory")
    models = train.add_subparsers(dest="model", required=True)
    for verb, (_, config_class) in tasks.TRAIN_VERBS.items():
        summary = config_class.__doc__.split(": ", 1)[-1].split("\n")[0].rstrip(".")
        config.add_arguments(models.add_parser(verb, help=summary), config_class)

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

    classify = verbs.add_parser("classify", help="classify image files (PNG, JPEG, ...) or texts with a classifier")
    classify.add_argument("model_dir")
    classify.add_argument("inputs", nargs="+", metavar="INPUT",
                          help="image files for an image classifier, texts for a text classifier")
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

    hub = verbs.add_parser("import", help="write a model directory from a keras-hub preset (GPT-2, BERT, ViT)")
    hub.add_argument("preset", help="kaggle://..., hf://... (downloaded once, then cached) or a preset directory")
    hub.add_argument("--out", required=True, help="the model directory to write (new or empty)")
    hub.add_argument("--labels", help="image classifiers: a file of class names, one a line (default: the index)")

    export = verbs.add_parser("export", help="write a TF SavedModel with serving signatures (TF Serving)")
    export.add_argument("model_dir")
    export.add_argument("out_dir", help="a new or empty directory; for TF Serving a version folder: serving/gpt/1")

    demo = verbs.add_parser("demo", help="the interactive demo (Streamlit) on saved_models/")
    demo.add_argument("--port", type=_int(1, 65535), default=8501)
    demo.add_argument("--models", nargs="+", default=None, metavar="PATH",
                      help="folders of model directories, or model directories (default: saved_models/); e.g. "
                           "--models saved_models models/gpt2")
    return parser


def cmd_train(args):
    from keras_tx import artifacts

    _, config_class = tasks.TRAIN_VERBS[args.model]
    tasks.train(config.from_namespace(config_class, args, command=artifacts.command_line(args.argv)))


def cmd_generate(args):
    task = tasks.load(args.model_dir, kind="language_model")
    ids, note = task.prompt_ids(args.prompt, args.max_new_tokens)
    if note:
        print(note, file=sys.stderr)
    sampling = dict(sampler=args.sampler, temperature=args.temperature, seed=args.seed)
    if args.sampler == "top_k":
        sampling["top_k"] = args.top_k
    elif args.sampler == "top_p":
        sampling["top_p"] = args.top_p
    elif args.sampler == "beam":
        sampling["num_beams"] = args.num_beams
    tokens = task.generate_ids(ids, args.max_new_tokens, **sampling)
    print(args.prompt if note is None else task.tokenizer.decode(ids), end="")
    print(task.tokenizer.decode(tokens[len(ids):]))


def cmd_fill_mask(args):
    task = tasks.load(args.model_dir, kind="masked_lm")
    for index, candidates in enumerate(task.fill_mask(args.text, top_k=args.top_k), 1):
        print(f"[MASK] {index}: " + ", ".join(f"{token} {p:.3f}" for token, p in candidates))


def cmd_translate(args):
    task = tasks.load(args.model_dir, kind="translation")
    for translation in task.translate(args.texts, sampler=args.sampler, num_beams=args.num_beams):
        print(translation)


def cmd_classify(args):
    # The directory's task classifies its inputs (`classify(inputs, top_k)`): image files, or texts.
    kind = tasks.read_kind(args.model_dir)
    if not hasattr(tasks.TASKS.get(kind), "classify"):
        kinds = [k for k, task in tasks.TASKS.items() if hasattr(task, "classify")]
        raise UsageError(f"{args.model_dir} holds a {kind or 'unknown'} model; classify reads a model of kind "
                         f"{' or '.join(kinds)}.")
    for item, predictions in tasks.TASKS[kind].load(args.model_dir).classify(args.inputs, args.top_k):
        print(f"{item}: " + ", ".join(f"{label} {p:.3f}" for label, p in predictions))


def cmd_complete(args):
    from keras_tx.tasks.image_completion import check_output_file, write_png

    check_output_file(args.out, args.force)  # checked first, so no work is done for nothing
    task = tasks.load(args.model_dir, kind="image_gpt")
    pixels = task.complete_file(args.image, args.keep_rows, args.num_samples, args.temperature, args.seed)
    write_png(pixels, args.out, force=args.force)
    rows = task.model.grid_size[0]
    kept = rows // 2 if args.keep_rows is None else args.keep_rows
    print(f"wrote {args.out}: the given image, its top {kept} of {rows} rows, {args.num_samples} completion(s)")


def cmd_evaluate(args):
    task = tasks.load(args.model_dir)
    print(json.dumps(task.evaluate(dataset=args.dataset, text_file=args.text_file, data_dir=args.data_dir,
                                   batches=args.batches, batch_size=args.batch_size)))


def cmd_import(args):
    from keras_tx import artifacts
    from keras_tx.tasks.presets import import_preset

    metadata = import_preset(args.preset, args.out, labels=args.labels, command=artifacts.command_line(args.argv))
    print(f"wrote {args.out} ({metadata['kind']}, {metadata['architecture']}, {metadata['parameters']:,} parameters) "
          f"from {args.preset}")


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
    "import": cmd_import,
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
    args.argv = argv  # recorded in metadata.json by `train`
    if args.verb != "demo":
        _import_tensorflow_quietly()
    try:
        return COMMANDS[args.verb](args) or 0
    except (UsageError, ValueError, OSError, UnicodeError) as error:
        print(f"keras-tx {args.verb}: error: {validation.one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        note = " (rerun the same command to resume from the last backup)" if args.verb == "train" else ""
        print(f"keras-tx {args.verb}: interrupted{note}.", file=sys.stderr)
        return 130



if __name__ == "__main__":
    sys.exit(main())
