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
import shutil
import sys
import zipfile

import keras

from keras_tx.training import write_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
RUN_FILE = "run.json"  # the command of a run in progress: a rerun resumes only the same command

# What `keras-tx train` writes into a model directory; --force removes these (and nothing else) first.
TRAINING_OUTPUTS = (MODEL_FILE, METADATA_FILE, RUN_FILE, "history.json", "tokenizer.json", "vocab.txt", "vocab.json",
                    "merges.txt", "source_tokenizer.json", "target_tokenizer.json", "source_vocab.txt",
                    "target_vocab.txt", "translator.json", "best.weights.h5", "backup", "logs")


def save_model(out_dir, model, metadata, command=None):
    """Write DIR/model.keras and DIR/metadata.json (adding parameter count, date and the command: `command`, else
    this process's command line)."""
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".tmp-{os.getpid()}.keras")
    _uncompiled_copy(model).save(tmp)
    os.replace(tmp, os.path.join(out_dir, MODEL_FILE))
    metadata = {
        "parameters": int(model.count_params()),
        "date": datetime.date.today().isoformat(),
        "command": command or command_line(),
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


def command_line(argv=None):
    """The command that is running, as a user would retype it: `keras-tx ARGV` when the CLI gives its `argv`."""
    if argv is not None:
        return " ".join(["keras-tx"] + [shlex.quote(str(a)) for a in argv])
    program = os.path.basename(sys.argv[0])
    if program in ("__main__.py", "cli.py"):
        program = "keras-tx"
    return " ".join([program] + [shlex.quote(a) for a in sys.argv[1:]])


def check_out_dir(out_dir, signature, force=False):
    """Decide, before anything is read or written, whether a training run may write to `out_dir`.

    A new or empty directory starts a run; one holding an unfinished run of the same command (`signature`, see
    `keras_tx.config.run_signature`) resumes it. A finished model, another command's run or anything else is
    refused with one
    sentence, unless `force` (then `begin_run` removes what `keras-tx train` writes, TRAINING_OUTPUTS, first).
    A run that stopped before its first backup holds nothing worth keeping: any command may start over there.

    Returns:
        "new" or "resume".
    """
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a directory: give a directory for the model.")
    entries = [e for e in os.listdir(out_dir) if not e.startswith(".")] if os.path.isdir(out_dir) else []
    if not entries or force:
        return "new"
    return _resumable(out_dir, signature)


def begin_run(out_dir, signature, state, command=None):
    """Record the run in `out_dir` (after `check_out_dir` said `state`), clearing an earlier run's files unless it
    resumes. Call it just before the run's first write, so that a run failing on its data leaves nothing behind."""
    if state != "resume" and os.path.isdir(out_dir):
        for name in TRAINING_OUTPUTS:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, RUN_FILE), {"command": command or command_line(), "signature": signature})


def _resumable(out_dir, signature):
    """"resume" if `out_dir` holds an unfinished run of the command `signature`, else a ValueError saying why not."""
    if os.path.exists(os.path.join(out_dir, MODEL_FILE)):
        try:
            with open(os.path.join(out_dir, METADATA_FILE)) as f:
                kind = json.load(f).get("kind", "unknown")
        except (OSError, ValueError):
            kind = "unknown"
        raise ValueError(f"{out_dir} holds a finished model (kind {kind}); choose another --out, or pass --force "
                         "to replace it.")
    try:
        with open(os.path.join(out_dir, RUN_FILE)) as f:
            recorded = json.load(f)["signature"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{out_dir} is not empty and holds no run of `keras-tx train`; choose another --out, or "
                         "pass --force to write into it.") from None
    if recorded != signature:
        if not os.path.exists(os.path.join(out_dir, "backup", "latest")):
            return "new"  # it stopped before its first backup: nothing to resume or to lose
        keys = sorted(set(recorded) | set(signature), key=lambda k: (k not in ("model", "steps", "epochs"), k))
        key = next(k for k in keys if recorded.get(k) != signature.get(k))
        flag = "the model" if key == "model" else "--" + key.replace("_", "-")
        raise ValueError(f"{out_dir} holds an unfinished run of another command ({flag} {recorded.get(key)!r} there, "
                         f"{signature.get(key)!r} here); rerun that command to resume it, or pass --force to start "
                         "over.")
    return "resume"


def finish_run(out_dir):
    """Once the model is saved: remove the run's backup and its run.json (the directory is a finished model)."""
    shutil.rmtree(os.path.join(out_dir, "backup"), ignore_errors=True)
    if os.path.exists(os.path.join(out_dir, RUN_FILE)):
        os.remove(os.path.join(out_dir, RUN_FILE))


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


def load_model(model_dir, kind=None, description=None, required_fields=()):
    """(model, metadata) from a model directory. Missing, truncated or foreign files give a one-line ValueError,
    and so does a model of another kind than `kind` (metadata.json's "kind"; `description` names it, "an image
    classifier"), when one is asked for, or metadata.json without one of `required_fields`."""
    metadata = read_metadata(model_dir)
    if kind is not None and metadata.get("kind") != kind:
        raise ValueError(f"{model_dir} holds a {metadata.get('kind', 'unknown')} model, not {description or kind}.")
    missing = [field for field in required_fields if field not in metadata]
    if missing:
        raise ValueError(f"{model_dir}/{METADATA_FILE} has no {missing[0]!r} field: the directory is damaged or "
                         "was not written by `keras-tx train`.")
    import keras_tx.models  # noqa: F401  registers our classes for deserialization

    path = os.path.join(model_dir, MODEL_FILE)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} could not be loaded: it is damaged or not a Keras model file (not a .keras zip "
                         "archive).")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # zip, h5 and config errors all mean the same thing to a user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} could not be loaded (damaged, or not a keras-tx model): {reason}")
    return model, metadata
