"""Image GPT: GPT on pixels, each pixel one token of a small colour palette, read in raster order.

The last step of the line RNN -> ... -> GPT -> BERT -> ViT -> image GPT. "Generative Pretraining from Pixels"
(Chen et al., 2020) asks whether GPT's recipe needs language at all: it clusters the colours of the training
pixels with k-means (512 colours for RGB; 16 grey levels here for MNIST-like data), turns each image into the
sequence of its pixels' palette indices, row by row, and trains an unchanged GPT to predict the next pixel.
Unlike ViT, which sees the whole image at once, the model knows no 2-D structure at all: it must learn from
raster order alone that the pixel above is 14 (or 28, or 32) tokens back.

What that gives:
- generation: given the top rows of an image, sample the rest pixel by pixel (`complete`), with GPT's
  key/value cache (keras_tx/generation.py);
- representation learning without labels: the mean hidden state of a middle block is a feature vector on which
  a linear classifier does well (`linear_probe_features`); in the paper the middle blocks beat the last one.

Sequences are short enough for a CPU only because images are downsampled first (28x28 -> 14x14: 196 tokens).
A start-of-image token (id = number of colours) comes first, so the first pixel is predicted too.
The palette is part of the model's configuration, so a reloaded model quantizes and completes identically.
"""

import keras
import numpy as np
from keras import ops

from keras_tx.models.gpt import GPT


def _pair(value):
    return (int(value), int(value)) if np.ndim(value) == 0 else tuple(int(v) for v in value)


def _as_unit_floats(images):
    """uint8 (0..255) or float (0..1) images -> float32 in [0, 1], (B, H, W, C)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]  # (B, H, W) -> (B, H, W, 1)
    if images.ndim != 4:
        raise ValueError(f"Expected images (batch, height, width[, channels]), got shape {images.shape}.")
    return images.astype("float32") / 255.0 if images.dtype == np.uint8 else images.astype("float32")


def downsample(images, grid_size):
    """Images (B, H, W, C) -> (B, h, w, C) on a token grid (h, w), floats in [0, 1] (block means when H/h is whole).

    Example:
    >>> x = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], "float32").reshape(1, 4, 4, 1)
    >>> downsample(x, (2, 2))[0, :, :, 0].tolist()
    [[0.0, 1.0], [1.0, 0.25]]
    """
    images = _as_unit_floats(images)
    batch, height, width, channels = images.shape
    h, w = grid_size
    if (height, width) == (h, w):
        return images
    if height % h == 0 and width % w == 0:  # average each (H/h, W/w) block: exact, and what "area" resizing does
        blocks = images.reshape(batch, h, height // h, w, width // w, channels)  # (B, h, H/h, w, W/w, C)
        return blocks.mean(axis=(2, 4))
    resized = ops.image.resize(images, (h, w), interpolation="bilinear", antialias=True)
    return np.clip(ops.convert_to_numpy(resized), 0.0, 1.0)


class Palette:
    """A k-means colour palette: pixel colours <-> indices of their nearest centre.

    Args:
        centres: (num_colors, channels) colours in [0, 1], distinct.

    Example:
    >>> palette = Palette([[0.0], [0.5], [1.0]])
    >>> palette.quantize(np.array([[[[0.1], [0.9]]]], "float32")).tolist()
    [[0, 2]]
    """

    def __init__(self, centres):
        self.centres = np.asarray(centres, "float32").reshape(len(centres), -1)  # (K, C)

    @classmethod
    def fit(cls, images, num_colors=None, sample_size=100_000, seed=0):
        """Cluster the colours of (a sample of) the pixels of `images` with scikit-learn's k-means.

        Args:
            images: (N, H, W, C) uint8 or [0, 1] floats.
            num_colors: palette size; default 16 for grey images, 512 for colour (the iGPT paper's).
            sample_size: pixels drawn (with `seed`) to fit on; k-means over all of them buys little.
            seed: of the sample and of k-means.

        Returns:
            a `Palette` whose centres are sorted by brightness (so index order means something for grey images).
            With fewer distinct colours than `num_colors`, those colours are the palette.

        Example:
        >>> Palette.fit(np.random.default_rng(0).random((10, 8, 8, 1)), num_colors=4).centres.shape
        (4, 1)
        """
        from sklearn.cluster import MiniBatchKMeans  # only needed to fit a palette, not to use one

        images = _as_unit_floats(images)
        channels = images.shape[-1]
        num_colors = num_colors or (16 if channels == 1 else 512)
        pixels = images.reshape(-1, channels)  # (N*H*W, C)
        rng = np.random.default_rng(seed)
        if len(pixels) > sample_size:
            pixels = pixels[rng.choice(len(pixels), sample_size, replace=False)]
        distinct = np.unique(pixels, axis=0)
        if len(distinct) <= num_colors:
            centres = distinct
        else:
            kmeans = MiniBatchKMeans(num_colors, random_state=seed, n_init=3, batch_size=4096).fit(pixels)
            centres = np.unique(kmeans.cluster_centers_.astype("float32"), axis=0)  # drops empty duplicates
        brightness = centres.mean(axis=1)
        return cls(centres[np.argsort(brightness, kind="stable")])

    @property
    def num_colors(self):
        return len(self.centres)

    def quantize(self, images, batch_size=256):
        """Images (B, H, W, C) -> (B, H*W) int32 indices of the nearest centre, pixels in raster order.

        Example:
        >>> Palette([[0.0], [1.0]]).quantize(np.ones((1, 2, 2, 1), "float32")).tolist()
        [[1, 1, 1, 1]]
        """
        images = _as_unit_floats(images)
        if images.shape[-1] != self.centres.shape[1]:
            raise ValueError(f"The palette has {self.centres.shape[1]} channels, the images {images.shape[-1]}.")
        pixels = images.reshape(len(images), -1, images.shape[-1])  # (B, H*W, C)
        indices = []
        for start in range(0, len(pixels), batch_size):  # chunks bound the (b, H*W, K) distance table
            chunk = pixels[start : start + batch_size]
            distances = ((chunk[:, :, None, :] - self.centres[None, None]) ** 2).sum(-1)  # (b, H*W, K)
            indices.append(distances.argmin(-1))
        return np.concatenate(indices).astype("int32")

    def dequantize(self, indices, height, width):
        """Indices (B, H*W) -> images (B, H, W, C) of the centres' colours.

        Example:
        >>> Palette([[0.0], [1.0]]).dequantize(np.array([[0, 1, 1, 0]]), 2, 2)[..., 0].tolist()
        [[[0.0, 1.0], [1.0, 0.0]]]
        """
        indices = np.asarray(indices)
        return self.centres[indices].reshape(len(indices), height, width, self.centres.shape[1])


@keras.saving.register_keras_serializable(package="keras_tx")
class ImageGPT(GPT):
    """GPT over palette indices of downsampled pixels: `[start] p_1 p_2 ... p_{H*W}` -> next-pixel logits.

    It is a `keras_tx.models.GPT` (same blocks, same cached `generate`) with `num_colors + 1` tokens (the last is
    the start token) and `max_length = 1 + H*W`, plus the palette and the image <-> token conversions.

    Args:
        palette: a `Palette`, or its centres (num_colors, channels) in [0, 1].
        image_size: side (or (height, width)) of the token grid; images are downsampled to it (28 -> 14).
        num_layers, num_heads, hidden_dim, intermediate_dim, dropout, layer_norm_epsilon, dtype: as for `GPT`.

    Call arguments:
        token_ids: (batch, T) ids, T <= 1 + H*W; `sequences(images)[:, :-1]` for training.

    Returns:
        (batch, T, num_colors + 1) next-pixel logits.

    Example:
    >>> palette = Palette.fit(np.random.default_rng(0).random((4, 8, 8, 1)), num_colors=4)
    >>> igpt = ImageGPT(palette, image_size=4, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    >>> x, y = igpt.training_pairs(np.zeros((2, 8, 8, 1), "float32"))
    >>> x.shape, y.shape, tuple(igpt(x).shape)
    ((2, 16), (2, 16), (2, 16, 5))
    >>> igpt.complete(np.zeros((2, 8, 8, 1), "float32"), keep_rows=2, num_samples=3, seed=0).shape
    (2, 3, 4, 4, 1)
    """

    def __init__(
        self,
        palette,
        image_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        self.palette = palette if isinstance(palette, Palette) else Palette(palette)
        self.image_size = image_size
        self.grid_size = _pair(image_size)  # (h, w) of the token grid
        self.start_token_id = self.palette.num_colors
        height, width = self.grid_size
        super().__init__(
            vocabulary_size=self.palette.num_colors + 1,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            max_length=1 + height * width,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=dtype,
            **kwargs,
        )

    # --- images <-> tokens --------------------------------------------------------------------------------

    def downsample(self, images):
        """Images (B, H, W, C) -> (B, h, w, C) on the model's token grid (`downsample`)."""
        return downsample(images, self.grid_size)

    # Not `quantize` / `dequantize`: keras.Model.quantize(mode) means weight quantization (int8 ...).
    def quantize_images(self, images):
        """Images of any size -> (B, h*w) palette indices of the downsampled pixels in raster order."""
        return self.palette.quantize(self.downsample(images))

    def dequantize_images(self, indices, height=None, width=None):
        """(B, h*w) palette indices -> (B, h, w, C) images in [0, 1]."""
        height, width = (height, width) if height else self.grid_size
        return self.palette.dequantize(indices, height, width)

    def sequences(self, images):
        """Images -> (B, 1 + h*w) token ids: the start token, then the pixels' palette indices."""
        indices = self.quantize_images(images)
        start = np.full((len(indices), 1), self.start_token_id, "int32")
        return np.concatenate([start, indices], axis=1)

    def training_pairs(self, images):
        """Images -> (inputs, targets) for next-pixel training: the sequences shifted by one, (B, h*w) each."""
        tokens = self.sequences(images)
        return tokens[:, :-1], tokens[:, 1:]

    # --- generation ---------------------------------------------------------------------------------------

    def call_with_cache(self, token_ids, cache, cache_update_index):
        # The start token is never a pixel: give it no probability, so sampling can only draw colours.
        logits, hidden, cache = super().call_with_cache(token_ids, cache, cache_update_index)
        is_start = ops.arange(self.vocabulary_size) == self.start_token_id  # (V,)
        logits = ops.where(is_start, ops.cast(-1e9, logits.dtype), logits)
        return logits, hidden, cache

    def complete(self, images, keep_rows, num_samples=1, temperature=1.0, seed=None, sampler="random", top_k=None):
        """Keep the top `keep_rows` rows of each (downsampled, quantized) image and sample the rest, pixel by pixel.

        Args:
            images: (B, H, W, C) uint8 or [0, 1] floats; downsampled to the token grid.
            keep_rows: rows of the token grid given to the model (0 = sample whole images).
            num_samples: completions per image.
            temperature: of the sampling (lower = more conservative).
            seed: the same seed gives the same completions.
            sampler: "random", "top_k", "greedy", ... (see keras_tx.generation).
            top_k: for sampler="top_k".

        Returns:
            (B, num_samples, h, w, C) float32 images in [0, 1]; rows < keep_rows equal the quantized input's.
        """
        height, width = self.grid_size
        if not 0 <= keep_rows <= height:
            raise ValueError(f"keep_rows must be in 0..{height} (the token grid's height), got {keep_rows}.")
        tokens = self.sequences(images)  # (B, 1 + h*w)
        batch = len(tokens)
        prompt = np.repeat(tokens[:, : 1 + keep_rows * width], num_samples, axis=0)  # (B*S, 1 + keep*w)
        new = (height - keep_rows) * width
        if new:
            prompt = self.generate(prompt, new, sampler=sampler, temperature=temperature, top_k=top_k, seed=seed)
        pixels = np.minimum(prompt[:, 1:], self.palette.num_colors - 1)  # (B*S, h*w)
        return self.dequantize_images(pixels).reshape(batch, num_samples, height, width, -1)

    # --- representations ----------------------------------------------------------------------------------

    def linear_probe_features(self, images, layer=None, batch_size=128):
        """The mean over positions of the hidden state after block `layer`: features for a linear classifier.

        Args:
            images: (B, H, W, C); the whole sequence (start token + all pixels but the last) is read.
            layer: 1..num_layers, the block whose output is pooled; default the middle one (the paper finds
                the middle blocks' features best for linear probes: the last ones specialise in next-pixel
                prediction).
            batch_size: images per forward pass.

        Returns:
            numpy (B, hidden_dim) float32.

        Example:
        >>> igpt = ImageGPT([[0.0], [1.0]], 4, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16)
        >>> igpt.linear_probe_features(np.zeros((3, 4, 4, 1), "float32"), layer=1).shape
        (3, 8)
        """
        layer = max(1, self.num_layers // 2) if layer is None else layer
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}, got {layer}.")
        inputs, _ = self.training_pairs(images)  # (B, h*w)
        features = []
        for start in range(0, len(inputs), batch_size):
            x = self.token_embedding(inputs[start : start + batch_size])  # (b, T, D)
            x = x + self.position_embedding(x)
            for block in self.blocks[:layer]:
                x = block(x, training=False)
            features.append(ops.convert_to_numpy(ops.cast(ops.mean(x, axis=1), "float32")))  # (b, D)
        return np.concatenate(features)

    # --- serialization ------------------------------------------------------------------------------------

    def get_config(self):
        # The constructor's arguments (vocabulary_size and max_length follow from the palette and the image size).
        return {**super().get_config(), "palette": self.palette.centres.tolist()}
