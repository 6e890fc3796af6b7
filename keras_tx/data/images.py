"""Image data for ViT, image GPT and the ResNet baseline: sources as numpy arrays, then a tf.data pipeline.

Every source returns an `ImageData` of uint8 images (N, height, width, channels), int32 labels and class names:

    load_idx(directory)            the MNIST / Fashion-MNIST IDX files (*-idx3-ubyte.gz, *-idx1-ubyte.gz)
    load_npz(path)                 an .npz with x_train, y_train, x_test, y_test (keras.datasets' layout)
    load_image_folder(directory)   one sub-folder of PNG/JPEG files per class
    load_tfds(name)                mnist, fashion_mnist, cifar10 ... through tensorflow-datasets (no download
                                   unless asked: without a network tfds retries for minutes)
    load_digits_images()           the offline default: scikit-learn's 1,797 8x8 digits, shipped with
                                   scikit-learn, upscaled to 16x16 (or any size) so that 4x4 patches make sense
    load_image_data(source)        any of the above, by name or path

`image_dataset` turns arrays into a batched, augmented, normalized, prefetched `tf.data.Dataset`;
`load_image_file` reads one user image (any mode, any size) as the models expect it.
Pixels reach the models as float32 in [0, 1], from both paths.
"""

import collections
import gzip
import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_tx import validation

ImageData = collections.namedtuple("ImageData", "x_train y_train x_test y_test class_names")
ImageData.__doc__ = """uint8 images (N, H, W, C) and int32 labels (N,) of train and test (None where absent); names."""

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what every surface, the exports too, can decode
# IDX header type codes -> numpy dtypes (big-endian, as the format stores them).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ----------------------------------------------------------------------------------------------------------------
# Sources


def read_idx(path):
    """One IDX file (MNIST's format; gzipped or not) as a numpy array.

    Args:
        path: e.g. "train-images-idx3-ubyte.gz".

    Example:
    >>> read_idx("/work/shared/datasets/mnist/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
    (10000,)
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    # Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension.
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(shape))
    body = data[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"{path}: the header promises shape {shape}, but the file holds {len(body)} bytes.")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for suffix in (".gz", ""):
        path = os.path.join(directory, stem + suffix)
        if os.path.exists(path):
            return path
    return None


def load_idx(directory, class_names=None):
    """The IDX files of MNIST / Fashion-MNIST in `directory`; a split whose images are missing is None.

    Args:
        directory: holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz],
            t10k-labels-idx1-ubyte[.gz] (either split may be missing, not both).
        class_names: defaults to Fashion-MNIST's names if "fashion" is in the path, else "0" ... "9".

    Example:
    >>> data = load_idx("/work/shared/datasets/fashion_mnist")  # doctest: +SKIP
    >>> data.x_train.shape, data.class_names[0]  # doctest: +SKIP
    ((60000, 28, 28, 1), 'T-shirt/top')
    """
    splits = []
    for prefix in ("train", "t10k"):
        images = _find(directory, f"{prefix}-images-idx3-ubyte")
        labels = _find(directory, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            splits += [None, None]
            continue
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or len(x) != len(y):
            raise ValueError(f"{images}: expected (N, H, W) images matching {len(y)} labels, got {x.shape}.")
        splits += [x[..., None].astype("uint8"), y.astype("int32")]  # (N, H, W, 1)
    if splits[0] is None and splits[2] is None:
        raise ValueError(
            f"{directory} holds no IDX image/label pair (expected e.g. train-images-idx3-ubyte.gz and "
            "train-labels-idx1-ubyte.gz)."
        )
    if class_names is None:
        class_names = FASHION_MNIST_CLASSES if "fashion" in os.path.abspath(directory).lower() else DIGIT_CLASSES
    return ImageData(*splits, list(class_names))


def load_npz(path, class_names=None):
    """An .npz with x_train, y_train, x_test, y_test (keras.datasets' layout); (N, H, W) gets a channel axis.

    Example:
    >>> data = load_npz("mnist.npz")  # doctest: +SKIP
    """
    with np.load(path, allow_pickle=False) as archive:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; expected x_train, y_train, x_test, y_test.")
        arrays = [archive[name] for name in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    x_train, x_test = (_as_uint8_images(x, path) for x in (x_train, x_test))
    y_train, y_test = (np.asarray(y).reshape(-1).astype("int32") for y in (y_train, y_test))
    if class_names is None:
        class_names = [str(i) for i in range(int(max(y_train.max(), y_test.max())) + 1)]
    return ImageData(x_train, y_train, x_test, y_test, list(class_names))


def _as_uint8_images(x, source):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W) -> (N, H, W, 1)
    if x.ndim != 4:
        raise ValueError(f"{source}: expected images (N, H, W[, C]), got shape {x.shape}.")
    if np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0:
        x = x * 255.0  # floats in [0, 1]
    return np.clip(np.round(x), 0, 255).astype("uint8")


def load_image_folder(directory, image_size=32, channels=3, test_fraction=0.2, seed=0):
    """Images in one sub-folder per class (the folder names are the class names), split into train and test.

    Args:
        directory: e.g. photos/cat/*.jpg, photos/dog/*.png.
        image_size, channels: every file is converted with `load_image_file`.
        test_fraction: share of each class held out, chosen with `seed`.

    Example:
    >>> data = load_image_folder("photos", image_size=32)  # doctest: +SKIP
    """
    class_names = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not class_names:
        raise ValueError(f"{directory} has no class sub-folders (expected e.g. {directory}/cat/*.png).")
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_SUFFIXES))
        images = [load_image_file(os.path.join(folder, f), image_size, channels) for f in files]
        order = rng.permutation(len(images))
        num_test = int(round(test_fraction * len(images)))
        for split, indices in (("test", order[:num_test]), ("train", order[num_test:])):
            parts[split][0].extend(images[i] for i in indices)
            parts[split][1].extend([label] * len(indices))
    arrays = []
    for split in ("train", "test"):
        x, y = parts[split]
        shape = (0, image_size, image_size, channels)
        arrays += [np.round(np.stack(x) * 255).astype("uint8") if x else np.zeros(shape, "uint8"),
                   np.asarray(y, "int32")]
    return ImageData(*arrays, class_names)


def load_tfds(name, data_dir=None, download=False):
    """A tensorflow-datasets image classification set ("mnist", "fashion_mnist", "cifar10", ...) as arrays.

    Args:
        name: the tfds name.
        data_dir: where tfds keeps its data.
        download: allow a download. Off by default: offline, tfds would retry the network for minutes.

    Example:
    >>> data = load_tfds("cifar10", download=True)  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds  # heavy, and only needed here

    try:
        (train, test), info = tfds.load(
            name, split=["train", "test"], as_supervised=True, data_dir=data_dir, download=download, with_info=True
        )
    except Exception as error:  # tfds raises assorted types (AssertionError, DatasetNotFoundError ...)
        raise ValueError(
            f"tfds dataset {name!r} is not available in data_dir={data_dir!r} ({type(error).__name__}); "
            "pass download=True where there is a network, or use local files."
        ) from error
    (x_train, y_train), (x_test, y_test) = _to_numpy(train), _to_numpy(test)
    label = info.features["label"]
    class_names = list(label.names) if getattr(label, "names", None) else [str(i) for i in range(label.num_classes)]
    if class_names == [str(i) for i in range(len(class_names))]:  # tfds without its metadata only numbers them
        class_names = {"fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}.get(name, class_names)
    return ImageData(
        _as_uint8_images(x_train, name), y_train.astype("int32"), _as_uint8_images(x_test, name),
        y_test.astype("int32"), class_names,
    )


def _to_numpy(dataset, chunk=4096):
    """A tf.data split of (image, label) pairs as two arrays, read in chunks (not tfds' batch_size=-1, which
    needs the split's size up front and aborts on datasets of unknown cardinality)."""
    xs, ys = [], []
    for x, y in dataset.batch(chunk).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def load_digits_images(image_size=16, test_fraction=0.2, seed=0):
    """scikit-learn's handwritten digits (1,797 images, 8x8, 17 grey levels): the data set that needs no network.

    The 8x8 images are rescaled from 0..16 to 0..255 and upscaled (bilinear, PIL) to `image_size`, 16 by default:
    large enough for 4x4 patches and 3x3 convolutions, small enough to train in seconds on a CPU. Pass 28 for
    an MNIST-shaped stand-in. The split is stratified-free but fixed: a permutation under `seed`.

    Example:
    >>> data = load_digits_images()
    >>> data.x_train.shape[1:], len(data.x_train) + len(data.x_test), data.class_names[:3]
    ((16, 16, 1), 1797, ['0', '1', '2'])
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.round(digits.images * (255.0 / 16.0)).astype("uint8")  # (N, 8, 8), 0..255
    if image_size != 8:
        small = np.stack(
            [np.asarray(Image.fromarray(im).resize((image_size, image_size), Image.BILINEAR)) for im in small]
        )
    x, y = small[..., None], digits.target.astype("int32")  # (N, S, S, 1)
    order = np.random.default_rng(seed).permutation(len(x))
    num_test = int(round(test_fraction * len(x)))
    test, train = order[:num_test], order[num_test:]
    return ImageData(x[train], y[train], x[test], y[test], DIGIT_CLASSES)


TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "kmnist", "emnist")


def load_image_data(source="digits", **kwargs):
    """Any source by name or path: "digits", a tfds name, a folder of IDX files, an .npz, or class folders.

    Args:
        source: "digits" (offline default) | "mnist", "fashion_mnist", "cifar10" (tfds) | a directory holding
            IDX files | a path to an .npz | a directory of class sub-folders.
        **kwargs: passed to the loader (e.g. `download=True` for tfds, `image_size` for digits and folders).

    Example:
    >>> load_image_data("digits").class_names[-1]
    '9'
    """
    source = str(source)
    if source == "digits":
        return load_digits_images(**kwargs)
    if source.endswith(".npz"):
        return load_npz(source, **kwargs)
    if os.path.isdir(source):
        if any(_find(source, f"{p}-images-idx3-ubyte") for p in ("train", "t10k")):
            return load_idx(source, **kwargs)
        return load_image_folder(source, **kwargs)
    if source in TFDS_NAMES or os.path.sep not in source:
        return load_tfds(source, **kwargs)
    raise ValueError(f"Unknown image source {source!r}: expected 'digits', a tfds name, a directory or an .npz.")


# ----------------------------------------------------------------------------------------------------------------
# Pipeline


def image_dataset(x, y=None, batch_size=64, augment=False, shuffle=False, seed=None, flip=False, padding=None):
    """Arrays -> batched tf.data: optional augmentation, [0, 1] scaling, prefetch.

    Augmentation (training only) pads by `padding` pixels and crops back at a random place (a random shift of
    up to `padding` pixels, the CIFAR recipe), and with `flip=True` mirrors left-right. Leave `flip` off for
    digits and letters, whose mirror images are other symbols; it suits CIFAR-10 and Fashion-MNIST.

    Args:
        x: (N, H, W, C) uint8 images (or floats in [0, 255]).
        y: (N,) labels, or None for images only.
        batch_size: images per batch.
        augment: random crops (and flips) on each pass.
        shuffle: reshuffle every epoch.
        seed: of the shuffle and the augmentation: the same seed gives the same batches, epoch by epoch.
        flip: also mirror left-right (only with `augment`).
        padding: pixels of shift; defaults to an eighth of the image side (4 for 32x32, 3 for 28x28).

    Returns:
        a `tf.data.Dataset` of (images, labels) or images; images float32 in [0, 1].

    Example:
    >>> data = load_digits_images()
    >>> images, labels = next(iter(image_dataset(data.x_train, data.y_train, 8, augment=True, seed=0)))
    >>> tuple(images.shape), float(images.numpy().max()) <= 1.0
    ((8, 16, 16, 1), True)
    """
    import keras
    import tensorflow as tf

    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    height, width = x.shape[1:3]
    pad = max(1, height // 8) if padding is None else int(padding)
    layers = [keras.layers.Rescaling(1.0 / 255.0)]
    if augment:
        layers += [keras.layers.ZeroPadding2D(pad), keras.layers.RandomCrop(height, width, seed=seed)]
        if flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    preprocess = keras.Sequential(layers, name="image_preprocessing")

    dataset = tf.data.Dataset.from_tensor_slices(x if y is None else (x, np.asarray(y, "int32")))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def apply(images, *labels):
        images = preprocess(tf.cast(images, "float32"), training=augment)
        return (images, *labels) if labels else images

    # The random layers draw from one seed state per layer: batches mapped in parallel would race for it, so a
    # seeded augmenting pipeline maps in order (cheap next to a training step; prefetch still overlaps them).
    parallel = None if augment and seed is not None else tf.data.AUTOTUNE
    return dataset.map(apply, num_parallel_calls=parallel).prefetch(tf.data.AUTOTUNE)


def read_image_bytes(path):
    """The bytes of one image file, checked as every surface checks an image before decoding it
    (`keras_tx.validation.image_bytes`: file size, PNG/JPEG/GIF/BMP, pixels from the header); else ValueError."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file.")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file.")
    if os.path.getsize(path) > validation.MAX_IMAGE_BYTES:
        raise ValueError(validation.IMAGE_FILE_TOO_LARGE.replace("The image file", str(path), 1))
    with open(path, "rb") as file:
        data = file.read(validation.MAX_IMAGE_BYTES + 1)
    try:
        validation.image_bytes(data)
    except ValueError as error:
        raise ValueError(str(error).replace("The data", str(path), 1).replace("The image", str(path), 1)) from None
    return data


def load_image_file(path, image_size, channels=3, background=0):
    """One image file of any format, mode and size, as the models take it: float32 (size, size, channels) in [0, 1].

    Transparency is flattened onto `background`, palette / 16-bit / CMYK modes are converted, EXIF rotation is
    applied, and the image is padded to a square (keeping its aspect ratio) and resized with PIL. Large JPEGs are
    decoded at reduced scale. The file is checked first as every surface checks an image (`read_image_bytes`:
    at most 20 MiB, PNG, JPEG, GIF or BMP, at most 25 megapixels); a file that fails or that PIL cannot read raises
    a `ValueError` naming it.

    Args:
        path: a PNG, JPEG, ... file.
        image_size: side of the output (an int, or a (height, width) pair).
        channels: 1 (grey) or 3 (RGB).
        background: grey level 0..255 under transparent pixels and in the padding (0 = black, as in MNIST).

    Example:
    >>> load_image_file("shirt.png", 28, channels=1).shape  # doctest: +SKIP
    (28, 28, 1)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    height, width = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    data = read_image_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB" if channels == 3 else "L", (width, height))  # JPEG: decode at a reduced scale
            image = ImageOps.exif_transpose(image)
            image.load()
            image = _to_rgb(image, background)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise ValueError(validation.NOT_AN_IMAGE.replace("The data", str(path), 1)) from None
    image.thumbnail((4 * width, 4 * height), Image.BILINEAR)  # shrink huge images cheaply before the real resize
    image = ImageOps.pad(image, (width, height), Image.BILINEAR, color=(background,) * 3)
    if channels == 1:
        image = image.convert("L")
    pixels = np.asarray(image, "float32") / 255.0
    return pixels.reshape(height, width, channels)


def _to_rgb(image, background):
    """Any PIL mode -> RGB, alpha composited onto a flat background."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, "float64")  # 16/32-bit grey: stretch to 8 bits
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = Image.fromarray(values.astype("uint8"))
    if image.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        flat = Image.new("RGBA", image.size, (background,) * 3 + (255,))
        return Image.alpha_composite(flat, image).convert("RGB")
    return image.convert("RGB")

