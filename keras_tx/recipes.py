"""Training recipes behind `keras-tx train VERB`: data -> model -> `training.fit` -> a model directory.

Each recipe takes the parsed command-line arguments, so the command recorded in metadata.json is exactly what
reproduces the directory. The language-model recipe follows nanoGPT's train.py: random windows of the training
split, evaluation on a fixed set of random validation windows every `eval_interval` steps.
"""

import os
import time

import numpy as np

from keras_tx import artifacts, training, validation

# nanoGPT's CPU "baby GPT" (README, shakespeare_char on a laptop): the default of `keras-tx train gpt`.
GPT_DEFAULTS = dict(num_layers=4, num_heads=4, hidden_dim=128, context=64, batch_size=12, steps=2000)


def random_window_batches(ids, sequence_length, batch_size, seed, start_step=0, total_steps=None):
    """tf.data of (x, y) batches of random windows, batch i drawn from a stateless RNG keyed by (seed, i).

    nanoGPT's `get_batch`: every batch picks `batch_size` random offsets. Keying the draw by the global step
    makes the stream a pure function of the step, so a resumed run continues with exactly the batches an
    uninterrupted run would have seen.
    """
    import tensorflow as tf

    ids = np.asarray(ids, "int32")
    if len(ids) <= sequence_length + 1:
        raise ValueError(f"The text has {len(ids)} tokens, too few for windows of {sequence_length} (+1).")
    tokens = tf.constant(ids)
    high = len(ids) - sequence_length - 1

    def batch(step):
        starts = tf.random.stateless_uniform(
            (batch_size,), seed=tf.stack([tf.cast(seed, tf.int64), step]), maxval=high + 1, dtype=tf.int64
        )
        windows = tf.map_fn(
            lambda s: tf.slice(tokens, [s], [sequence_length + 1]), tf.cast(starts, tf.int32),
            fn_output_signature=tf.TensorSpec([sequence_length + 1], tf.int32),
        )
        return windows[:, :-1], windows[:, 1:]  # (B, T) inputs and next-token targets

    steps = tf.data.Dataset.range(start_step, total_steps) if total_steps else tf.data.Dataset.range(start_step, 2**62)
    return steps.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _check_out(args):
    """Check --out before the run reads anything (`artifacts.check_out_dir`); returns what `_begin` needs."""
    signature = artifacts.run_signature(args)
    return signature, artifacts.check_out_dir(args.out, signature, force=getattr(args, "force", False))


def _begin(args, claim):
    """Record the run in --out: just before its first write (`artifacts.begin_run`)."""
    artifacts.begin_run(args.out, *claim)


def _compile(model, args, total_steps, loss=None, **compile_kwargs):
    """Compile `model` with the project's recipe (AdamW, warm-up + cosine, global-norm clip) and `args`' flags.
    The loss defaults to cross-entropy on logits."""
    import keras

    optimizer = training.make_optimizer(
        total_steps=total_steps,
        learning_rate=args.learning_rate,
        min_learning_rate=args.min_learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        beta_2=args.beta2,
        clip_norm=args.clip_norm,
    )
    training.exclude_non_matrices(optimizer, model)
    model.compile(
        optimizer=optimizer,
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
        **compile_kwargs,
    )


def _language_model(args, vocabulary_size):
    from keras_tx.models import GPT, RNNLanguageModel

    if args.model == "gpt":
        return GPT(
            vocabulary_size=vocabulary_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim or 4 * args.hidden_dim,
            max_length=args.context,
            dropout=args.dropout,
        )
    return RNNLanguageModel(
        vocabulary_size=vocabulary_size,
        cell=args.model,
        embedding_dim=args.embedding_dim,
        units=args.units,
        num_layers=args.num_layers,
        dropout=args.dropout,
    )


def train_language_model(args):
    """`keras-tx train {gpt,lstm,rnn}`: a character-level language model. Returns the metadata written."""
    claim = _check_out(args)
    from keras_tx.data.text import load_text, split_text
    from keras_tx.data.tokenizers import CharTokenizer

    strategy = training.make_strategy(args.strategy, cpu_replicas=args.cpu_replicas, tpu=args.tpu)
    policy = training.configure(seed=args.seed, deterministic=args.deterministic, mixed_precision=args.mixed_precision)
    text = load_text(dataset=args.dataset, text_file=args.text_file, data_dir=args.data_dir, download=args.download)
    train_text, val_text = split_text(text, 0.1)
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    print(f"{len(text):,} characters, vocabulary {tokenizer.vocabulary_size}; "
          f"train {len(train_ids):,} / validation {len(val_ids):,} tokens (first 90% / last 10%).")

    with strategy.scope():
        model = _language_model(args, tokenizer.vocabulary_size)
        model(np.zeros((1, args.context), "int32"))
        _compile(model, args, args.steps)
    print(f"{args.model}: {model.count_params():,} parameters; {strategy.num_replicas_in_sync} replica(s), {policy}.")

    seed = args.seed if args.seed is not None else 0
    validation = random_window_batches(val_ids, args.context, args.batch_size, seed + 1, total_steps=args.eval_batches)
    _begin(args, claim)
    tokenizer.save(os.path.join(args.out, "tokenizer.json"))
    start = time.perf_counter()
    history = training.fit(
        model,
        lambda start_step: random_window_batches(train_ids, args.context, args.batch_size, seed, start_step, args.steps),
        total_steps=args.steps,
        steps_per_epoch=args.eval_interval,
        out_dir=args.out,
        validation_data=validation,
        validation_steps=args.eval_batches,
        tensorboard=not args.no_tensorboard,
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    final = history[-1] if history else {}
    metrics = {
        "val_loss": final.get("val_loss"),
        "train_loss": final.get("loss"),
        "best_val_loss": min((r["val_loss"] for r in history if "val_loss" in r), default=None),
        "steps": args.steps,
        "training_seconds_this_run": round(seconds, 1),
    }
    metadata = artifacts.save_model(
        args.out,
        model,
        {
            "kind": "language_model",
            "architecture": args.model,
            "config": model.get_config(),
            "tokenizer": "tokenizer.json",
            "dataset": args.text_file or args.dataset or (args.data_dir and f"{args.data_dir}/input.txt") or "pydoc_topics",
            "split": "first 90% of characters train, last 10% validation",
            "context": args.context,
            "batch_size": args.batch_size,
            "metrics": metrics,
        },
    )
    artifacts.finish_run(args.out)
    print(f"val loss {metrics['val_loss']:.4f} (train {metrics['train_loss']:.4f}) after {args.steps} steps; "
          f"wrote {args.out}/")
    return metadata


def load_language_model(model_dir):
    """(model, tokenizer, metadata) of a language-model directory."""
    from keras_tx.data.tokenizers import CharTokenizer

    model, metadata = artifacts.load_model(model_dir, kind="language_model")
    path = os.path.join(model_dir, metadata.get("tokenizer", "tokenizer.json"))
    if not os.path.isfile(path):
        raise ValueError(f"{model_dir} has no tokenizer ({os.path.basename(path)} is missing).")
    return model, CharTokenizer.load(path), metadata


def language_model_text(metadata):
    """The text a language model was trained on, from its metadata.json's "dataset" (a file, a tfds name, or the
    built-in text), for `keras-tx evaluate` without data arguments."""
    from keras_tx.data.text import load_text

    source = metadata.get("dataset")
    if source in (None, "pydoc_topics"):
        return load_text()
    if os.path.isfile(source):
        return load_text(text_file=source)
    if os.path.sep in source or source.endswith(".txt"):
        raise ValueError(f"The model was trained on {source}, which is not here: give --text-file, --data-dir or "
                         "--dataset.")
    return load_text(dataset=source)


def prepare_prompt(tokenizer, prompt, context, max_new_tokens):
    """Token ids of `prompt` ready for generation, and a note if it had to be trimmed.

    Raises ValueError for an empty, over-long or non-UTF-8 prompt (`keras_tx.validation`) or characters outside the
    vocabulary (the encoder names them).
    """
    prompt = validation.text(prompt, "The prompt", blank_ok=True)
    validation.integer("max_new_tokens", max_new_tokens, 1, validation.MAX_NEW_TOKENS)
    ids = np.asarray(tokenizer.encode(prompt), "int32")
    note = None
    if context is not None:
        room = max(context - min(max_new_tokens, context // 2), 1)
        if len(ids) > room:
            note = f"The prompt has {len(ids)} tokens; only its last {room} fit the model's context of {context}."
            ids = ids[-room:]
    return ids, note


def generate_text(model, tokenizer, prompt_ids, max_new_tokens, **sampling):
    """Generate `max_new_tokens` tokens past `prompt_ids`, beyond the model's context if need be.

    A GPT's cache covers `max_length` positions; longer generations continue in chunks, each re-reading the last
    half-context of text, as nanoGPT crops its context to the block size.
    """
    context = getattr(model, "max_length", None)
    tokens = np.asarray(prompt_ids, "int32")
    remaining = max_new_tokens
    seed, chunk_index = sampling.pop("seed", None), 0
    while remaining > 0:
        # A fixed seed gives one reproducible stream, not the same random draws repeated in every chunk.
        sampling["seed"] = None if seed is None else seed + chunk_index
        chunk_index += 1
        if context is None:
            chunk, window = remaining, tokens
        else:
            chunk = min(remaining, context // 2)
            window = tokens[-(context - chunk):]
        out = model.generate(window, max_new_tokens=chunk, **sampling)
        new = np.asarray(out)[len(window):]
        tokens = np.concatenate([tokens, new])
        remaining -= chunk
        if len(new) < chunk:  # a stop token ended it
            break
    return tokens


# ---------------------------------------------------------------------------------------------------------------
# Image classifiers: `keras-tx train {vit,resnet}`


def _image_classifier(args, data):
    from keras_tx.models import ResNet, ViT

    height, width, channels = data.x_train.shape[1:4] if data.x_train.ndim == 4 else (*data.x_train.shape[1:3], 1)
    num_classes = len(data.class_names)
    if args.model == "vit":
        return ViT(
            image_size=(height, width),
            patch_size=args.patch_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            mlp_dim=args.mlp_dim or 2 * args.hidden_dim,
            num_classes=num_classes,
            dropout=args.dropout,
            num_channels=channels,
        )
    return ResNet(
        input_shape=(height, width, channels),
        num_classes=num_classes,
        width=args.width,
        blocks_per_stage=tuple(args.blocks_per_stage),
        dropout=args.dropout,
    )


def chain_epochs(make_epoch, steps_per_epoch, total_epochs):
    """`start_step -> dataset`: the epochs from the one holding `start_step` to the last, one after the other.

    `make_epoch(e)` is epoch e's dataset (shuffled with a seed of its own, so a resumed run sees the same batches an
    uninterrupted one would); each is cut to `steps_per_epoch` batches.
    """

    def make(start_step):
        stream = None
        for epoch in range(start_step // steps_per_epoch, total_epochs):
            batches = make_epoch(epoch).take(steps_per_epoch)
            stream = batches if stream is None else stream.concatenate(batches)
        return stream

    return make


def _epoch_stream(data, batch_size, steps_per_epoch, total_epochs, seed, augment, flip):
    """Image batches, each epoch augmented and shuffled with its own seed (see `chain_epochs`)."""
    from keras_tx.data.images import image_dataset

    return chain_epochs(
        lambda e: image_dataset(data.x_train, data.y_train, batch_size, augment=augment, shuffle=True, seed=seed + e,
                                flip=flip),
        steps_per_epoch, total_epochs,
    )


def train_image_classifier(args):
    """`keras-tx train {vit,resnet}`: an image classifier. Returns the metadata written."""
    claim = _check_out(args)
    from keras_tx.data.images import image_dataset, load_image_data

    strategy = training.make_strategy(args.strategy, cpu_replicas=args.cpu_replicas, tpu=args.tpu)
    policy = training.configure(seed=args.seed, deterministic=args.deterministic, mixed_precision=args.mixed_precision)
    source = args.data_dir or args.dataset or "digits"
    kwargs = {"download": True} if args.download and not os.path.exists(source) and source != "digits" else {}
    data = load_image_data(source, **kwargs)
    if args.train_size:
        data = data._replace(x_train=data.x_train[: args.train_size], y_train=data.y_train[: args.train_size])
    steps_per_epoch = len(data.x_train) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.x_train)} training images are fewer than one batch of {args.batch_size}.")
    total_steps = steps_per_epoch * args.epochs
    print(f"{source}: {len(data.x_train):,} training / {len(data.x_test):,} test images of shape "
          f"{data.x_train.shape[1:]}, {len(data.class_names)} classes.")

    with strategy.scope():
        model = _image_classifier(args, data)
        model(np.zeros((1, *model.input_shape[1:]), "float32"))
        _compile(model, args, total_steps, metrics=["accuracy"])
    print(f"{args.model}: {model.count_params():,} parameters; {strategy.num_replicas_in_sync} replica(s), {policy}.")
    seed = args.seed if args.seed is not None else 0
    test = image_dataset(data.x_test, data.y_test, 256)
    _begin(args, claim)
    start = time.perf_counter()
    history = training.fit(
        model,
        _epoch_stream(data, args.batch_size, steps_per_epoch, args.epochs, seed, augment=not args.no_augment,
                      flip=args.flip),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        out_dir=args.out,
        validation_data=test,
        tensorboard=not args.no_tensorboard,
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    final = history[-1] if history else {}
    metrics = {
        "test_accuracy": final.get("val_accuracy"),
        "test_loss": final.get("val_loss"),
        "train_accuracy": final.get("accuracy"),
        "epochs": args.epochs,
        "training_seconds_this_run": round(seconds, 1),
    }
    metadata = artifacts.save_model(
        args.out,
        model,
        {
            "kind": "image_classifier",
            "architecture": args.model,
            "config": model.get_config(),
            "dataset": source,
            "split": "the dataset's own train/test split" + (f", first {args.train_size} training images" if args.train_size else ""),
            "image_shape": list(model.input_shape[1:]),
            "class_names": list(data.class_names),
            "metrics": metrics,
        },
    )
    artifacts.finish_run(args.out)
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {args.epochs} epochs; wrote {args.out}/")
    return metadata


def load_image_classifier(model_dir):
    """(model, metadata) of an image-classifier directory."""
    model, metadata = artifacts.load_model(model_dir, kind="image_classifier")
    return model, metadata


def classify_files(model, metadata, paths, top_k=3):
    """[(path, [(label, probability), ...])] for image files; a file that is not an image raises ValueError."""
    import keras

    from keras_tx.data.images import load_image_file

    paths = validation.batch(paths, "images")
    top_k = validation.integer("top_k", top_k, 1)  # more than there are classes: all of them
    if not paths:
        return []
    height, width, channels = metadata["image_shape"]
    images = np.stack([load_image_file(p, (height, width), channels) for p in paths])  # floats in [0, 1]
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(images, verbose=0), axis=-1))
    names = metadata["class_names"]
    results = []
    for path, p in zip(paths, probabilities):
        best = np.argsort(-p)[:top_k]
        results.append((path, [(names[i], float(p[i])) for i in best]))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Image GPT: `keras-tx train igpt`, `keras-tx complete`, `keras-tx evaluate` of an igpt directory


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


def _token_stream(tokens, batch_size, steps_per_epoch, total_epochs, seed):
    """`start_step -> dataset` of (inputs, targets) next-pixel batches, each epoch reshuffled with its own seed."""
    import tensorflow as tf

    base = tf.data.Dataset.from_tensor_slices(tokens)  # one copy of the array, shared by every epoch

    chained = chain_epochs(lambda e: base.shuffle(len(tokens), seed=seed + e).batch(batch_size, drop_remainder=True),
                           steps_per_epoch, total_epochs)

    def make(start_step):
        return chained(start_step).map(lambda t: (t[:, :-1], t[:, 1:])).prefetch(tf.data.AUTOTUNE)  # (B, h*w) each

    return make


def image_gpt_nll(model, images, batch_size=128):
    """Mean negative log-likelihood of `images` under an `ImageGPT`, in nats per pixel of its token grid.

    Each image is downsampled and quantized as in training; the sum of -log p(pixel | pixels before it) over all
    h*w pixels of all images, divided by their number. Divide by ln 2 for bits per pixel.
    """
    inputs, targets = model.training_pairs(images)  # (N, h*w) each
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        logits = np.asarray(model.predict_on_batch(inputs[start : start + batch_size]), "float64")  # (b, T, V)
        logits -= logits.max(axis=-1, keepdims=True)
        log_normalizer = np.log(np.exp(logits).sum(axis=-1))  # (b, T)
        picked = np.take_along_axis(logits, targets[start : start + batch_size, :, None], axis=-1)[..., 0]
        total += float((log_normalizer - picked).sum())
    return total / targets.size


def train_image_gpt(args):
    """`keras-tx train igpt`: a k-means palette, then a GPT over the raster palette indices of downsampled images.

    Returns the metadata written; its metrics hold the test NLL per pixel in nats and bits.
    """
    claim = _check_out(args)
    import types

    from keras_tx.models import ImageGPT, Palette

    strategy = training.make_strategy(args.strategy, cpu_replicas=args.cpu_replicas, tpu=args.tpu)
    policy = training.configure(seed=args.seed, deterministic=args.deterministic, mixed_precision=args.mixed_precision)
    source = args.data_dir or args.dataset or "digits"
    kwargs = {"download": True} if args.download and not os.path.exists(source) and source != "digits" else {}
    x_train, x_test, split = image_gpt_data(source, **kwargs)
    if args.train_size:
        x_train = x_train[: args.train_size]
    if args.test_size:
        x_test = x_test[: args.test_size]
    steps_per_epoch = len(x_train) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(x_train)} training images are fewer than one batch of {args.batch_size}.")
    grid = args.image_size or default_token_grid(x_train.shape[1:3])
    height, width = (grid, grid) if np.ndim(grid) == 0 else grid
    seed = args.seed if args.seed is not None else 0

    # The palette clusters the pixels the model will read: those of the downsampled images. `downsample` only
    # needs the grid, so it runs before the model (which needs the palette) exists.
    small = ImageGPT.downsample(types.SimpleNamespace(grid_size=(height, width)), x_train)
    palette = Palette.fit(small, num_colors=args.num_colors, seed=seed)
    print(f"{source}: {len(x_train):,} training / {len(x_test):,} test images of shape {x_train.shape[1:]} -> "
          f"{height}x{width} tokens over a {palette.num_colors}-colour k-means palette ({split}).")

    total_steps = steps_per_epoch * args.epochs
    with strategy.scope():
        model = ImageGPT(
            palette,
            image_size=grid,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim or 4 * args.hidden_dim,
            dropout=args.dropout,
        )
        _compile(model, args, total_steps)
    print(f"igpt: {model.count_params():,} parameters, sequences of {1 + height * width} tokens; "
          f"{strategy.num_replicas_in_sync} replica(s), {policy}.")

    import tensorflow as tf

    test_x, test_y = model.training_pairs(x_test)
    validation = tf.data.Dataset.from_tensor_slices((test_x, test_y)).batch(256)
    _begin(args, claim)
    start = time.perf_counter()
    history = training.fit(
        model,
        _token_stream(model.sequences(x_train), args.batch_size, steps_per_epoch, args.epochs, seed),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        out_dir=args.out,
        validation_data=validation,
        tensorboard=not args.no_tensorboard,
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    nats = image_gpt_nll(model, x_test)
    final = history[-1] if history else {}
    metrics = {
        "test_nll_nats_per_pixel": round(nats, 4),
        "test_nll_bits_per_pixel": round(nats / np.log(2), 4),
        "train_loss": final.get("loss"),
        "epochs": args.epochs,
        "training_seconds_this_run": round(seconds, 1),
    }
    metadata = artifacts.save_model(
        args.out,
        model,
        {
            "kind": "image_gpt",
            "architecture": "igpt",
            "config": model.get_config(),
            "dataset": source,
            "split": split + (f", first {args.train_size} training images" if args.train_size else "")
            + (f", first {args.test_size} test images" if args.test_size else ""),
            "test_size": args.test_size,
            "image_shape": list(x_train.shape[1:]),
            "token_grid": [height, width],
            "num_colors": palette.num_colors,
            "nll_unit": f"per pixel of the {height}x{width} token grid, each one of {palette.num_colors} palette colours",
            "batch_size": args.batch_size,
            "metrics": metrics,
        },
    )
    artifacts.finish_run(args.out)
    print(f"test NLL {metrics['test_nll_nats_per_pixel']:.4f} nats = {metrics['test_nll_bits_per_pixel']:.4f} bits "
          f"per pixel after {args.epochs} epochs; wrote {args.out}/")
    return metadata


def load_image_gpt(model_dir):
    """(model, metadata) of an image-GPT directory."""
    return artifacts.load_model(model_dir, kind="image_gpt")


def complete_image_file(model, metadata, path, keep_rows=None, num_samples=4, temperature=1.0, seed=None):
    """The completion grid of one image file: [given | top rows kept | completion 1 ... N], as uint8 (H, W, C).

    The file is read as the training images were (`load_image_file` at the training shape: any format, mode and
    size; a file that is not an image raises ValueError), then downsampled and quantized by the model. "Given" is
    the quantized image, "kept" its top `keep_rows` rows (default: half the grid) over grey, and each completion
    keeps those rows and samples the rest pixel by pixel. One grid pixel is drawn as a `scale` x `scale` block
    (scale = 96 // grid side, at least 1) and the tiles are one grid pixel apart, on white.
    """
    from keras_tx.data.images import load_image_file

    validation.integer("num_samples", num_samples, 1, validation.MAX_SAMPLES)
    validation.number("temperature", temperature, 0.0, low_open=True)
    validation.seed(seed)
    grid_h, grid_w = model.grid_size
    keep_rows = grid_h // 2 if keep_rows is None else validation.integer("keep_rows", keep_rows, 0, grid_h)
    height, width, channels = metadata["image_shape"]
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


# ---------------------------------------------------------------------------------------------------------------
# BERT: `keras-tx train bert` (masked-LM pretraining), `keras-tx fill-mask`


def masked_lm_texts(args):
    """Training and validation sentences for masked-LM pretraining."""
    from keras_tx.data.text import load_text
    from keras_tx.data.wordpiece import load_sst2

    if args.data_dir and os.path.isfile(os.path.join(args.data_dir, "train.tsv")):
        train, _ = load_sst2(args.data_dir, "train")
        validation, _ = load_sst2(args.data_dir, "validation")
        return train, validation, f"{args.data_dir} (SST-2 sentences, labels unused)"
    if args.dataset == "glue/sst2":
        train, _ = load_sst2(None, "train", download=args.download)
        validation, _ = load_sst2(None, "validation", download=args.download)
        return train, validation, "glue/sst2 (sentences, labels unused)"
    text = load_text(dataset=args.dataset, text_file=args.text_file, data_dir=args.data_dir, download=args.download)
    lines = [line.strip() for line in text.splitlines() if len(line.split()) >= 3]
    if len(lines) < 20:
        raise ValueError(f"Only {len(lines)} lines of three or more words: too little text for masked-LM training.")
    train, validation = lines[: int(0.9 * len(lines))], lines[int(0.9 * len(lines)):]
    return train, validation, args.text_file or args.dataset or "pydoc_topics (lines)"


def train_masked_lm(args):
    """`keras-tx train bert`: WordPiece vocabulary + BERT masked-LM pretraining (15%, 80/10/10)."""
    claim = _check_out(args)
    from keras_tx.data.wordpiece import mlm_dataset, save_tokenizer, train_wordpiece_vocabulary
    from keras_tx.data.wordpiece import make_wordpiece_tokenizer
    from keras_tx.models import BERT, BERTMaskedLM

    strategy = training.make_strategy(args.strategy, cpu_replicas=args.cpu_replicas, tpu=args.tpu)
    policy = training.configure(seed=args.seed, deterministic=args.deterministic, mixed_precision=args.mixed_precision)
    train_texts, val_texts, source = masked_lm_texts(args)
    vocabulary = train_wordpiece_vocabulary(train_texts, args.vocabulary_size)
    tokenizer = make_wordpiece_tokenizer(vocabulary)
    print(f"{source}: {len(train_texts):,} training / {len(val_texts):,} validation texts; "
          f"WordPiece vocabulary {len(vocabulary):,}.")
    with strategy.scope():
        backbone = BERT(
            vocabulary_size=len(vocabulary),
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim or 4 * args.hidden_dim,
            max_length=args.sequence_length,
            dropout=args.dropout,
        )
        model = BERTMaskedLM(backbone, tokenizer=tokenizer)
        _compile(model, args, args.steps, weighted_metrics=["sparse_categorical_accuracy"])
    print(f"bert: {model.count_params():,} parameters; {strategy.num_replicas_in_sync} replica(s), {policy}.")
    seed = args.seed if args.seed is not None else 0

    def batches(start_step):
        # Masks are drawn afresh every pass; a resumed run continues with new masks from the step it stopped at.
        return mlm_dataset(train_texts, tokenizer, args.sequence_length, args.batch_size, shuffle=True,
                           seed=seed + start_step).repeat()

    validation = mlm_dataset(val_texts, tokenizer, args.sequence_length, args.batch_size, shuffle=False, seed=seed)
    validation = validation.take(args.eval_batches).cache()
    _begin(args, claim)
    start = time.perf_counter()
    history = training.fit(
        model, batches, total_steps=args.steps, steps_per_epoch=args.eval_interval, out_dir=args.out,
        validation_data=validation, tensorboard=not args.no_tensorboard, verbose=args.verbose,
    )
    final = history[-1] if history else {}
    metrics = {
        "val_loss": final.get("val_loss"),
        "val_masked_accuracy": final.get("val_sparse_categorical_accuracy"),
        "train_loss": final.get("loss"),
        "steps": args.steps,
        "training_seconds_this_run": round(time.perf_counter() - start, 1),
    }
    save_tokenizer(tokenizer, args.out)
    metadata = artifacts.save_model(
        args.out,
        model,
        {
            "kind": "masked_lm",
            "architecture": "bert",
            "config": backbone.get_config(),
            "tokenizer": "vocab.txt",
            "dataset": source,
            "split": "the dataset's train / validation split" if "SST-2" in source or "sst2" in source
            else "first 90% of lines train, last 10% validation",
            "sequence_length": args.sequence_length,
            "masking": "15% of tokens selected; of those 80% [MASK], 10% random token, 10% unchanged",
            "metrics": metrics,
        },
    )
    artifacts.finish_run(args.out)
    print(f"masked-token accuracy {metrics['val_masked_accuracy']:.4f}, val loss {metrics['val_loss']:.4f}; "
          f"wrote {args.out}/")
    return metadata


def masked_lm_scores(model, texts, sequence_length, batch_size=64, seed=1):
    """Masked-token accuracy and mean loss (nats) per masked token of `model` on `texts`, one text per sequence.

    The masks are BERT's (15% of ordinary tokens, 80/10/10) drawn from `seed` in NumPy, so a second run, or a
    second model with the same tokenizer, is scored on the same positions. Padding slots of the mask positions
    count for nothing (Keras' weighted loss would average them in as zeros).
    """
    from keras_tx.data.masking import mask_token_ids
    from keras_tx.data.wordpiece import encode_texts, special_token_ids

    tokenizer = model.tokenizer
    ids = encode_texts(texts, tokenizer, sequence_length)["token_ids"]
    special = special_token_ids(tokenizer)
    masked, positions, labels, weights = mask_token_ids(ids, special, tokenizer.vocabulary_size(),
                                                        np.random.default_rng(seed))
    correct = total = nats = 0.0
    for start in range(0, len(ids), batch_size):
        part = slice(start, start + batch_size)
        features = {"token_ids": masked[part], "segment_ids": np.zeros_like(masked[part]),
                    "padding_mask": (ids[part] != special["[PAD]"]).astype("int32"),
                    "mask_positions": positions[part]}
        logits = np.asarray(model.predict_on_batch(features), "float64")  # (B, P, V)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, labels[part][..., None].astype("int64"), -1)[..., 0]
        correct += float(((logits.argmax(-1) == labels[part]) * weights[part]).sum())
        nats -= float((picked * weights[part]).sum())
        total += float(weights[part].sum())
    if not total:
        raise ValueError("No tokens to mask: the texts are empty.")
    return {"masked_accuracy": correct / total, "masked_loss": nats / total, "masked_tokens": int(total)}


def load_masked_lm(model_dir):
    """(model with its tokenizer attached, metadata) of a masked-LM directory."""
    from keras_tx.data.wordpiece import load_tokenizer

    model, metadata = artifacts.load_model(model_dir, kind="masked_lm")
    if getattr(model, "tokenizer", None) is None:
        if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
            raise ValueError(f"{model_dir} has no tokenizer (vocab.txt is missing).")
        model.tokenizer = load_tokenizer(model_dir)
    return model, metadata


# ---------------------------------------------------------------------------------------------------------------
# Translation: `keras-tx train transformer`


def translation_pairs(args, split):
    """(pairs, description) of one split: line-aligned files or a TSV (--data-dir / --text-file), a tfds
    dataset (--dataset), or the generated German->English number words (no data given)."""
    from keras_tx.data.translation import load_parallel, numeral_pairs

    if args.dataset:
        pairs = load_parallel(args.data_dir, args.source, args.target, split, tfds_name=args.dataset,
                              download=args.download)
        return pairs, f"tfds {args.dataset} ({args.source}->{args.target})"
    path = args.text_file or args.data_dir
    if path is None:
        count = getattr(args, "max_pairs", None) if split == "train" else None
        return numeral_pairs(split, count), "German->English number words (keras_tx.data.translation.numeral_pairs)"
    if os.path.isfile(path):  # one TSV: 90% / 5% / 5%, in file order
        pairs = load_parallel(path)
        cut1, cut2 = int(0.9 * len(pairs)), int(0.95 * len(pairs))
        return {"train": pairs[:cut1], "validation": pairs[cut1:cut2], "test": pairs[cut2:]}[split], path
    return load_parallel(path, args.source, args.target, split), f"{path} ({args.source}->{args.target})"


def train_translation(args):
    """`keras-tx train transformer`: WordPiece vocabularies + the seq2seq Transformer, then test BLEU."""
    claim = _check_out(args)
    from keras_tx.data.translation import (
        Translator, save_translation_tokenizers, train_translation_tokenizers, translation_dataset,
    )
    from keras_tx.models import MaskedCrossentropy, Seq2SeqTransformer, masked_accuracy

    strategy = training.make_strategy(args.strategy, cpu_replicas=args.cpu_replicas, tpu=args.tpu)
    policy = training.configure(seed=args.seed, deterministic=args.deterministic, mixed_precision=args.mixed_precision)
    train_pairs, source = translation_pairs(args, "train")
    train_pairs = train_pairs[: args.max_pairs] if args.max_pairs else train_pairs
    val_pairs, _ = translation_pairs(args, "validation")
    test_pairs, _ = translation_pairs(args, "test")
    source_tokenizer, target_tokenizer = train_translation_tokenizers(
        train_pairs, args.vocabulary_size, args.vocabulary_size
    )
    steps_per_epoch = len(train_pairs) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_pairs)} training pairs are fewer than one batch of {args.batch_size}.")
    total_steps = steps_per_epoch * args.epochs
    print(f"{source}: {len(train_pairs):,} train / {len(val_pairs):,} validation / {len(test_pairs):,} test pairs; "
          f"vocabularies {source_tokenizer.vocabulary_size():,} / {target_tokenizer.vocabulary_size():,} pieces.")
    with strategy.scope():
        model = Seq2SeqTransformer(
            source_tokenizer.vocabulary_size(),
            target_tokenizer.vocabulary_size(),
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim or 2 * args.hidden_dim,
            max_source_length=args.max_length,
            max_target_length=args.max_length,
            dropout=args.dropout,
        )
        _compile(model, args, total_steps, loss=MaskedCrossentropy(label_smoothing=args.label_smoothing),
                 metrics=[masked_accuracy])
    print(f"transformer: {model.count_params():,} parameters; {strategy.num_replicas_in_sync} replica(s), {policy}.")
    seed = args.seed if args.seed is not None else 0

    batches = chain_epochs(
        lambda e: translation_dataset(train_pairs, source_tokenizer, target_tokenizer, args.max_length,
                                      args.max_length, args.batch_size, seed=seed + e, drop_remainder=True),
        steps_per_epoch, args.epochs,
    )

    validation = translation_dataset(val_pairs, source_tokenizer, target_tokenizer, args.max_length,
                                     args.max_length, args.batch_size, shuffle=False)
    _begin(args, claim)
    save_translation_tokenizers(args.out, source_tokenizer, target_tokenizer)
    start = time.perf_counter()
    history = training.fit(
        model, batches, total_steps=total_steps, steps_per_epoch=steps_per_epoch, out_dir=args.out,
        validation_data=validation, tensorboard=not args.no_tensorboard, verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    final = history[-1] if history else {}
    metrics = {
        "val_loss": final.get("val_loss"),
        "val_token_accuracy": final.get("val_masked_accuracy"),
        "train_loss": final.get("loss"),
        "epochs": args.epochs,
        "training_seconds_this_run": round(seconds, 1),
    }
    if args.bleu_sentences:
        scored = test_pairs[: args.bleu_sentences]
        bleu = Translator(model, source_tokenizer, target_tokenizer).evaluate_bleu(scored)
        metrics.update(test_bleu_greedy=round(float(bleu), 2), test_bleu_sentences=len(scored))
    metadata = artifacts.save_model(
        args.out,
        model,
        {
            "kind": "translation",
            "architecture": "seq2seq_transformer",
            "config": model.get_config(),
            "tokenizer": "source_vocab.txt, target_vocab.txt",
            "dataset": source,
            "split": "the corpus's train / validation / test splits",
            "languages": [args.source, args.target],
            "label_smoothing": args.label_smoothing,
            "metrics": metrics,
        },
    )
    artifacts.finish_run(args.out)
    bleu_text = f", test BLEU {metrics['test_bleu_greedy']:.2f} (greedy)" if "test_bleu_greedy" in metrics else ""
    print(f"val loss {metrics['val_loss']:.4f}{bleu_text}; wrote {args.out}/")
    return metadata


def load_translator(model_dir):
    """(Translator, metadata) of a translation-model directory."""
    from keras_tx.data.translation import Translator, load_translation_tokenizers

    model, metadata = artifacts.load_model(model_dir, kind="translation")
    return Translator(model, *load_translation_tokenizers(model_dir)), metadata
