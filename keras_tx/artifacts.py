"""Model directories: what `keras-tx train` writes and every other verb, the demo and the exporter read.

    DIR/model.keras      the model (Keras v3 format; loaded with safe_mode=True)
    DIR/metadata.json    architecture, parameter count, data, split, the exact command, final metrics, date
    DIR/history.json     one record per evaluation interval (written during training)
    DIR/tokenizer.json   or vocab.txt: the tokenizer, where the model reads text

Files are written under a temporary name and renamed, so a crash never leaves half a model behind.
"""

import datetime
import json
import os
import shlex
import sys

import keras

from keras_tx.training import write_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"


def save_model(out_dir, model, metadata):
    """Write DIR/model.keras and DIR/metadata.json (adding parameter count, date and the command line)."""
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".tmp-{os.getpid()}.keras")
    _uncompiled_copy(model).save(tmp)
    os.replace(tmp, os.path.join(out_dir, MODEL_FILE))
    metadata = {
        "parameters": int(model.count_params()),
        "date": datetime.date.today().isoformat(),
        "command": command_line(),
        **metadata,
    }
    write_json(os.path.join(out_dir, METADATA_FILE), metadata)
    return metadata


def _uncompiled_copy(model):
    """The same architecture and weights without the optimizer: a finished model's file is a third of the size
    (Adam keeps two more copies of every weight), and resuming uses training's backup, which has the optimizer."""
    clone = type(model).from_config(model.get_config())
    if not clone.built:
        clone.build(model.input_shape)
    clone.set_weights(model.get_weights())
    if getattr(model, "tokenizer", None) is not None:  # vocabularies live in assets, not in the config
        clone.tokenizer = model.tokenizer
    return clone


# The CLI sets this to its own argv, so that a run started in-process (tests, notebooks) records its real command.
CLI_ARGV = None


def command_line():
    """The command that is running, as a user would retype it."""
    if CLI_ARGV is not None:
        return " ".join(["keras-tx"] + [shlex.quote(str(a)) for a in CLI_ARGV])
    program = os.path.basename(sys.argv[0])
    if program in ("__main__.py", "cli.py"):
        program = "keras-tx"
    return " ".join([program] + [shlex.quote(a) for a in sys.argv[1:]])


def read_metadata(model_dir):
    """metadata.json of a model directory, or a clear ValueError."""
    check_model_dir(model_dir)
    path = os.path.join(model_dir, METADATA_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{model_dir} is not a keras-tx model directory: {METADATA_FILE} is unreadable ({error}).")


def check_model_dir(model_dir):
    if not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir} is not a directory (expected a model directory made by `keras-tx train`).")
    if not os.path.isfile(os.path.join(model_dir, MODEL_FILE)):
        raise ValueError(f"{model_dir} is not a keras-tx model directory: it has no {MODEL_FILE}.")


KIND_NAMES = {"language_model": "a language model", "masked_lm": "a masked language model",
              "image_classifier": "an image classifier", "translation": "a translation model",
              "image_gpt": "an image GPT"}


def load_model(model_dir, kind=None):
    """(model, metadata) from a model directory. Missing, truncated or foreign files give a one-line ValueError,
    and so does a model of another kind than `kind` (metadata.json's "kind"), when one is asked for."""
    metadata = read_metadata(model_dir)
    if kind is not None and metadata.get("kind") != kind:
        raise ValueError(
            f"{model_dir} holds a {metadata.get('kind', 'unknown')} model, not {KIND_NAMES.get(kind, kind)}."
        )
    import keras_tx.models  # noqa: F401  registers our classes for deserialization

    try:
        model = keras.saving.load_model(os.path.join(model_dir, MODEL_FILE), safe_mode=True)
    except Exception as error:  # zip, h5 and config errors all mean the same thing to a user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{model_dir}/{MODEL_FILE} could not be loaded (truncated or not a keras-tx model): {reason}")
    return model, metadata
