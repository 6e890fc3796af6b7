"""What the demo does that is not UI: finding model directories, reading images, attention for [MASK]s.

apps/demo.py draws the pages; everything here is plain Python over the tasks of `keras_tx.tasks`, so it can be
tested without Streamlit. Model directories live in a folder (the repo's saved_models/, or $KERAS_TX_MODELS, or
`keras-tx demo --models PATH...`, where each path is a folder of model directories or one model directory, such as
one `keras-tx import` wrote; several are joined by os.pathsep in $KERAS_TX_MODELS):

    gpt_shakespeare/        language_model    text generation
    bert_mlm/               masked_lm         masked prediction
    vit_fashion_mnist/      image_classifier  image classification (+ attention rollout)
    resnet_fashion_mnist/   image_classifier  image classification (the CNN baseline)
    igpt_*/                 image_gpt         image completion (optional)
    any name                translation       translation (optional; keras_tx.tasks.translation.Translator files)

Any other directory of one of these kinds can be picked in the sidebar. A missing one is not an error: the page
shows the command that makes it (the "command" of its metadata.json if one is left, else `DEFAULT_COMMANDS`).
"""

import json
import os
import time

import numpy as np

from keras_tx import artifacts, validation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS_DIR = os.path.join(REPO, "saved_models")
MODELS_ENV = "KERAS_TX_MODELS"

# The command that trains each expected model when its folder is missing ({out}: where it has to go): the Makefile's
# `saved-models` commands, run from the repo with the datasets of ../shared/datasets.
DATA = "../shared/datasets"
TRAINING_COMMANDS = {
    "gpt_shakespeare": (
        f"keras-tx train gpt --text-file {DATA}/tiny_shakespeare/input.txt --num-layers 4 --num-heads 4 "
        "--hidden-dim 256 --intermediate-dim 1024 --context 128 --batch-size 64 --steps 640 --eval-interval 80 "
        "--eval-batches 12 --dropout 0.0 --learning-rate 2e-3 --min-learning-rate 1e-4 --warmup-steps 80 "
        "--jit-compile on --out {out}"
    ),
    "bert_mlm": (
        f"keras-tx train bert --data-dir {DATA}/sst2 --pack --num-layers 4 --num-heads 4 --hidden-dim 128 "
        "--intermediate-dim 512 --sequence-length 64 --vocabulary-size 8000 --batch-size 128 --steps 1200 "
        "--eval-interval 100 --learning-rate 1e-3 --min-learning-rate 1e-4 --warmup-steps 120 --jit-compile on "
        "--out {out}"
    ),
    "vit_fashion_mnist": (
        f"keras-tx train vit --data-dir {DATA}/fashion_mnist --patch-size 7 --num-layers 6 --num-heads 4 "
        "--hidden-dim 128 --mlp-dim 256 --epochs 10 --flip --out {out}"
    ),
    "resnet_fashion_mnist": (
        f"keras-tx train resnet --data-dir {DATA}/fashion_mnist --width 16 --blocks-per-stage 2 2 2 2 --epochs 10 "
        "--flip --out {out}"
    ),
    "sentiment_sst2": (
        f"keras-tx train sentiment --data-dir {DATA}/sst2 --init-from saved_models/bert_mlm --sequence-length 48 "
        "--batch-size 32 --steps 1200 --eval-interval 300 --learning-rate 3e-4 --out {out}"
    ),
}
IMAGE_GPT_KINDS = ("image_gpt",)
TRANSLATION_KINDS = ("translation",)
TEXT_CLASSIFIER_KINDS = ("text_classifier",)
# The bounds every surface shares (keras_tx.validation): the widgets stop where the CLI and the exports stop.
MAX_NEW_TOKENS = validation.MAX_NEW_TOKENS
MAX_NUM_BEAMS = validation.MAX_NUM_BEAMS
MAX_UPLOAD_MB = validation.MAX_IMAGE_BYTES // 2**20
MAX_TEXT_CHARACTERS = validation.MAX_TEXT_CHARACTERS
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp"]


# ---------------------------------------------------------------------------------------------- model folders


def models_dir():
    """The folder(s) of model directories: $KERAS_TX_MODELS, else the repo's saved_models/."""
    return os.environ.get(MODELS_ENV) or DEFAULT_MODELS_DIR


def model_paths(folder):
    """{name: path} of the model directories `folder` lists: a folder of model directories, a model directory, or
    several of either joined by os.pathsep. A name met twice gets its parent folder added: "gpt2 (models)"."""
    found = {}
    for entry in folder.split(os.pathsep):
        if os.path.isfile(os.path.join(entry, artifacts.METADATA_FILE)):
            candidates = [entry]
        elif os.path.isdir(entry):
            candidates = [os.path.join(entry, name) for name in sorted(os.listdir(entry))]
        else:
            continue
        for path in candidates:
            name = os.path.basename(os.path.normpath(path))
            if name in found:
                name = f"{name} ({os.path.basename(os.path.dirname(os.path.abspath(path)))})"
            found.setdefault(name, path)
    return found


def model_path(folder, name):
    """The directory of the model called `name` in `folder` (where it would be, if it is not there yet)."""
    return model_paths(folder).get(name) or os.path.join(folder.split(os.pathsep)[0], name)


def list_models(folder):
    """{directory name: metadata} of every model directory in `folder` (one that cannot be read is left out)."""
    found = {}
    for name, path in model_paths(folder).items():
        try:
            found[name] = artifacts.read_metadata(path)
        except ValueError:
            continue
    return found


def models_of_kind(folder, kinds, preferred=None):
    """Names of the model directories of `kinds` in `folder`, `preferred` first when present."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    names = [name for name, metadata in list_models(folder).items() if metadata.get("kind") in kinds]
    if preferred in names:
        names.remove(preferred)
        names.insert(0, preferred)
    return names


def training_command(folder, name):
    """The command that makes `folder/name`: its leftover metadata.json's "command", else the documented default
    (None for a name the demo does not know)."""
    try:
        with open(os.path.join(model_path(folder, name), artifacts.METADATA_FILE)) as file:
            command = json.load(file).get("command")
        if command:
            return command
    except (OSError, ValueError):
        pass
    if name not in TRAINING_COMMANDS:
        return None
    out = os.path.join("saved_models", name) if folder == DEFAULT_MODELS_DIR else model_path(folder, name)
    return TRAINING_COMMANDS[name].format(out=out)


def model_version(folder, name):
    """Changes when the model file is rewritten: part of the cache key, so a retrained model is reloaded."""
    try:
        return os.path.getmtime(os.path.join(model_path(folder, name), artifacts.MODEL_FILE))
    except OSError:
        return None


def quality(metadata):
    """The measured numbers of a model, [(label, value)], for the sidebar."""
    labels = {
        "val_loss": "validation loss", "best_val_loss": "best validation loss", "test_accuracy": "test accuracy",
        "val_accuracy": "validation accuracy", "val_masked_accuracy": "masked-token accuracy (validation)",
        "accuracy": "accuracy", "perplexity": "perplexity", "bleu": "BLEU",
        "test_bleu_greedy": "test BLEU (greedy)", "test_bleu_beam4": "test BLEU (beam 4)",
        "test_nll_bits_per_pixel": "test NLL (bits per pixel)",
    }
    metrics = metadata.get("metrics") or {}
    return [(label, metrics[key]) for key, label in labels.items() if isinstance(metrics.get(key), (int, float))]


# ------------------------------------------------------------------------------------------- text generation


def sampling_arguments(sampler, temperature, top_k, top_p, num_beams, seed):
    """The keyword arguments of `generate` for one sampler (each sampler reads only its own setting)."""
    sampling = {"sampler": sampler, "seed": seed}
    if sampler != "greedy" and sampler != "beam":
        sampling["temperature"] = temperature
    if sampler == "top_k":
        sampling["top_k"] = top_k
    elif sampler == "top_p":
        sampling["top_p"] = top_p
    elif sampler == "beam":
        sampling["num_beams"] = num_beams
    return sampling


class Rate:
    """Tokens per second of a stream, also counted from the first piece on (so that compiling is timed apart)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first = None  # (time, tokens) when the first piece came
        self.count = 0

    def tick(self, count=1):
        self.count += count
        if self.first is None:
            self.first = (time.perf_counter(), self.count)

    def summary(self):
        end = time.perf_counter()
        if not self.count:
            return "No tokens were generated."
        total = end - self.start
        text = f"{self.count} tokens in {total:.2f} s: {self.count / total:.1f} tokens/s"
        first_time, first_count = self.first
        if self.count > first_count and end > first_time:
            text += (f" ({(self.count - first_count) / (end - first_time):.1f} tokens/s after the first, which came "
                     f"after {first_time - self.start:.2f} s, compilation included)")
        return text + "."


# ------------------------------------------------------------------------------------------- masked prediction


def fill_masks(task, text, top_k):
    """Everything the masked-prediction page shows, from the masked-LM task (`keras_tx.tasks.MaskedLM`).

    Returns:
        (candidates: one [(token, probability)] list per [MASK]; tokens: the input tokens, [CLS] ... [SEP];
        attention: one (num_heads, T, T) array per layer). Bad text raises fill_mask's ValueError.
    """
    candidates = task.fill_mask(text, top_k=top_k)  # validates: no [MASK], too many, too long
    ids, tokens = task.tokens(text)  # what fill_mask read
    inputs = {
        "token_ids": np.array([ids], "int32"),
        "segment_ids": np.zeros((1, len(ids)), "int32"),
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    attention = [scores[0] for scores in task.model.backbone.attention_scores(inputs)]  # (heads, T, T) per layer
    return candidates, tokens, attention


# --------------------------------------------------------------------------------------------------- images


def save_upload(upload, folder):
    """Write a Streamlit upload (name, bytes) to `folder` and return the path; too large raises ValueError."""
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_MB * 2**20:
        size = len(data) / 2**20
        raise ValueError(f"{upload.name} is {size:.0f} MB; the demo takes images up to {MAX_UPLOAD_MB} MB.")
    path = os.path.join(folder, "upload" + os.path.splitext(upload.name)[1].lower())
    with open(path, "wb") as file:
        file.write(data)
    return path


def save_array_image(image, folder, name="test.png"):
    """Write a uint8 (H, W, C) array as a PNG in `folder` and return its path."""
    from PIL import Image

    image = np.asarray(image)
    path = os.path.join(folder, name)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    return path


def describe_image(path, image_shape):
    """A note on what is done to fit an image to a model (None if it already fits), e.g. RGBA -> grey 28x28."""
    from PIL import Image

    with Image.open(path) as image:
        mode, (width, height), transparent = image.mode, image.size, "transparency" in image.info
    target_height, target_width, channels = image_shape
    changes = []
    if "A" in mode or transparent:
        changes.append(f"its transparency ({mode}) is flattened onto black")
    if channels == 1 and mode not in ("L", "1"):
        changes.append(f"its colours ({mode}) become grey")
    if channels == 3 and mode in ("L", "1", "I", "I;16", "F"):
        changes.append("its grey level is copied to red, green and blue")
    if (width, height) != (target_width, target_height):
        changes.append(f"it is padded to a square and resized from {width}x{height} to {target_width}x{target_height}")
    if not changes:
        return None
    kind = "grey" if channels == 1 else "RGB"
    return f"The models take {target_width}x{target_height} {kind} images: " + "; ".join(changes) + "."


def classify(classifiers, path, top_k=5):
    """{name: [(label, probability)]} of one image file by each image-classification task in `classifiers`."""
    return {name: task.classify_files([path], top_k=top_k)[0][1] for name, task in classifiers.items()}


def model_view(metadata, path, size=224):
    """The image as the models take it (float (H, W, C) in [0, 1]), and the same upscaled for display (uint8 RGB)."""
    from keras_tx.data.images import load_image_file

    height, width, channels = metadata["image_shape"]
    image = load_image_file(path, (height, width), channels)
    return image, _display(image, size)


def rollout_overlay(vit, image, size=224):
    """The ViT's attention rollout over `image` (float (H, W, C)), laid over it in red, as uint8 RGB for display."""
    from PIL import Image

    rollout = vit.attention_rollout(image[None])[0]  # (H/p, W/p)
    heat = (rollout - rollout.min()) / (rollout.max() - rollout.min() + 1e-12)
    heat = np.asarray(Image.fromarray(np.uint8(heat * 255)).resize((size, size), Image.BILINEAR), "float32") / 255
    alpha = 0.6 * heat[..., None]  # (size, size, 1): the more attended, the redder
    return np.uint8((1 - alpha) * _display(image, size) + alpha * np.array([255.0, 0.0, 0.0]))


def test_images(dataset):
    """(uint8 images, labels, class names) of a dataset's test split; ValueError if it is not available here."""
    from keras_tx.data.images import load_image_data

    if not os.path.exists(dataset) and os.path.exists(os.path.join(REPO, dataset)):
        dataset = os.path.join(REPO, dataset)  # a path as the training command saw it, from the repo
    data = load_image_data(dataset)
    if data.x_test is None:
        raise ValueError(f"{dataset} has no test split.")
    return data.x_test, data.y_test, data.class_names


# ----------------------------------------------------------------------------------------------- image GPT


def complete_image(model, image, keep_rows, num_samples, temperature, seed):
    """(the quantized input, its completions) as uint8 RGB arrays (h, w, 3), upscaled for display."""
    quantized = model.dequantize_images(model.quantize_images(image[None]))[0]  # (h, w, C) in [0, 1]
    completions = model.complete(image[None], keep_rows, num_samples=num_samples, temperature=temperature, seed=seed)
    return _display(quantized), [_display(c) for c in completions[0]]


def _display(image, size=140):
    """Float (h, w, C) in [0, 1] -> uint8 RGB (size, size, 3), pixels kept square (nearest neighbour)."""
    from PIL import Image

    image = np.asarray(image, "float32")
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    return np.asarray(Image.fromarray(np.uint8(np.clip(image, 0, 1) * 255)).resize((size, size), Image.NEAREST))
