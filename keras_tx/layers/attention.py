"""Attention -> self-attention (-> multi-head attention, in multi_head_attention.py).

Step 3 to 5 of the line RNN -> LSTM -> attention -> ... -> image GPT. An RNN squeezes the whole past into one
state vector; attention instead lets every output position look back at every input position directly and
take a weighted average of them, the weights coming from how well a query matches each key:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Dividing by sqrt(d_k) keeps the dot products at unit scale as d_k grows; without it the softmax saturates
(one weight near 1, the rest near 0) and its gradients vanish (tests/layers/test_attention.py shows both).
Self-attention takes Q, K and V from the same sequence; multi-head attention runs several attentions side by
side on lower-dimensional projections, so that different heads can attend to different things.

Multi-head attention, built from these pieces, is in `keras_tx.layers.multi_head_attention`.
"""

import math

import keras
from keras import ops

from keras_tx.layers.common import clone_initializer as _clone
from keras_tx.layers.common import register as _register


# Added to the scores of masked positions. Finite, so that a fully masked row gives a uniform distribution
# (as Keras does) instead of NaN; softmax runs in float32, where -1e9 is representable.
_MASK_VALUE = -1e9


def masked_softmax(scores, mask=None, axis=-1):
    """Softmax over `axis` in float32, with positions where `mask` is 0/False given zero weight.

    Args:
        scores: float tensor of attention logits, any dtype.
        mask: optional tensor broadcastable to `scores`, 1/True = attend.
        axis: the axis (or a tuple of axes) to normalize over.

    Returns:
        float32 weights with the shape of `scores`.

    Example:
    >>> w = masked_softmax(keras.ops.zeros((1, 3)), keras.ops.convert_to_tensor([[1, 1, 0]]))
    >>> [round(float(x), 3) for x in w[0]]
    [0.5, 0.5, 0.0]
    """
    scores = ops.cast(scores, "float32")
    if mask is not None:
        scores = ops.where(ops.cast(mask, "bool"), scores, _MASK_VALUE)
    if isinstance(axis, tuple):  # attention over several axes at once (MultiHeadAttention's attention_axes)
        return ops.exp(scores - ops.logsumexp(scores, axis=axis, keepdims=True))
    return ops.softmax(scores, axis=axis)


def causal_mask(query_length, key_length, start=0):
    """Boolean (query_length, key_length) mask, True where key position <= query position.

    `start` is the absolute position of the first query, so that a query block at the end of a cache (incremental
    decoding) sees the cache up to and including itself.

    Example:
    >>> keras.ops.convert_to_numpy(causal_mask(2, 3, start=1)).astype(int).tolist()
    [[1, 1, 0], [1, 1, 1]]
    """
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(start, "int32")
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.greater_equal(query_positions[:, None], key_positions[None, :])


def scaled_dot_product_attention(query, key, value, mask=None, scale=None):
    """softmax(Q K^T / sqrt(d_k)) V, the attention of "Attention Is All You Need".

    Args:
        query: (..., T, d_k) queries.
        key: (..., S, d_k) keys.
        value: (..., S, d_v) values.
        mask: optional, broadcastable to (..., T, S); 1/True = attend.
        scale: the factor applied to Q K^T; defaults to 1 / sqrt(d_k). Pass `1.0` to see what the
            scale is for.

    Returns:
        `(output, weights)`: output (..., T, d_v) in the dtype of `value`, weights (..., T, S) in float32,
        each row a probability distribution over the S keys.

    Example:
    >>> q = k = v = keras.ops.ones((2, 5, 8))
    >>> out, w = scaled_dot_product_attention(q, k, v)
    >>> tuple(out.shape), tuple(w.shape)
    ((2, 5, 8), (2, 5, 5))
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) * ops.cast(scale, query.dtype)  # (..., T, S)
    weights = masked_softmax(scores, mask)
    output = ops.matmul(ops.cast(weights, value.dtype), value)  # (..., T, d_v)
    return output, weights


@_register
class SelfAttention(keras.layers.Layer):
    """One attention head whose queries, keys and values all come from the same sequence.

    Three learned projections map each input vector x_t to q_t, k_t, v_t (each `units` wide); output t is the
    attention-weighted average of the v's, weighted by how well q_t matches each k. Without positions the
    layer is permutation-equivariant: shuffling the tokens shuffles the outputs the same way.

    Args:
        units: width of the queries, keys, values and of the output.
        use_causal_mask: if True, position t only attends to positions <= t.
        use_bias: whether the projections have biases.
        kernel_initializer: initializer of the projection kernels.

    Call arguments:
        inputs: (batch, T, features).
        mask: optional (batch, T) padding mask (1 = real token); padded keys get zero weight.
        return_attention_scores: also return the (batch, T, T) weights.

    Example:
    >>> layer = SelfAttention(16)
    >>> tuple(layer(keras.ops.ones((2, 7, 4))).shape)
    (2, 7, 16)
    """

    def __init__(self, units, use_causal_mask=False, use_bias=True, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.use_causal_mask = use_causal_mask
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True
        self.query_dense, self.key_dense, self.value_dense = (
            keras.layers.Dense(
                units,
                use_bias=use_bias,
                kernel_initializer=_clone(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )
            for name in ("query", "key", "value")
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for dense in (self.query_dense, self.key_dense, self.value_dense):
            dense.build(input_shape)

    def call(self, inputs, mask=None, return_attention_scores=False):
        q, k, v = self.query_dense(inputs), self.key_dense(inputs), self.value_dense(inputs)  # (B, T, U) each
        attend = None
        if mask is not None:
            attend = ops.cast(mask, "bool")[:, None, :]  # (B, 1, S): no query attends to a padded key
        if self.use_causal_mask:
            length = ops.shape(inputs)[1]
            causal = causal_mask(length, length)[None]  # (1, T, S)
            attend = causal if attend is None else ops.logical_and(attend, causal)
        output, weights = scaled_dot_product_attention(q, k, v, attend)
        return (output, weights) if return_attention_scores else output

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            use_causal_mask=self.use_causal_mask,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
