"""Embeddings: turning tokens, positions and image patches into vectors.

Attention is permutation-equivariant: it sees a set, not a sequence. Order comes back in through position
information added to the token vectors: a fixed sinusoidal encoding (the original Transformer) or a learned
table (GPT, BERT, ViT). Images become sequences the same way: ViT cuts an image into patches and embeds each
patch linearly, prepending a learned class token whose final state summarizes the image; image GPT embeds
palette indices of pixels exactly like text tokens.
"""

import math

import keras
from keras import ops

from keras_tx.layers.common import clone_initializer as _clone
from keras_tx.layers.common import register as _register



@_register
class TokenEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` that can also run backwards: hidden states -> logits over the vocabulary.

    Tying the output projection to the input embedding (GPT-2, BERT) saves `vocabulary_size * dim` parameters
    and ties the meaning of "predict token v" to "read token v".

    Call arguments:
        inputs: integer token ids, or hidden states when `reverse=True`.
        reverse: compute `inputs @ embeddings^T` (logits) instead of a lookup.

    Example:
    >>> emb = TokenEmbedding(10, 4)
    >>> tuple(emb(emb(keras.ops.ones((2, 3), "int32")), reverse=True).shape)
    (2, 3, 10)
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        return ops.matmul(inputs, ops.transpose(ops.cast(self.embeddings, inputs.dtype)))

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape)[:-1] + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse=False):
        # Keras' Embedding defines compute_output_spec without `reverse`; symbolic (functional) calls need it.
        if not reverse:
            return super().compute_output_spec(inputs)
        return keras.KerasTensor(self.compute_output_shape(inputs.shape, reverse=True), dtype=self.compute_dtype)

    def compute_mask(self, inputs, mask=None, reverse=False):
        return None if reverse else super().compute_mask(inputs, mask)


@_register
class PositionEmbedding(keras.layers.Layer):
    """A learned vector per position, `sequence_length` of them (GPT-2, BERT, ViT).

    Args:
        sequence_length: the longest sequence the table covers.
        initializer: of the table.

    Call arguments:
        inputs: (batch, T, dim); only the shape is used.
        start_index: position of the first element (for incremental decoding).

    Returns:
        (batch, T, dim) position vectors, to be added to the inputs.

    Example:
    >>> tuple(PositionEmbedding(16)(keras.ops.zeros((2, 5, 8))).shape)
    (2, 5, 8)
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True  # positions do not care about padding; pass the mask on

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            (self.sequence_length, input_shape[-1]), self.initializer, name="embeddings"
        )

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[-2]
        table = ops.convert_to_tensor(self.embeddings)
        positions = ops.slice(table, (start_index, 0), (length, table.shape[-1]))  # (T, dim)
        return ops.broadcast_to(ops.cast(positions, self.compute_dtype), ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        # Without it, a symbolic call with an unknown length fails under JAX (its shape inference cannot slice).
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "sequence_length": self.sequence_length,
            "initializer": keras.initializers.serialize(self.initializer),
        }


@_register
class SinusoidalPositionEncoding(keras.layers.Layer):
    """The fixed encoding of "Attention Is All You Need": PE(p, 2i) = sin(p / w^(2i/d)), PE(p, 2i+1) = cos(...).

    Each pair of dimensions is a rotation at its own frequency, so PE(p + k) is a linear function of PE(p):
    relative offsets are easy to read off, and any length is covered without learned parameters.

    Args:
        max_wavelength: w above; 10000 in the paper.

    Call arguments:
        inputs: (batch, T, dim); only the shape is used.
        start_index: position of the first element.

    Example:
    >>> tuple(SinusoidalPositionEncoding()(keras.ops.zeros((1, 4, 6))).shape)
    (1, 4, 6)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.supports_masking = True

    def call(self, inputs, start_index=0):
        length, dim = ops.shape(inputs)[-2], inputs.shape[-1]
        positions = ops.cast(ops.arange(length) + start_index, "float32")  # (T,)
        pair = ops.cast(2 * (ops.arange(dim) // 2), "float32")  # 0, 0, 2, 2, 4, 4, ...
        frequencies = ops.exp(-math.log(self.max_wavelength) * pair / dim)  # (dim,)
        angles = positions[:, None] * frequencies[None, :]  # (T, dim)
        even = ops.equal(ops.arange(dim) % 2, 0)
        encoding = ops.where(even[None, :], ops.sin(angles), ops.cos(angles))
        return ops.broadcast_to(ops.cast(encoding, self.compute_dtype), ops.shape(inputs))

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@_register
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding plus learned position embedding, the input layer of GPT and BERT.

    Args:
        vocabulary_size: number of token ids.
        sequence_length: the longest sequence.
        embedding_dim: width of the vectors.
        mask_zero: treat id 0 as padding and propagate a Keras mask.
        embeddings_initializer: of both tables.

    Call arguments:
        inputs: (batch, T) token ids.
        start_index: position of the first token (for incremental decoding).

    Example:
    >>> tuple(TokenAndPositionEmbedding(50, 16, 8)(keras.ops.ones((2, 5), "int32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        mask_zero=False,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.mask_zero = mask_zero
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.token_embedding = TokenEmbedding(
            vocabulary_size,
            embedding_dim,
            embeddings_initializer=_clone(self.embeddings_initializer),
            mask_zero=mask_zero,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            sequence_length,
            initializer=_clone(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.supports_masking = mask_zero

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.token_embedding.build(input_shape)
        self.position_embedding.build(input_shape + (self.embedding_dim,))

    def call(self, inputs, start_index=0):
        tokens = self.token_embedding(inputs)
        return tokens + self.position_embedding(tokens, start_index=start_index)

    def compute_mask(self, inputs, mask=None):
        return self.token_embedding.compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "embedding_dim": self.embedding_dim,
            "mask_zero": self.mask_zero,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }


@_register
class PatchEmbedding(keras.layers.Layer):
    """Cut an image into non-overlapping `patch_size` squares and project each linearly to `hidden_dim` (ViT).

    A convolution with kernel = stride = patch size is exactly "flatten each patch, multiply by one matrix".
    Patches come out in raster order (row by row).

    Args:
        patch_size: side of a square patch; the image sides must be multiples of it.
        hidden_dim: width of a patch token.
        kernel_initializer: of the projection.

    Call arguments:
        inputs: (batch, height, width, channels) images.

    Returns:
        (batch, num_patches, hidden_dim).

    Example:
    >>> tuple(PatchEmbedding(4, 32)(keras.ops.zeros((2, 28, 28, 1))).shape)
    (2, 49, 32)
    """

    def __init__(self, patch_size, hidden_dim, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Conv2D(
            hidden_dim,
            kernel_size=patch_size,
            strides=patch_size,
            padding="valid",
            kernel_initializer=_clone(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(f"PatchEmbedding expects (batch, height, width, channels) images, got {input_shape}.")
        for side in input_shape[1:3]:
            if side is not None and side % self.patch_size:
                raise ValueError(
                    f"Image sides must be multiples of patch_size={self.patch_size}, got {input_shape[1:3]}."
                )
        self.projection.build(input_shape)

    def call(self, inputs):
        patches = self.projection(inputs)  # (B, H/p, W/p, D)
        shape = ops.shape(patches)
        return ops.reshape(patches, (shape[0], shape[1] * shape[2], self.hidden_dim))  # (B, P, D)

    def compute_output_shape(self, input_shape):
        batch, height, width = tuple(input_shape)[:3]
        count = None if height is None or width is None else (height // self.patch_size) * (width // self.patch_size)
        return (batch, count, self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@_register
class ClassToken(keras.layers.Layer):
    """Prepend one learned vector to every sequence; its final state is read out as the sequence summary.

    Call arguments:
        inputs: (batch, T, dim).

    Returns:
        (batch, T + 1, dim), the learned token first.

    Example:
    >>> tuple(ClassToken()(keras.ops.zeros((2, 49, 32))).shape)
    (2, 50, 32)
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight((1, 1, input_shape[-1]), self.initializer, name="token")

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.broadcast_to(ops.cast(self.token, inputs.dtype), (batch, 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, dim = tuple(input_shape)
        return (batch, None if length is None else length + 1, dim)

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}

