"""`keras-tx import`: a keras-hub preset -> an ordinary keras-tx model directory.

    keras-tx import hf://openai-community/gpt2 --out models/gpt2              # TextGeneration (GPT-2, BPE)
    keras-tx import kaggle://keras/bert/keras/bert_base_en_uncased --out models/bert   # MaskedLM (WordPiece)
    keras-tx import hf://google/vit-base-patch16-224 --out models/vit --labels imagenet_labels.txt

A handle is anything `keras_hub.models.Backbone.from_preset` accepts: a Kaggle handle (`kaggle://...`), a Hugging
Face one that keras-hub converts (`hf://...`), or a local preset directory (`save_to_preset`). The first use of a
remote handle downloads it into keras-hub's cache (~/.cache/kagglehub, ~/.cache/huggingface); later ones read the
cache. The backbone's class decides the task (`IMPORTS`), and the task's `from_keras_hub` hook copies the weights
into our model and the preset's tokenizer or image converter into its preprocessing. The directory is written
beside `out` and renamed into place, so a failed import leaves nothing behind; `out` must be new or empty.
"""

import os
import shutil

from keras_tx import validation
from keras_tx.tasks.image_classification import ImageClassification
from keras_tx.tasks.masked_lm import MaskedLM
from keras_tx.tasks.text_generation import TextGeneration

# keras-hub backbone class -> (the task it becomes, what users call it)
IMPORTS = {
    "GPT2Backbone": (TextGeneration, "GPT-2"),
    "BertBackbone": (MaskedLM, "BERT"),
    "ViTBackbone": (ImageClassification, "ViT"),
}


def load_backbone(handle):
    """keras-hub's backbone of a preset, in float32; any failure (a wrong handle, no network, not a preset) is one
    ValueError sentence."""
    import keras_hub

    if not isinstance(handle, str) or not handle.strip():
        raise ValueError("The preset handle is empty: give a kaggle://, hf:// handle or a preset directory.")
    remote = "://" in handle or handle in keras_hub.models.Backbone.presets  # a keras-hub name: on Kaggle
    if not remote and not os.path.isdir(handle):
        raise ValueError(f"{handle} is neither a preset directory (keras-hub's save_to_preset writes one), a "
                         "kaggle:// or hf:// handle, nor a keras-hub preset name such as gpt2_base_en.")
    try:
        return keras_hub.models.Backbone.from_preset(handle, dtype="float32")
    except Exception as error:  # keras-hub, kagglehub, huggingface_hub and requests each raise their own
        hint = " (a remote handle is downloaded once, which needs the network)" if remote else ""
        raise ValueError(f"Could not load the keras-hub preset {handle}{hint}: {validation.one_line(error)}") from None


def read_labels(path):
    """Class names from a text file, one per line (blank lines and surrounding spaces dropped)."""
    try:
        with open(path, encoding="utf-8") as file:
            names = [line.strip() for line in file if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--labels {path}: {validation.one_line(error).rstrip('.')}.") from None
    if not names:
        raise ValueError(f"--labels {path} has no class names (one per line).")
    return names


def import_preset(handle, out, labels=None, command=None):
    """Write the keras-tx model directory `out` of a keras-hub preset. Returns its metadata.

    Args:
        handle: a kaggle:// or hf:// handle, or a local preset directory.
        out: the model directory to write: new, or an empty directory.
        labels: image classifiers only: a file of class names, one per line (default: the class index).
        command: the command to record in metadata.json.
    """
    from keras_tx import export

    export.check_out_dir(out)  # before anything is downloaded: nothing a user made is overwritten
    names = read_labels(labels) if labels else None
    backbone = load_backbone(handle)
    kind = type(backbone).__name__
    if kind not in IMPORTS:
        known = ", ".join(f"{name} ({cls})" for cls, (_, name) in IMPORTS.items())
        raise ValueError(f"{handle} is a {kind}; keras-tx imports {known} presets.")
    task_class, name = IMPORTS[kind]
    if names is not None and task_class is not ImageClassification:
        raise ValueError(f"--labels names the classes of an image classifier; {handle} is {name}.")
    task = task_class.from_keras_hub(handle, backbone, **({"labels": names} if task_class is ImageClassification
                                                          else {}))
    task.metadata["preset"] = handle
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    partial = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.import-{os.getpid()}")
    try:
        metadata = task.save(partial, command=command)
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return metadata
