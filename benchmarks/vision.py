"""The vision numbers of the issue: ViT vs ResNet on Fashion-MNIST, both against training-set size, and image GPT.

Commands (each part alone, or all three in one process):
    python benchmarks/vision.py compare   # 1. ViT and ResNet of similar size, same epochs and augmentation
    python benchmarks/vision.py sizes     # 2. the same two models on 1k, 10k and 60k training images
    python benchmarks/vision.py igpt      # 3. image GPT: test NLL per pixel, completions PNG, linear probe
    python benchmarks/vision.py all       # 1 + 2 + 3 (2 reuses 1's full-data runs)

Presets: the defaults are meant for a CPU hour (small models, few epochs, each run capped at 10 minutes);
`--gpu` sizes everything for about 2.5 minutes of one H100 under JAX in bfloat16; `--tiny` is a smoke test.
Any flag given explicitly overrides the preset. `--time-budget SECONDS` caps each training run: the cosine
learning-rate schedule is shortened to the epochs that fit (estimated from the speed of the epochs after the
first, which also compiles) and training stops there, so a capped run still ends annealed; the tables say
how many epochs each run did. Image GPT's "epochs" are chunks of --igpt-steps-per-epoch steps, so that its
budget (--igpt-time-budget) can stop it in the middle of a pass over the data.

Backend-agnostic: numpy arrays in (the IDX files are read here with gzip + numpy), `model.fit` on a
`keras.utils.PyDataset` of full batches, augmentation (random shifts of up to 3 pixels and horizontal flips) as
a Keras layer on keras.ops inside the compiled step. Nothing on this path imports tensorflow, so it runs with
KERAS_BACKEND=jax on a machine without it. Each model is compiled once: the runs on 1k / 10k / 60k images reset
its weights and optimizer state and reuse the compiled step (every batch has the same shape, the learning rate
is a variable set once per epoch).

Prints markdown tables; writes vision_results.json, vision_results.md and igpt_completions.png to --out-dir.
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks.harness import markdown_table  # noqa: E402

# Explicit flags override these. "cpu" is the default: about an hour on a 2-core CPU for all three parts.
PRESETS = {
    "cpu": dict(
        epochs=5, batch_size=128, vit_dim=64, vit_layers=4, vit_heads=4, vit_mlp=128, resnet_width=8,
        resnet_blocks=[1, 1, 1, 1], min_steps=0, time_budget=600.0, igpt_epochs=2, igpt_layers=2, igpt_dim=64,
        igpt_heads=2, igpt_batch_size=64, igpt_train_size=20000, probe_train_size=5000, test_size=None,
        mixed_precision="float32",
    ),
    # One H100, JAX, bf16. Measured alone on an H100 (2026-11-26, before the image-GPT cap): parts 1 + 2 in 87 s
    # (about 15 s of it compiling each model, then ~3 ms a step), ResNet 93.49% / ViT 86.85% after 30 epochs;
    # image GPT ran at ~170 ms a step on real tokens (19 ms on uniform random ones), hence its 30 s cap.
    "gpu": dict(
        epochs=30, batch_size=256, vit_dim=128, vit_layers=6, vit_heads=4, vit_mlp=256, resnet_width=16,
        resnet_blocks=[2, 2, 2, 2], min_steps=1000, time_budget=40.0, igpt_epochs=5, igpt_layers=4, igpt_dim=128,
        igpt_heads=4, igpt_batch_size=128, igpt_train_size=None, probe_train_size=5000, test_size=None,
        mixed_precision="bfloat16", igpt_time_budget=30.0,
    ),
    "tiny": dict(
        epochs=2, batch_size=32, vit_dim=16, vit_layers=1, vit_heads=2, vit_mlp=32, resnet_width=4,
        resnet_blocks=[1, 1], min_steps=0, time_budget=60.0, igpt_epochs=1, igpt_layers=1, igpt_dim=16,
        igpt_heads=2, igpt_batch_size=32, igpt_train_size=256, probe_train_size=128, test_size=128,
        mixed_precision="float32", train_size=256, sizes=[64, 256], num_completions=2, completion_samples=2,
    ),
}
DEFAULT_DATA = [os.path.join(ROOT, ".data", "fashion_mnist"), os.path.join(ROOT, "..", "shared", "datasets",
                                                                         "fashion_mnist")]


# ----------------------------------------------------------------------------------------------------- data


def environment():
    """Machine, versions and accelerator in one line (harness.environment imports keras_hub, which imports
    tensorflow: not here)."""
    import platform

    parts = [platform.machine(), f"Python {platform.python_version()}", f"Keras {keras.__version__}",
             f"backend {keras.backend.backend()}"]
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        parts.append(f"JAX {jax.__version__} on {getattr(device, 'device_kind', device.platform)}")
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts.append(f"TF {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU(s)")
    return ", ".join(parts)


def read_idx(path):
    """One (gzipped) IDX file as a numpy array: the MNIST format, read without tensorflow or keras_tx.data."""
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file.")
    shape = struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(shape)


def load_idx_dir(directory):
    """(x_train, y_train, x_test, y_test) of an IDX folder, images uint8 (N, 28, 28, 1); a missing split is None."""
    arrays = []
    for prefix in ("train", "t10k"):
        paths = [os.path.join(directory, f"{prefix}-{kind}-ubyte.gz") for kind in ("images-idx3", "labels-idx1")]
        if all(os.path.exists(p) for p in paths):
            arrays += [read_idx(paths[0])[..., None], read_idx(paths[1]).astype("int32")]
        else:
            arrays += [None, None]
    if arrays[0] is None and arrays[2] is None:
        raise SystemExit(f"error: {directory} holds no IDX files (train-images-idx3-ubyte.gz, ...); pass --data-dir.")
    return arrays


# ------------------------------------------------------------------------------------------- training parts


class Batches(keras.utils.PyDataset):
    """Full batches of `arrays` (same first axis), in a new seeded order on every pass over the data.

    The last partial batch of a pass is dropped, so every step has one shape and the step compiles once.
    `steps_per_epoch` (default: one pass) cuts the stream into shorter Keras epochs, so that a long pass can
    still be stopped by the time budget and its learning rate set more often.
    """

    def __init__(self, arrays, batch_size, seed, steps_per_epoch=None):
        super().__init__()
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.steps_per_pass = len(arrays[0]) // batch_size
        self.steps_per_epoch = steps_per_epoch or self.steps_per_pass
        self.epoch, self.orders = 0, {}

    def __len__(self):
        return self.steps_per_epoch

    def __getitem__(self, index):
        data_pass, step = divmod(self.epoch * self.steps_per_epoch + index, self.steps_per_pass)
        if data_pass not in self.orders:
            self.orders = {data_pass: np.random.default_rng([self.seed, data_pass]).permutation(len(self.arrays[0]))}
        rows = np.sort(self.orders[data_pass][step * self.batch_size : (step + 1) * self.batch_size])
        return tuple(a[rows] for a in self.arrays)

    def on_epoch_end(self):
        self.epoch += 1


class RandomShiftFlip(keras.layers.Layer):
    """Training-time augmentation on any backend: shift each image by up to `max_shift` pixels (zero padding) and
    mirror it left-right with probability 1/2 (`flip`). Identity at inference.

    Each image's shift and flip are one-hot selection matrices, rows (B, H, H + 2s) and columns (B, W, W + 2s),
    applied with two einsums to the padded batch: a per-image crop written as matrix products, which every
    backend compiles (no per-image dynamic slicing).
    """

    def __init__(self, max_shift=3, flip=True, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # exact 0/1 selection, whatever the global policy
        super().__init__(**kwargs)
        self.max_shift, self.flip = max_shift, flip
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        s = self.max_shift
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        padded = ops.pad(images, [[0, 0], [s, s], [s, s], [0, 0]])  # (B, H + 2s, W + 2s, C)
        dy = keras.random.randint((batch, 1), 0, 2 * s + 1, seed=self.seed_generator)
        dx = keras.random.randint((batch, 1), 0, 2 * s + 1, seed=self.seed_generator)
        rows = dy + ops.arange(height)[None]  # (B, H): padded row read by each output row
        columns = ops.arange(width)[None]
        if self.flip:
            mirror = keras.random.uniform((batch, 1), seed=self.seed_generator) < 0.5
            columns = ops.where(mirror, width - 1 - columns, columns)
        columns = dx + columns  # (B, W)
        pick_rows = ops.one_hot(rows, height + 2 * s, dtype=images.dtype)  # (B, H, H + 2s)
        pick_columns = ops.one_hot(columns, width + 2 * s, dtype=images.dtype)  # (B, W, W + 2s)
        x = ops.einsum("bip,bpqc->biqc", pick_rows, padded)  # (B, H, W + 2s, C)
        return ops.einsum("bjq,biqc->bijc", pick_columns, x)  # (B, H, W, C)

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "flip": self.flip}


class BudgetedCosine(keras.callbacks.Callback):
    """Learning rate set once per epoch: linear warm-up, then cosine down to `min_lr` over the epochs that fit.

    Without `time_budget` the cosine spans `epochs`. With it, after every epoch the callback predicts from the
    speed of the epochs after the first (which includes compiling) how many epochs fit in the budget, shortens the
    cosine to end there and stops training when the next epoch would not finish in time. The rate is a variable
    of the optimizer, so changing it never recompiles the step. `epochs_done` and `seconds` tell what happened.
    """

    def __init__(self, learning_rate, min_learning_rate, epochs, warmup_epochs, time_budget=None):
        super().__init__()
        self.peak, self.floor, self.planned = learning_rate, min_learning_rate, epochs
        self.warmup, self.time_budget = warmup_epochs, time_budget

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.horizon, self.epochs_done, self.epoch_seconds = self.planned, 0, []
        self.first_step_seconds = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_seconds is None:  # tracing and compiling block; the steps after run asynchronously
            self.first_step_seconds = time.perf_counter() - self.start

    def rate(self, epoch):
        if epoch < self.warmup:
            return self.peak * (epoch + 1) / (self.warmup + 1)
        progress = (epoch - self.warmup) / max(self.horizon - self.warmup - 1, 1)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * min(progress, 1.0)))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epoch_seconds.append(now - self.epoch_start)
        self.epochs_done = epoch + 1
        self.seconds = now - self.start
        if self.time_budget is None:
            return
        if len(self.epoch_seconds) == 1:  # the first epoch also compiled: it says nothing about the speed
            self.model.stop_training = self.seconds >= self.time_budget
            return
        typical = float(np.median(self.epoch_seconds[1:]))
        fit = self.epochs_done + int((self.time_budget - self.seconds) // typical)
        self.horizon = max(min(self.planned, fit), self.epochs_done)
        if self.epochs_done >= self.horizon:
            self.model.stop_training = True


def make_optimizer(args, learning_rate):
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=args.weight_decay, beta_1=0.9, beta_2=0.999, global_clipnorm=1.0
    )
    return optimizer


def reset(model, initial_weights):
    """Back to the freshly initialized model with a fresh optimizer state, keeping the compiled step."""
    model.set_weights(initial_weights)
    for variable in model.optimizer.variables:
        variable.assign(ops.zeros(variable.shape, variable.dtype))


def train(model, arrays, args, epochs, learning_rate, batch_size, seed, steps_per_epoch=None, time_budget=None):
    """Fit on `arrays` (inputs, targets) for `epochs` (or what fits in the time budget). Returns a record."""
    time_budget = time_budget or args.time_budget
    schedule = BudgetedCosine(learning_rate, learning_rate * 0.01, epochs, max(1, round(args.warmup * epochs)),
                              time_budget)
    batches = Batches(arrays, batch_size, seed, steps_per_epoch)
    model.fit(batches, epochs=epochs, callbacks=[schedule], verbose=args.verbose)
    times = schedule.epoch_seconds
    return {
        "epochs_planned": epochs,
        "epochs_done": schedule.epochs_done,
        "steps": schedule.epochs_done * len(batches),
        "seconds": round(schedule.seconds, 2),
        "first_epoch_seconds": round(times[0], 2),
        "first_step_seconds": round(schedule.first_step_seconds, 2),
        "epoch_seconds": round(float(np.median(times[1:] or times)), 3),
        "stopped_by_time_budget": schedule.epochs_done < epochs,
        "passes": round(schedule.epochs_done * len(batches) / batches.steps_per_pass, 2),
    }


def predict(model, x, batch_size):
    """model.predict in batches of one shape: the test set is padded to a multiple of `batch_size`."""
    padding = -len(x) % batch_size
    padded = np.concatenate([x, np.zeros((padding, *x.shape[1:]), x.dtype)]) if padding else x
    return np.asarray(model.predict(padded, batch_size=batch_size, verbose=0), "float32")[: len(x)]


# ------------------------------------------------------------------------------------- 1 and 2: classifiers


def build_classifier(name, args, image_shape, num_classes):
    """(training model: uint8 images -> augmentation -> network -> logits, network alone), compiled."""
    from keras_tx.models import ResNet, ViT
    from keras_tx.training import exclude_non_matrices

    if name == "vit":
        network = ViT(image_shape[:2], args.vit_patch, args.vit_layers, args.vit_heads, args.vit_dim, args.vit_mlp,
                      num_classes, dropout=args.dropout, num_channels=image_shape[2])
    else:
        network = ResNet(image_shape, num_classes, width=args.resnet_width, blocks_per_stage=args.resnet_blocks,
                         dropout=args.dropout)
    images = keras.Input(image_shape, dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, dtype="float32")(images)  # uint8 batches: a quarter of the transfer
    x = RandomShiftFlip(max_shift=3, flip=True, seed=args.seed)(x)
    model = keras.Model(images, network(x), name=f"{name}_with_augmentation")
    model.compile(
        optimizer=make_optimizer(args, args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit_compile,
    )
    exclude_non_matrices(model.optimizer, model)  # before the optimizer is built
    model.optimizer.build(model.trainable_variables)
    return model, network


def run_classifiers(args, data, sizes, results, models):
    """Train ResNet and ViT on the first `size` images of a fixed permutation of the training set, each size.

    `models` keeps each compiled model with its initial weights, for the next call to reuse.
    """
    x_train, y_train, x_test, y_test = data
    order = np.random.default_rng(args.seed).permutation(len(x_train))  # nested subsets, the same for both models
    for name in ("resnet", "vit"):
        for size in sizes:
            key = f"{name}/{size}"
            if key in results:
                continue
            if name not in models:
                keras.utils.set_random_seed(args.seed)
                model, network = build_classifier(name, args, x_train.shape[1:], int(y_train.max()) + 1)
                models[name] = (model, network, model.get_weights())
            model, network, initial = models[name]
            reset(model, initial)
            steps_per_epoch = size // args.batch_size
            epochs = max(args.epochs, math.ceil(args.min_steps / max(steps_per_epoch, 1)))
            subset = order[:size]
            record = train(model, (x_train[subset], y_train[subset]), args, epochs, args.learning_rate,
                           args.batch_size, args.seed)
            logits = predict(model, x_test, args.eval_batch_size)
            record.update(model=name, train_images=size, parameters=int(network.count_params()),
                          test_accuracy=round(float(np.mean(logits.argmax(-1) == y_test)), 4))
            results[key] = record
            print(f"{name} on {size:,} images: test accuracy {record['test_accuracy']:.4f} after "
                  f"{record['epochs_done']}/{epochs} epochs ({record['steps']} steps, {record['seconds']} s, "
                  f"first step {record['first_step_seconds']} s, first epoch {record['first_epoch_seconds']} s, "
                  f"then {record['epoch_seconds']} s/epoch)",
                  flush=True)


def compare_table(results, full):
    goals = {"resnet": 0.93, "vit": 0.91}
    names = {"resnet": "ResNet", "vit": "ViT"}
    rows = []
    for name in ("resnet", "vit"):
        r = results.get(f"{name}/{full}")
        if r:
            met = "met" if r["test_accuracy"] >= goals[name] else "not met"
            rows.append([names[name], f"{r['parameters']:,}", f"{r['epochs_done']}/{r['epochs_planned']}", r["steps"],
                         r["seconds"], r["epoch_seconds"], f"**{100 * r['test_accuracy']:.2f}%**",
                         f">= {100 * goals[name]:.0f}% ({met})"])
    return markdown_table(["model", "parameters", "epochs done/planned", "steps", "train s", "s/epoch",
                           "test accuracy", "goal"], rows)


def sizes_table(results, sizes):
    rows = []
    for size in sizes:
        r, v = results.get(f"resnet/{size}"), results.get(f"vit/{size}")
        if r and v:
            rows.append([f"{size:,}", f"{100 * r['test_accuracy']:.2f}%", f"{100 * v['test_accuracy']:.2f}%",
                         f"{100 * (r['test_accuracy'] - v['test_accuracy']):+.2f}",
                         f"{r['epochs_done']} ({r['steps']})", f"{v['epochs_done']} ({v['steps']})"])
    return markdown_table(["training images", "ResNet", "ViT", "ResNet - ViT (points)", "ResNet epochs (steps)",
                           "ViT epochs (steps)"], rows)


# --------------------------------------------------------------------------------------------- 3: image GPT


def image_gpt_nll(model, images, batch_size):
    """Mean -log p(pixel | pixels before it) over every pixel of the token grid, in nats."""
    inputs, targets = model.training_pairs(images)  # (N, h*w) each
    logits = predict(model, inputs, batch_size).astype("float64")  # (N, T, V)
    logits -= logits.max(axis=-1, keepdims=True)
    log_normalizer = np.log(np.exp(logits).sum(axis=-1))
    picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return float((log_normalizer - picked).mean())


def completion_grid(given, completions, keep_rows, scale=4):
    """uint8 grid: one row per image, columns [given | kept rows over grey | completions], white gaps."""
    count, height, width, channels = given.shape
    gap = np.ones((height, 1, channels), "float32")
    rows = []
    for i in range(count):
        kept = np.full_like(given[i], 0.5)
        kept[:keep_rows] = given[i, :keep_rows]
        tiles = [given[i], kept, *completions[i]]
        row = np.concatenate([p for tile in tiles for p in (tile, gap)][:-1], axis=1)
        rows += [row, np.ones((1, row.shape[1], channels), "float32")]
    grid = np.concatenate(rows[:-1], axis=0)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return np.round(np.clip(grid, 0, 1) * 255).astype("uint8")


def run_image_gpt(args, data, results):
    """Train an image GPT, then: test NLL per pixel, a completions PNG, a linear probe on its middle block."""
    import types

    from keras_tx.models import ImageGPT, Palette
    from keras_tx.training import exclude_non_matrices

    x_train, y_train, x_test, y_test = data
    if args.igpt_attention == "xla":
        force_xla_attention()
    if x_train is None:  # MNIST as shipped here: the test set only; train on its first 80%
        cut = int(0.8 * len(x_test))
        x_train, y_train, x_test, y_test = x_test[:cut], y_test[:cut], x_test[cut:], y_test[cut:]
    if args.igpt_train_size:
        x_train, y_train = x_train[: args.igpt_train_size], y_train[: args.igpt_train_size]
    keras.utils.set_random_seed(args.seed)
    grid = args.igpt_grid
    start = time.perf_counter()
    # The palette clusters the pixels the model reads: those of the downsampled images (downsample only needs
    # the grid, so it runs before the model exists).
    small = ImageGPT.downsample(types.SimpleNamespace(grid_size=(grid, grid)), x_train)
    palette = Palette.fit(small, num_colors=args.igpt_colors, seed=args.seed)
    model = ImageGPT(palette, grid, args.igpt_layers, args.igpt_heads, args.igpt_dim, 4 * args.igpt_dim,
                     dropout=args.igpt_dropout)
    tokens = model.sequences(x_train)  # (N, 1 + h*w)
    prep_seconds = time.perf_counter() - start
    model.compile(optimizer=make_optimizer(args, args.igpt_learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=args.jit_compile)
    exclude_non_matrices(model.optimizer, model)
    model.optimizer.build(model.trainable_variables)
    print(f"igpt: {model.count_params():,} parameters, {grid}x{grid} grid ({1 + grid * grid} tokens), "
          f"{palette.num_colors} colours, {len(x_train):,} training images (palette + tokens {prep_seconds:.1f} s)",
          flush=True)
    # "Epochs" of --igpt-steps-per-epoch steps: a pass over 60k images is long, and the time budget stops
    # training only between epochs.
    steps_per_pass = len(tokens) // args.igpt_batch_size
    chunk = min(args.igpt_steps_per_epoch or steps_per_pass, steps_per_pass)
    record = train(model, (tokens[:, :-1], tokens[:, 1:]), args, math.ceil(args.igpt_epochs * steps_per_pass / chunk),
                   args.igpt_learning_rate, args.igpt_batch_size, args.seed, chunk, args.igpt_time_budget)

    start = time.perf_counter()
    nats = image_gpt_nll(model, x_test, args.eval_batch_size)
    nll_seconds = time.perf_counter() - start

    start = time.perf_counter()
    keep_rows = grid // 2
    shown = x_test[: args.num_completions]
    completions = model.complete(shown, keep_rows, args.completion_samples, temperature=1.0, seed=args.seed)
    given = model.dequantize_images(model.quantize_images(shown))
    kept = completions[:, :, :keep_rows]  # (images, samples, keep_rows, w, C): must be the given rows
    assert np.array_equal(kept, np.broadcast_to(given[:, None, :keep_rows], kept.shape))
    png = os.path.join(args.out_dir, "igpt_completions.png")
    from PIL import Image

    pixels = completion_grid(given, completions, keep_rows)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(png)
    completion_seconds = time.perf_counter() - start

    start = time.perf_counter()
    probe_train = slice(0, args.probe_train_size)
    layer = max(1, model.num_layers // 2)
    train_features = model.linear_probe_features(x_train[probe_train], layer=layer, batch_size=args.probe_batch_size)
    test_features = model.linear_probe_features(x_test, layer=layer, batch_size=args.probe_batch_size)
    probe_accuracy = logistic_regression_accuracy(train_features, y_train[probe_train], test_features, y_test)
    probe_seconds = time.perf_counter() - start

    record.update(
        parameters=int(model.count_params()), grid=grid, colors=palette.num_colors, train_images=len(x_train),
        test_images=len(x_test), test_nll_nats_per_pixel=round(nats, 4),
        test_nll_bits_per_pixel=round(nats / math.log(2), 4), completions_png=png, keep_rows=keep_rows,
        probe_layer=layer, probe_train_images=len(train_features), probe_test_accuracy=round(probe_accuracy, 4),
        seconds_nll=round(nll_seconds, 2), seconds_completions=round(completion_seconds, 2),
        seconds_probe=round(probe_seconds, 2),
    )
    results["igpt"] = record
    print(f"igpt: first step {record['first_step_seconds']} s, first epoch {record['first_epoch_seconds']} s, then "
          f"{record['epoch_seconds']} s/epoch; NLL {nll_seconds:.1f} s, completions {completion_seconds:.1f} s, "
          f"probe {probe_seconds:.1f} s", flush=True)
    print(f"igpt: test NLL {nats:.4f} nats = {nats / math.log(2):.4f} bits per pixel after {record['steps']} steps "
          f"({record['passes']} passes, {record['seconds']} s); linear probe (block {layer}) {probe_accuracy:.4f}; "
          f"wrote {png}",
          flush=True)


def force_xla_attention():
    """Make every `keras.ops.dot_product_attention` call use the XLA (einsum + softmax) path, not cuDNN's fused
    kernel, which Keras picks by itself on a GPU when the shapes allow it (a workaround for this benchmark: the
    layers of keras_tx call keras.ops.dot_product_attention with flash_attention=None)."""
    fused = ops.dot_product_attention

    def xla_attention(*args, **kwargs):
        return fused(*args, **{**kwargs, "flash_attention": False})

    keras.ops.dot_product_attention = xla_attention


def logistic_regression_accuracy(x_train, y_train, x_test, y_test):
    """Test accuracy of a multinomial logistic regression on standardized features (scikit-learn, L-BFGS)."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    classifier = LogisticRegression(max_iter=1000, C=1.0)
    classifier.fit((x_train - mean) / std, y_train)
    return float(classifier.score((x_test - mean) / std, y_test))


def igpt_table(r):
    rows = [
        ["parameters", f"{r['parameters']:,} ({r['grid']}x{r['grid']} grid, {r['colors']} colours)"],
        ["training", f"{r['train_images']:,} images, {r['steps']:,} steps = {r['passes']} passes "
                     f"({r['epochs_done']}/{r['epochs_planned']} epochs of "
                     f"{r['steps'] // max(r['epochs_done'], 1)} steps"
                     f"{', stopped by the time budget' if r['stopped_by_time_budget'] else ''}), {r['seconds']} s"],
        ["test NLL per pixel", f"**{r['test_nll_nats_per_pixel']:.4f} nats = {r['test_nll_bits_per_pixel']:.4f} bits** "
                               f"({r['test_images']:,} test images)"],
        ["linear probe accuracy", f"**{100 * r['probe_test_accuracy']:.2f}%** (block {r['probe_layer']}, mean-pooled, "
                                  f"logistic regression on {r['probe_train_images']:,} training images)"],
        ["completions", f"{r['completions_png']} (top {r['keep_rows']} rows given)"],
    ]
    return markdown_table(["image GPT", "value"], rows)


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=("all", "compare", "sizes", "igpt"))
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--gpu", action="store_true", help="the one-H100 preset (JAX, bf16, about 2 minutes)")
    preset.add_argument("--tiny", action="store_true", help="a smoke test of seconds")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: .data/fashion_mnist or "
                                           "../shared/datasets/fashion_mnist)")
    parser.add_argument("--igpt-data-dir", help="IDX folder for image GPT (default: --data-dir; MNIST's test-only "
                                                "folder works: its first 80%% train)")
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "runs", "vision_benchmark"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument("--time-budget", type=float, help="seconds per training run (0: none)")
    parser.add_argument("--mixed-precision", choices=("float32", "bfloat16"))
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="on")
    parser.add_argument("--train-size", type=int, help="training images of part 1 (default: all)")
    parser.add_argument("--test-size", type=int, help="test images (default: all)")
    parser.add_argument("--eval-batch-size", type=int, default=500)
    cls = parser.add_argument_group("parts 1 and 2: ViT and ResNet")
    cls.add_argument("--epochs", type=int)
    cls.add_argument("--batch-size", type=int)
    cls.add_argument("--learning-rate", type=float, default=1e-3)
    cls.add_argument("--weight-decay", type=float, default=0.05)
    cls.add_argument("--warmup", type=float, default=0.05, help="share of the epochs spent warming up")
    cls.add_argument("--dropout", type=float, default=0.1)
    cls.add_argument("--vit-patch", type=int, default=4)
    cls.add_argument("--vit-layers", type=int)
    cls.add_argument("--vit-heads", type=int)
    cls.add_argument("--vit-dim", type=int)
    cls.add_argument("--vit-mlp", type=int)
    cls.add_argument("--resnet-width", type=int)
    cls.add_argument("--resnet-blocks", type=int, nargs="+")
    cls.add_argument("--sizes", type=int, nargs="+", help="part 2's training-set sizes (default 1000 10000 all)")
    cls.add_argument("--min-steps", type=int, help="part 2: a small set trains for at least this many steps")
    gpt = parser.add_argument_group("part 3: image GPT")
    gpt.add_argument("--igpt-grid", type=int, default=14, help="token grid side (28x28 -> 14x14 = 196 pixels)")
    gpt.add_argument("--igpt-colors", type=int, default=16)
    gpt.add_argument("--igpt-layers", type=int)
    gpt.add_argument("--igpt-heads", type=int)
    gpt.add_argument("--igpt-dim", type=int)
    gpt.add_argument("--igpt-dropout", type=float, default=0.0)
    gpt.add_argument("--igpt-epochs", type=int, help="passes over the training images")
    gpt.add_argument("--igpt-steps-per-epoch", type=int, default=50, help="steps between learning-rate updates "
                     "and time-budget checks (0: a whole pass)")
    gpt.add_argument("--igpt-time-budget", type=float, help="seconds for image GPT's training (default: --time-budget)")
    gpt.add_argument("--igpt-batch-size", type=int)
    gpt.add_argument("--igpt-learning-rate", type=float, default=1e-3)
    gpt.add_argument("--igpt-train-size", type=int)
    gpt.add_argument("--probe-train-size", type=int)
    gpt.add_argument("--probe-batch-size", type=int, default=1000, help="images per (eager) feature pass")
    gpt.add_argument("--igpt-attention", choices=("auto", "xla"), default="auto",
                     help="xla: keep the causal attention off cuDNN's fused kernel (see force_xla_attention)")
    gpt.add_argument("--num-completions", type=int, help="test images completed in the PNG (default 8)")
    gpt.add_argument("--completion-samples", type=int, help="completions per image (default 4)")
    args = parser.parse_args(argv)
    preset = PRESETS["gpu" if args.gpu else "tiny" if args.tiny else "cpu"]
    for name, value in {"num_completions": 8, "completion_samples": 4, **preset}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.time_budget = args.time_budget or None
    args.jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    if args.data_dir is None:
        args.data_dir = next((d for d in DEFAULT_DATA if os.path.isdir(d)), DEFAULT_DATA[0])
    args.igpt_data_dir = args.igpt_data_dir or args.data_dir
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.mixed_precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    print(f"{environment()}; {args.mixed_precision}; preset {'gpu' if args.gpu else 'tiny' if args.tiny else 'cpu'}",
          flush=True)
    started = time.perf_counter()
    results, tables, models = {}, [], {}
    parts = ("compare", "sizes", "igpt") if args.part == "all" else (args.part,)
    if "compare" in parts or "sizes" in parts:
        x_train, y_train, x_test, y_test = load_idx_dir(args.data_dir)
        if x_train is None:
            raise SystemExit(f"error: {args.data_dir} has no training split; parts 1 and 2 need one.")
        if args.train_size:
            x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
        if args.test_size:
            x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
        data = (x_train, y_train, x_test, y_test)
        full = len(x_train)
        if "compare" in parts:
            run_classifiers(args, data, [full], results, models)
            tables.append(f"### 1. ResNet vs ViT on {args.data_dir}, {full:,} training images\n\n"
                          + compare_table(results, full))
        if "sizes" in parts:
            sizes = sorted({min(s, full) for s in (args.sizes or [1000, 10000, full])})
            run_classifiers(args, data, sizes, results, models)
            tables.append("### 2. Test accuracy against training-set size\n\n" + sizes_table(results, sizes))
    if "igpt" in parts:
        data = list(load_idx_dir(args.igpt_data_dir))
        if args.test_size and data[2] is not None and data[0] is not None:
            data[2], data[3] = data[2][: args.test_size], data[3][: args.test_size]
        run_image_gpt(args, data, results)
        tables.append(f"### 3. Image GPT on {args.igpt_data_dir}\n\n" + igpt_table(results["igpt"]))
    total = time.perf_counter() - started
    report = "\n\n".join(tables) + f"\n\nTotal {total:.0f} s. {environment()}, {args.mixed_precision}.\n"
    print("\n" + report)
    with open(os.path.join(args.out_dir, "vision_results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.out_dir, "vision_results.json"), "w") as f:
        json.dump({"environment": environment(), "seconds": round(total, 1), "args": vars(args), "results": results},
                  f, indent=2)


if __name__ == "__main__":
    main()
