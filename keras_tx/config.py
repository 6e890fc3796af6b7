"""Training configurations as dataclasses, and the command line built from them.

Each kind of task owns its defaults (minGPT's `get_default_config`): a dataclass per `keras-tx train` verb, whose
fields are the flags, with their types, ranges and help in `flag(...)`. `add_arguments` turns one into argparse
options and `from_namespace` turns the parsed options back into it, so the CLI holds no defaults of its own and a
Python caller writes the same thing as a user:

    keras-tx train gpt --steps 500 --out runs/gpt
    keras_tx.tasks.train(keras_tx.tasks.GPTConfig(steps=500, out="runs/gpt"))

No TensorFlow here: `keras-tx --help` and a flag out of range answer before it starts.
"""

import argparse
import dataclasses
import json

from keras_tx import validation


def integer(low, high=None):
    """An argparse type: an integer in [low, high], checked by `keras_tx.validation` as the API checks it."""

    def parse(text):
        try:
            return validation.integer("", int(text), low, high)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{validation.integer_range(low, high)}, got {text!r}") from None

    parse.__name__ = "integer"
    return parse


def number(low=None, high=None, low_open=False):
    """An argparse type: a finite number in [low, high] ((low, high] with low_open)."""

    def parse(text):
        try:
            return validation.number("", text, low, high, low_open)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{validation.number_range(low, high, low_open)}, got {text!r}") from None

    parse.__name__ = "number"
    return parse


POSITIVE = integer(1)
SEED = integer(0, 2**63 - 1)


def flag(default=None, help=None, type=None, choices=None, group="model", required=False, nargs=None):
    """A dataclass field that is also a command-line flag (`--name-with-dashes`)."""
    meta = dict(help=help, type=type, choices=choices, group=group, required=required, nargs=nargs)
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


GROUPS = ("model", "data", "run", "optimizer (nanoGPT's recipe)", "scale")


def add_arguments(parser, config_class):
    """Add one option per field of `config_class` to `parser`, grouped, with the dataclass's defaults."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if "group" not in meta:  # not a flag (e.g. the verb itself)
            continue
        name = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        group = groups[meta["group"] if meta["group"] in groups else "model"]
        if isinstance(default, bool):
            group.add_argument(name, action="store_true", help=meta["help"])
            continue
        help_text = meta["help"]
        if default is not None and not meta["required"]:
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            help_text = f"{help_text} (default {shown})" if help_text else f"default {shown}"
        group.add_argument(name, type=meta["type"], choices=meta["choices"], nargs=meta["nargs"], default=default,
                           required=meta["required"], help=help_text)


def from_namespace(config_class, namespace, **extra):
    """The `config_class` of parsed options (fields absent from `namespace` keep their defaults)."""
    names = [f.name for f in dataclasses.fields(config_class)]
    values = {name: getattr(namespace, name) for name in names if hasattr(namespace, name)}
    return config_class(**{**values, **extra})


def as_dict(config):
    """The fields of a configuration as plain JSON values."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


@dataclasses.dataclass
class TrainingConfig:
    """The flags every `keras-tx train` verb shares: data, the run, the optimizer and the scale.

    A verb's dataclass adds its model's fields and changes defaults; `model` names the verb (gpt, bert, ...).
    """

    model: str = None
    # data
    dataset: str = flag(None, "a TensorFlow Datasets name (e.g. tiny_shakespeare); default: built-in data",
                        group="data")
    text_file: str = flag(None, "a local UTF-8 text file", group="data")
    data_dir: str = flag(None, "a directory of the data, or the tfds data directory with --dataset", group="data")
    download: bool = flag(False, "let tfds download the dataset (needs the network)", group="data")
    # run
    out: str = flag(None, "the model directory to write (new, empty, or this command's unfinished run, which "
                          "resumes)", group="run", required=True)
    force: bool = flag(False, "replace a finished model or another run in --out", group="run")
    steps: int = flag(2000, "optimizer steps", POSITIVE, group="run")
    batch_size: int = flag(12, "global batch size", POSITIVE, group="run")
    eval_interval: int = flag(250, "steps between evaluations and backups (and one at the end)", POSITIVE, group="run")
    eval_batches: int = flag(200, "validation batches per evaluation", POSITIVE, group="run")
    seed: int = flag(1337, None, SEED, group="run")
    deterministic: bool = flag(False, "deterministic TF ops (slower)", group="run")
    verbose: int = flag(1, "1: progress bar, 2: a line per eval", int, (0, 1, 2), group="run")
    no_tensorboard: bool = flag(False, "do not write TensorBoard logs", group="run")
    # optimizer
    learning_rate: float = flag(1e-3, None, number(0, low_open=True), group="optimizer (nanoGPT's recipe)")
    min_learning_rate: float = flag(1e-4, None, number(0), group="optimizer (nanoGPT's recipe)")
    warmup_steps: int = flag(100, None, integer(0), group="optimizer (nanoGPT's recipe)")
    weight_decay: float = flag(0.1, None, number(0), group="optimizer (nanoGPT's recipe)")
    beta2: float = flag(0.99, None, number(0, 0.9999), group="optimizer (nanoGPT's recipe)")
    clip_norm: float = flag(1.0, "global gradient-norm clip", number(0, low_open=True),
                            group="optimizer (nanoGPT's recipe)")
    dropout: float = flag(0.0, None, number(0, 0.95), group="optimizer (nanoGPT's recipe)")
    # scale
    strategy: str = flag("auto", None, None, ("auto", "default", "mirrored", "multi-worker", "tpu"), group="scale")
    cpu_replicas: int = flag(None, "with --strategy mirrored and no GPU: logical CPU replicas", POSITIVE, group="scale")
    tpu: str = flag(None, "TPU name or address for --strategy tpu", group="scale")
    mixed_precision: str = flag(None, None, None, ("float32", "float16", "bfloat16", "auto"), group="scale")
    jit_compile: str = flag("auto", "XLA; Keras' auto turns it off on CPU and under tf.distribute", None,
                            ("auto", "on", "off"), group="scale")
    steps_per_execution: int = flag(1, None, POSITIVE, group="scale")
    # How the run was started, for metadata.json (the CLI gives its argv); not a flag, not part of the signature.
    command: str = None


@dataclasses.dataclass
class StackConfig:
    """The size of a stack of Transformer blocks, shared by the verbs that train one (mixed in first:
    `class GPTConfig(StackConfig, TrainingConfig)`); a verb with other sizes redefines a field."""

    num_layers: int = flag(4, None, POSITIVE)
    num_heads: int = flag(4, None, POSITIVE)
    hidden_dim: int = flag(128, None, POSITIVE)


def default(name, value):
    """A shared flag of `TrainingConfig` with another default, for a verb's dataclass:
    `batch_size: int = default("batch_size", 64)`."""
    meta = TrainingConfig.__dataclass_fields__[name].metadata
    return flag(value, meta["help"], meta["type"], meta["choices"], meta["group"], meta["required"], meta["nargs"])


# Fields that change how a run executes, not what it computes: a resumed run may change them.
RUNTIME_FIELDS = frozenset({"out", "force", "verbose", "no_tensorboard", "download", "strategy", "cpu_replicas",
                            "tpu", "jit_compile", "steps_per_execution", "deterministic", "command"})


def run_signature(config):
    """What a training run computes: its fields, less RUNTIME_FIELDS (JSON-ready)."""
    return {k: v for k, v in sorted(as_dict(config).items()) if k not in RUNTIME_FIELDS}
