"""Image completion: image GPT (`ImageGPT`), a GPT over the k-means palette indices of downsampled pixels.

    keras-tx train igpt --data-dir fashion_mnist --out runs/igpt    # ImageCompletion.configs["igpt"]
    keras-tx complete runs/igpt shirt.png --out completions.png
    keras-tx evaluate runs/igpt

The model directory holds model.keras (the palette is part of the model's config) and metadata.json, whose
"image_shape" says what the images were. Evaluation is the test negative log-likelihood per pixel of the grid.
"""

import dataclasses
import os
import types

import numpy as np

from keras_tx import validation
from keras_tx.config import POSITIVE, StackConfig, TrainingConfig, default, flag, integer
from keras_tx.tasks.base import Task, chain_epochs, data_source, epochs_schedule, log_softmax_pick


@dataclasses.dataclass
class ImageGPTConfig(StackConfig, TrainingConfig):
    """`keras-tx train igpt`: a k-means palette, then a GPT over the raster palette indices of downsampled images."""

    model: str = "igpt"
    image_size: int = flag(None, "side of the token grid (default: half the images' side from 16 up: 28 -> 14, "
                                 "digits 16 -> 8)", integer(2))
    num_colors: int = flag(16, "k-means palette size", integer(2, 4096))
    intermediate_dim: int = flag(None, "default 4 * hidden-dim", POSITIVE)
    epochs: int = flag(10, None, POSITIVE)
    train_size: int = flag(None, "use only the first N training images", POSITIVE)
    test_size: int = flag(None, "use only the first N test images", POSITIVE)
    batch_size: int = default("batch_size", 64)
    steps: int = default("steps", None)
    eval_interval: int = default("eval_interval", None)


def image_gpt_data(source, **kwargs):
    """(train images, test images, split description) of an image source, labels dropped (iGPT needs none).

    A source with one split only (shared/datasets/mnist holds just the test set) is cut in its stored order:
    first 80% train, last 20% test, so that `evaluate` finds the same test images again.
    """
    from keras_tx.data.images import load_image_data

    data = load_image_data(source, **kwargs)
    if data.x_train is not None and data.x_test is not None and len(data.x_train) and len(data.x_test):
        return data.x_train, data.x_test, "the dataset's own train/test split"
    which = "train" if data.x_train is not None and len(data.x_train) else "test"
    images = data.x_train if which == "train" else data.x_test
    cut = int(0.8 * len(images))
    return images[:cut], images[cut:], f"its {which} split only: first 80% train, last 20% test"


def default_token_grid(image_shape):
    """The token grid for images of `image_shape`: half the side from 16 up (28 -> 14, digits' 16 -> 8), so that
    a sequence (h*w + 1 tokens) stays short enough for a CPU; smaller images keep their size."""
    height, width = image_shape[:2]
    grid = tuple(s // 2 if s >= 16 and s % 2 == 0 else s for s in (height, width))
    return grid[0] if grid[0] == grid[1] else grid


def check_output_file(path, force=False):
    """Raise ValueError unless `path` can be written: its folder exists, and it does not (or `force`)."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; --out takes a file name such as completions.png.")
    if os.path.lexists(path) and not force:
        raise ValueError(f"{path} exists; pass --force to overwrite it.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} does not exist (the folder of --out {path}).")


def write_png(pixels, path, force=False):
    """Write uint8 (H, W, C) pixels as a PNG at `path`, never replacing an existing file unless `force`.

    Written under a temporary name in the same folder, then moved into place (os.link refuses to replace an
    existing file, so a file that appeared meanwhile is kept too).
    """
    from PIL import Image

    check_output_file(path, force)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    try:
        image.save(tmp, format="PNG")
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        raise ValueError(f"{path} exists; pass --force to overwrite it.") from None
    except OSError as error:
        raise ValueError(f"Cannot write {path}: {error.strerror or error}.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class ImageCompletion(Task):
    """An image GPT: the top rows of an image in, completions of the rest out."""

    kind = "image_gpt"
    description = "an image GPT"
    configs = {"igpt": ImageGPTConfig}
    history_metrics = {"train_loss": "loss"}
    required_fields = ("image_shape",)

    def nll(self, images, batch_size=128):
        """Mean negative log-likelihood of `images`, in nats per pixel of the token grid.

        Each image is downsampled and quantized as in training; the sum of -log p(pixel | pixels before it) over all
        h*w pixels of all images, divided by their number. Divide by ln 2 for bits per pixel.
        """
        inputs, targets = self.model.training_pairs(images)  # (N, h*w) each
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            logits = self.model.predict_on_batch(inputs[start: start + batch_size])  # (b, T, V)
            total -= float(log_softmax_pick(logits, targets[start: start + batch_size]).sum())
        return total / targets.size

    def complete_file(self, path, keep_rows=None, num_samples=4, temperature=1.0, seed=None):
        """The completion grid of one image file: [given | top rows kept | completion 1 ... N], as uint8 (H, W, C).

        The file is read as the training images were (`load_image_file` at the training shape: any format, mode and
        size; a file that is not an image raises ValueError), then downsampled and quantized by the model. "Given"
        is the quantized image, "kept" its top `keep_rows` rows (default: half the grid) over grey, and each
        completion keeps those rows and samples the rest pixel by pixel. One grid pixel is drawn as a `scale` x
        `scale` block (scale = 96 // grid side, at least 1) and the tiles are one grid pixel apart, on white.
        """
        from keras_tx.data.images import load_image_file

        model = self.model
        validation.integer("num_samples", num_samples, 1, validation.MAX_SAMPLES)
        validation.number("temperature", temperature, 0.0, low_open=True)
        validation.seed(seed)
        grid_h, grid_w = model.grid_size
        keep_rows = grid_h // 2 if keep_rows is None else validation.integer("keep_rows", keep_rows, 0, grid_h)
        height, width, channels = self.metadata["image_shape"]
        image = load_image_file(path, (height, width), channels)  # (H, W, C) floats in [0, 1]
        completions = model.complete(image[None], keep_rows, num_samples, temperature=temperature, seed=seed)[0]
        given = model.dequantize_images(model.quantize_images(image[None]))[0]  # (h, w, C)
        kept = np.full_like(given, 0.5)
        kept[:keep_rows] = given[:keep_rows]
        tiles = [given, kept, *completions]
        scale = max(1, 96 // max(grid_h, grid_w))
        gap = np.ones((grid_h, 1, given.shape[-1]), "float32")  # one grid pixel of white between tiles
        row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)  # (h, n*(w+1)-1, C)
        row = np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)
        return np.round(np.clip(row, 0.0, 1.0) * 255).astype("uint8")

    def evaluate(self, dataset=None, text_file=None, data_dir=None, batches=200, batch_size=12):
        """Test NLL per pixel (nats and bits) on the test images of its dataset (or of the one given)."""
        source = data_dir or dataset or self.metadata["dataset"]
        _, x_test, _ = image_gpt_data(source)
        if source == self.metadata["dataset"] and self.metadata.get("test_size"):
            x_test = x_test[: self.metadata["test_size"]]  # the test images the training run reported on
        nats = self.nll(x_test)
        return {"model_dir": self.model_dir, "dataset": source, "test_images": int(len(x_test)),
                "test_nll_nats_per_pixel": round(nats, 4), "test_nll_bits_per_pixel": round(nats / np.log(2), 4)}

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def training_data(cls, config):
        from keras_tx.models import Palette
        from keras_tx.models.igpt import downsample

        source, kwargs = data_source(config, "digits")
        x_train, x_test, split = image_gpt_data(source, **kwargs)
        x_train = x_train[: config.train_size] if config.train_size else x_train
        x_test = x_test[: config.test_size] if config.test_size else x_test
        grid = config.image_size or default_token_grid(x_train.shape[1:3])
        height, width = (grid, grid) if np.ndim(grid) == 0 else grid
        # The palette clusters the pixels the model will read: those of the downsampled images.
        palette = Palette.fit(downsample(x_train, (height, width)), num_colors=config.num_colors,
                              seed=config.seed if config.seed is not None else 0)
        print(f"{source}: {len(x_train):,} training / {len(x_test):,} test images of shape {x_train.shape[1:]} -> "
              f"{height}x{width} tokens over a {palette.num_colors}-colour k-means palette ({split}).")
        return types.SimpleNamespace(source=source, x_train=x_train, x_test=x_test, split=split, grid=grid,
                                     grid_shape=(height, width), palette=palette)

    @classmethod
    def schedule(cls, config, data):
        return epochs_schedule(config, len(data.x_train), "images")

    @classmethod
    def build(cls, config, data):
        from keras_tx.models import ImageGPT

        return ImageGPT(data.palette, image_size=data.grid, num_layers=config.num_layers, num_heads=config.num_heads,
                        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim or 4 * config.hidden_dim,
                        dropout=config.dropout)

    @classmethod
    def validation_data(cls, config, data, model, seed):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(model.training_pairs(data.x_test)).batch(256)

    @classmethod
    def batches(cls, config, data, model, seed):
        """`start_step -> dataset` of (inputs, targets) next-pixel batches, each epoch reshuffled with its own seed."""
        import tensorflow as tf

        tokens = model.sequences(data.x_train)
        _, steps_per_epoch = cls.schedule(config, data)
        base = tf.data.Dataset.from_tensor_slices(tokens)  # one copy of the array, shared by every epoch
        chained = chain_epochs(
            lambda e: base.shuffle(len(tokens), seed=seed + e).batch(config.batch_size, drop_remainder=True),
            steps_per_epoch, config.epochs)
        return lambda start: chained(start).map(lambda t: (t[:, :-1], t[:, 1:])).prefetch(tf.data.AUTOTUNE)

    @classmethod
    def finish(cls, config, data, model, history, metrics):
        nats = cls(model).nll(data.x_test)
        height, width = data.grid_shape
        metrics.update(test_nll_nats_per_pixel=round(nats, 4), test_nll_bits_per_pixel=round(nats / np.log(2), 4))
        split = (data.split + (f", first {config.train_size} training images" if config.train_size else "")
                 + (f", first {config.test_size} test images" if config.test_size else ""))
        fields = {
            "dataset": data.source, "split": split,
            "test_size": config.test_size, "image_shape": list(data.x_train.shape[1:]), "token_grid": [height, width],
            "num_colors": data.palette.num_colors,
            "nll_unit": f"per pixel of the {height}x{width} token grid, each one of {data.palette.num_colors} palette "
                        "colours",
            "batch_size": config.batch_size,
        }
        summary = (f"test NLL {metrics['test_nll_nats_per_pixel']:.4f} nats = {metrics['test_nll_bits_per_pixel']:.4f}"
                   f" bits per pixel after {config.epochs} epochs")
        return fields, summary
