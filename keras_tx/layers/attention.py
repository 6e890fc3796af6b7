"""Attention -> self-attention -> multi-head attention.

Step 3 to 5 of the line RNN -> LSTM -> attention -> ... -> image GPT. An RNN squeezes the whole past into one
state vector; attention instead lets every output position look back at every input position directly and
take a weighted average of them, the weights coming from how well a query matches each key:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Dividing by sqrt(d_k) keeps the dot products at unit scale as d_k grows; without it the softmax saturates
(one weight near 1, the rest near 0) and its gradients vanish (tests/layers/test_attention.py shows both).
Self-attention takes Q, K and V from the same sequence; multi-head attention runs several attentions side by
side on lower-dimensional projections, so that different heads can attend to different things.

`MultiHeadAttention` is a drop-in for `keras.layers.MultiHeadAttention`: same constructor and call arguments,
same weights (names and shapes), so `set_weights` moves between the two. It adds a key/value cache for
incremental decoding (the same layout as keras-hub's: `(batch, 2, max_length, num_heads, key_dim)`).
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
        axis: the axis to normalize over.

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


@_register
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`, with a key/value cache.

    The query, key and value are each projected to `num_heads` heads (`key_dim` wide for queries and keys,
    `value_dim` for values), every head attends separately, and the heads' outputs are concatenated and
    projected back to the query's width (or `output_shape`). The weights are four `EinsumDense` layers named
    and shaped as Keras' (`query`, `key`, `value`: kernel (D, N, H), bias (N, H); `attention_output`: kernel
    (N, H, D), bias (D,)), so `ours.set_weights(keras_mha.get_weights())` gives the same outputs.

    When no attention scores are requested and no dropout is active, the attention runs through
    `keras.ops.dot_product_attention`, which uses the backend's fused kernel where it has one.

    Args:
        num_heads: number of attention heads.
        key_dim: width of each head's queries and keys.
        value_dim: width of each head's values; defaults to `key_dim`.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_shape: width (or shape) of the output; defaults to the query's last dimension.
        attention_axes: only `None` (attention over the sequence axis) is supported.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as for `keras.layers.Dense`, applied to all four projections.
        seed: seed of the attention dropout.

    Call arguments:
        query: (B, T, D_q).
        value: (B, S, D_v).
        key: (B, S, D_k), defaults to `value`.
        query_mask, value_mask, key_mask: optional (B, T) / (B, S) padding masks (taken from Keras masks
            when the inputs carry them).
        attention_mask: optional (B, T, S), 1/True = attend.
        return_attention_scores: also return the (B, N, T, S) attention weights.
        training: whether dropout is active.
        use_causal_mask: query t attends only to keys <= t (its absolute position when a cache is used).
        cache: optional (B, 2, S_max, N, H) keys and values of earlier steps.
        cache_update_index: where the keys/values of this call's `key`/`value` go in `cache` (the absolute
            position of the first query). `None` with a cache means: use the cache as it is (e.g. cached
            cross-attention keys of an encoder output).

    Returns:
        `output`, plus `attention_scores` if requested, plus the updated `cache` if one was given, in that
        order.

    Example:
    >>> mha = MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = keras.ops.ones((1, 3, 8))
    >>> tuple(mha(x, x, use_causal_mask=True).shape)
    (1, 3, 8)
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}.")
        if value_dim is not None and (not isinstance(value_dim, int) or value_dim <= 0):
            raise ValueError(f"`value_dim` must be a positive integer or None, got value_dim={value_dim!r}.")
        if attention_axes not in (None, 1, (1,), [1]):
            raise ValueError(
                f"Only attention over the sequence axis is supported, got attention_axes={attention_axes!r}."
            )
        self.supports_masking = True
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        self._output_shape = tuple(output_shape) if output_shape else None
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self._activity_regularizer = keras.regularizers.get(activity_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy)

    def _projection(self, name, equation, output_shape, bias_axes):
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self._activity_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if len(query_shape) != 3 or len(value_shape) != 3 or len(key_shape) != 3:
            raise ValueError(
                "MultiHeadAttention expects (batch, length, features) inputs, got query "
                f"{query_shape}, value {value_shape}, key {key_shape}."
            )
        n, h, v = self.num_heads, self.key_dim, self.value_dim
        # Keras' equations and names, so that the weights are interchangeable: (B, T, D) x (D, N, H) -> (B, T, N, H).
        self.query_dense = self._projection("query", "abc,cde->abde", (None, n, h), "de")
        self.key_dense = self._projection("key", "abc,cde->abde", (None, n, h), "de")
        self.value_dense = self._projection("value", "abc,cde->abde", (None, n, v), "de")
        out_dims = self._output_shape or (query_shape[-1],)
        if len(out_dims) != 1:
            raise ValueError(f"`output_shape` must have one dimension, got {self._output_shape}.")
        self.output_dense = self._projection("attention_output", "abcd,cde->abe", (None, out_dims[0]), "e")
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.output_dense.build((query_shape[0], query_shape[1], n, v))

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
    ):
        if key is None:
            key = value
        # The masks arrive as arguments (Keras fills query_mask/value_mask/key_mask from the inputs); drop them
        # from the tensors so that the projections do not warn about a mask they cannot use.
        query, value, key = (_without_keras_mask(t) for t in (query, value, key))
        if cache is None and cache_update_index is not None:
            raise ValueError("`cache_update_index` was given without a `cache`.")
        q = self.query_dense(query)  # (B, T, N, H)
        if cache is None:
            k, v = self.key_dense(key), self.value_dense(value)  # (B, S, N, H)
        elif cache_update_index is None:
            k, v = cache[:, 0], cache[:, 1]  # reuse, e.g. cross-attention over a fixed encoder output
        else:
            start = [0, cache_update_index, 0, 0]
            k = ops.slice_update(cache[:, 0], start, ops.cast(self.key_dense(key), cache.dtype))
            v = ops.slice_update(cache[:, 1], start, ops.cast(self.value_dense(value), cache.dtype))
            cache = ops.stack((k, v), axis=1)
        scale = 1.0 / math.sqrt(self.key_dim)
        dropout_active = self.dropout > 0 and training
        explicit = return_attention_scores or dropout_active
        only_causal = use_causal_mask and cache is None and all(
            m is None for m in (query_mask, value_mask, key_mask, attention_mask)
        )
        if only_causal and not explicit:
            # No mask tensor: the backend applies causality itself (on a GPU, cuDNN's built-in causal mask
            # instead of a (T, S) bias read by every head).
            output = ops.dot_product_attention(q, k, v, scale=scale, is_causal=True)  # (B, T, N, H)
            weights = None
        else:
            mask = self._merge_masks(
                ops.shape(q)[1],
                ops.shape(k)[1],
                query_mask,
                value_mask if cache is None else None,  # padding masks describe `value`, not a cache's length
                key_mask if cache is None else None,
                attention_mask,
                use_causal_mask,
                0 if cache_update_index is None else cache_update_index,
            )
            if explicit:
                # Explicit weights: (B, T, N, H) x (B, S, N, H) -> (B, N, T, S).
                scores = ops.einsum("btnh,bsnh->bnts", q, k) * ops.cast(scale, q.dtype)
                weights = masked_softmax(scores, None if mask is None else mask[:, None])
                dropped = self.dropout_layer(ops.cast(weights, v.dtype), training=training)
                output = ops.einsum("bnts,bsnh->btnh", dropped, v)  # (B, T, N, H)
            else:
                weights = None
                output = ops.dot_product_attention(
                    q, k, v, mask=None if mask is None else mask[:, None], scale=scale
                )  # (B, T, N, H)
        output = self.output_dense(output)  # (B, T, D)
        results = (output,)
        if return_attention_scores:
            results += (ops.cast(weights, self.compute_dtype),)
        if cache is not None:
            results += (cache,)
        return results[0] if len(results) == 1 else results

    @staticmethod
    def _merge_masks(
        query_length, key_length, query_mask, value_mask, key_mask, attention_mask, use_causal_mask, start
    ):
        """All masks as one boolean (B|1, T, S) tensor, or None when nothing is masked."""
        parts = []
        if query_mask is not None:
            parts.append(ops.cast(query_mask, "bool")[:, :, None])  # (B, T, 1)
        for padding in (value_mask, key_mask):
            if padding is not None:
                parts.append(ops.cast(padding, "bool")[:, None, :])  # (B, 1, S)
        if attention_mask is not None:
            parts.append(ops.cast(attention_mask, "bool"))  # (B, T, S)
        if use_causal_mask:
            parts.append(causal_mask(query_length, key_length, start)[None])  # (1, T, S)
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = ops.logical_and(mask, part)
        return mask

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        return query_shape[:-1] + (self._output_shape or query_shape[-1:])

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            dropout=self.dropout,
            use_bias=self.use_bias,
            output_shape=self._output_shape,
            attention_axes=None,
            kernel_initializer=serialize(self.kernel_initializer),
            bias_initializer=serialize(self.bias_initializer),
            kernel_regularizer=serialize(self.kernel_regularizer),
            bias_regularizer=serialize(self.bias_regularizer),
            activity_regularizer=serialize(self._activity_regularizer),
            kernel_constraint=serialize(self.kernel_constraint),
            bias_constraint=serialize(self.bias_constraint),
            seed=self.seed,
        )
        return config



def _without_keras_mask(tensor):
    return ops.copy(tensor) if getattr(tensor, "_keras_mask", None) is not None else tensor
