"""Multi-head attention: several attentions side by side, on lower-dimensional projections of the sequence.

Step 5 of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> ... -> image GPT
(attention and self-attention are in attention.py). One head can only average one way; `num_heads` heads, each
with its own query, key and value projections of size `key_dim`, attend to different things at once, and a last
projection mixes their outputs back to the model's width:

    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V),    MultiHead(Q, K, V) = concat(head_1, ..., head_h) W^O

`MultiHeadAttention` is a drop-in for `keras.layers.MultiHeadAttention`: same constructor and call arguments,
same weights (names and shapes), so `set_weights` moves between the two. It adds a key/value cache for
incremental decoding (the same layout as keras-hub's: `(batch, 2, max_length, num_heads, key_dim)`).
"""

import inspect
import math

import keras
from keras import ops

from keras_tx.layers.attention import causal_mask, masked_softmax, scaled_dot_product_attention
from keras_tx.layers.common import clone_initializer as _clone
from keras_tx.layers.common import register as _register


@_register
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`, with a key/value cache.

    The query, key and value are each projected to `num_heads` heads (`key_dim` wide for queries and keys,
    `value_dim` for values), every head attends separately, and the heads' outputs are concatenated and
    projected back to the query's width (or `output_shape`). The projections are `keras.layers.EinsumDense`
    sublayers named and shaped as Keras' (`query`, `key`, `value`: kernel (D, N, H), bias (N, H);
    `attention_output`: kernel (N, H, D), bias (D,); with `use_gate`, `gate` like `value`), so
    `ours.set_weights(keras_mha.get_weights())` gives the same outputs, and Keras' per-sublayer machinery (LoRA
    with `layer.query_dense.enable_lora(r)`, `quantize("int8")`, dtype policy maps keyed by `"<name>/query"`)
    applies as it does to Keras' layer.

    When no attention scores are requested and no dropout is active, the attention runs through
    `keras.ops.dot_product_attention`, which uses the backend's fused kernel where it has one.

    Args:
        num_heads: number of attention heads.
        key_dim: width of each head's queries and keys.
        value_dim: width of each head's values; defaults to `key_dim`.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_shape: width (an int) or shape (a tuple) of each output vector; defaults to the query's last
            dimension.
        attention_axes: the axes attention runs over, for inputs with more than one axis between batch and
            features (e.g. `(2, 3)` for (batch, time, height, width, features)); `None`: all of them.
        sliding_window: if set, query i attends only to keys j with |i - j| < `sliding_window` (with
            `use_causal_mask`: the last `sliding_window` positions).
        flash_attention: passed to `keras.ops.dot_product_attention`; `None` lets the backend decide.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as for `keras.layers.Dense`, applied to every projection.
        use_gate: multiply each head's output by a sigmoid gate computed from the query (gated attention).
        seed: seed of the attention dropout.

    Call arguments:
        query: (B, T, D_q) (or (B, ..., D_q) with `attention_axes`).
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
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        **kwargs,
    ):
        for name, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if (value is not None or name != "value_dim") and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"Received an invalid value for argument `{name}`, expected a positive integer, "
                                 f"got {name}={value!r}.")
        if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window <= 0):
            raise ValueError(f"`sliding_window` must be None or a positive integer, got {sliding_window!r}.")
        super().__init__(**kwargs)
        self.supports_masking = True
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self._output_shape = _as_shape(output_shape)
        self._attention_axes = _as_axes(attention_axes)
        self._sliding_window = sliding_window
        self._flash_attention = flash_attention or keras.config.is_flash_attention_enabled()
        if self._flash_attention and dropout > 0:
            raise ValueError("Dropout is not supported when flash attention is enabled; set dropout=0.")
        self._use_gate = use_gate
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self._activity_regularizer = keras.regularizers.get(activity_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy)

    # Keras' names for the projections: the sublayers are `_query_dense` ..., read through these properties,
    # and saved under the property names (query_dense/...), as Keras' own layer saves them.
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)
    attention_axes = property(lambda self: self._attention_axes)

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        _check_key_value_shapes(value_shape, key_shape)
        if len(query_shape) < 3:
            raise ValueError(
                f"MultiHeadAttention expects (batch, length, features) inputs, or (batch, ..., features) with more "
                f"axes; got query {query_shape}, value {value_shape}, key {key_shape}."
            )
        n, h, v = self.num_heads, self.key_dim, self.value_dim
        # (B, T, D) x (D, N, H) -> (B, T, N, H); with more axes, (B, ..., D) -> (B, ..., N, H).
        # Created in Keras' order (the gate before the value), so that get_weights() lists them as Keras does.
        self._query_dense = self._projection("query", len(query_shape), (n, h))
        self._key_dense = self._projection("key", len(key_shape), (n, h))
        if self._use_gate:
            self._gate_dense = self._projection("gate", len(query_shape), (n, v), activation="sigmoid")
        self._value_dense = self._projection("value", len(value_shape), (n, v))
        # (B, T, N, H) x (N, H, D) -> (B, T, D).
        out = self._output_shape or query_shape[-1:]
        self._output_dense = self._projection("attention_output", len(query_shape) + 1, out, bound_dims=2)
        self._query_dense.build(query_shape)
        self._key_dense.build(key_shape)
        self._value_dense.build(value_shape)
        if self._use_gate:
            self._gate_dense.build(query_shape)
        self._output_dense.build(query_shape[:-1] + (n, v))
        self._build_attention(len(query_shape) + 1)

    def _projection(self, name, input_rank, output_dims, bound_dims=1, activation=None):
        equation, bias_axes = _projection_equation(input_rank - bound_dims, bound_dims, len(output_dims))
        return keras.layers.EinsumDense(
            equation,
            output_shape=(None,) * (input_rank - bound_dims - 1) + tuple(output_dims),
            bias_axes=bias_axes if self.use_bias else None,
            activation=activation,
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

    def _build_attention(self, rank):
        """The einsum equations of Q K^T and of weights x V for projected tensors of `rank` (4 for (B, T, N, H))."""
        axes = self._attention_axes or tuple(range(1, rank - 2))
        self._axes = tuple(a if a >= 0 else rank - 1 + a for a in axes)  # -1 is the features axis of the input
        if self._axes == (1,) and rank == 4:
            # (B, T, N, H) x (B, S, N, H) -> (B, N, T, S), and back.
            self._dot_product_equation, self._combine_equation = "btnh,bsnh->bnts", "bnts,bsnh->btnh"
        else:
            self._dot_product_equation, self._combine_equation = _attention_equations(rank, self._axes)

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
        if cache is not None and len(query.shape) != 3:
            raise ValueError(f"A `cache` needs (batch, length, features) inputs, got a query of shape {query.shape}.")
        q = self._query_dense(query)  # (B, T, N, H)
        if cache is None:
            k, v = self._key_dense(key), self._value_dense(value)  # (B, S, N, H)
        elif cache_update_index is None:
            k, v = cache[:, 0], cache[:, 1]  # reuse, e.g. cross-attention over a fixed encoder output
        else:
            start = [0, cache_update_index, 0, 0]
            k = ops.slice_update(cache[:, 0], start, ops.cast(self._key_dense(key), cache.dtype))
            v = ops.slice_update(cache[:, 1], start, ops.cast(self._value_dense(value), cache.dtype))
            cache = ops.stack((k, v), axis=1)
        # When causality is the only mask, no mask tensor: the backend applies it itself (on a GPU, cuDNN's
        # causal kernel). A subclass that overrides `_compute_attention` gets the mask, as from Keras' layer.
        only_causal = (
            use_causal_mask
            and cache is None
            and self._sliding_window is None
            and all(m is None for m in (query_mask, value_mask, key_mask, attention_mask))
            and type(self)._compute_attention is MultiHeadAttention._compute_attention
        )
        if only_causal:
            mask = None
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
        causal_kwargs = {"use_causal_mask": True} if only_causal else {}  # only then: Keras' hook signature
        output, weights = self._compute_attention(q, k, v, mask, training, return_attention_scores, **causal_kwargs)
        if self._use_gate:
            output = output * self._gate_dense(query)  # (B, T, N, H), a sigmoid gate per head and channel
        output = self._output_dense(output)  # (B, T, D)
        results = (output,)
        if return_attention_scores:
            results += (ops.cast(weights, self.compute_dtype),)
        if cache is not None:
            results += (cache,)
        return results[0] if len(results) == 1 else results

    def _compute_attention(
        self, query, key, value, attention_mask=None, training=None, return_attention_scores=False,
        use_causal_mask=False,
    ):
        """softmax(Q K^T / sqrt(d_k)) V over projected heads; returns (output, weights or None).

        Keras' override point, with its signature: query (B, T, N, H), key and value (B, S, N, H), attention_mask
        broadcastable to (B, T, S). `use_causal_mask` adds the causal mask to `attention_mask`.
        """
        if self._flash_attention and return_attention_scores:
            raise ValueError("Returning attention scores is not supported when flash attention is enabled.")
        scale = 1.0 / math.sqrt(self.key_dim)
        explicit = return_attention_scores or (self.dropout > 0 and training) or len(query.shape) != 4
        if use_causal_mask and (attention_mask is not None or explicit):
            causal = causal_mask(ops.shape(query)[1], ops.shape(key)[1])[None]  # (1, T, S)
            attention_mask = causal if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal
            )
            use_causal_mask = False
        if not explicit:
            mask = None if attention_mask is None else self._expand_mask(attention_mask, 4)  # (B|1, 1, T, S)
            output = ops.dot_product_attention(
                query, key, value, mask=mask, scale=scale, is_causal=use_causal_mask,
                flash_attention=self._flash_attention,
            )  # (B, T, N, H)
            return output, None
        # The same, written out: (B, T, N, H) x (B, S, N, H) -> (B, N, T, S) weights.
        scores = ops.einsum(self._dot_product_equation, query, key) * ops.cast(scale, query.dtype)
        mask = None if attention_mask is None else self._expand_mask(attention_mask, len(scores.shape))
        rank, num_axes = len(scores.shape), len(self._axes)
        weights = masked_softmax(scores, mask, axis=tuple(range(rank - num_axes, rank)) if num_axes > 1 else -1)
        dropped = self.dropout_layer(ops.cast(weights, value.dtype), training=training)
        return ops.einsum(self._combine_equation, dropped, value), weights  # (B, T, N, H)

    def _expand_mask(self, mask, rank):
        """A (B, T, S) mask (or (T, S), ...) with the head and other axes added: broadcastable to the scores."""
        mask = ops.cast(mask, "bool")
        while len(mask.shape) < rank:
            mask = ops.expand_dims(mask, -2 * len(self._axes) - 1)  # in front of the query's attention axes
        return mask

    def _merge_masks(
        self, query_length, key_length, query_mask, value_mask, key_mask, attention_mask, use_causal_mask, start
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
        if self._sliding_window is not None:
            parts.append(_band_mask(query_length, key_length, self._sliding_window, start)[None])  # (1, T, S)
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = ops.logical_and(mask, part)
        return mask

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        _check_key_value_shapes(value_shape, value_shape if key_shape is None else tuple(key_shape))
        return query_shape[:-1] + (self._output_shape or query_shape[-1:])

    def compute_output_spec(self, query, value, key=None, *args, **kwargs):
        """What `call` returns, as symbolic tensors: the output, the scores and the cache when they are returned.
        Takes `call`'s arguments."""
        arguments = inspect.signature(self.call).bind(query, value, key, *args, **kwargs).arguments
        return_attention_scores, cache = arguments.get("return_attention_scores"), arguments.get("cache")
        shape = self.compute_output_shape(query.shape, value.shape, None if key is None else key.shape)
        specs = (keras.KerasTensor(shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            rank = len(query.shape) + 1
            axes = tuple(a if a >= 0 else rank - 1 + a for a in (self._attention_axes or range(1, rank - 2)))
            others = [query.shape[i] for i in range(rank - 2) if i not in axes]  # batch and non-attention axes
            source = cache.shape[2:3] if cache is not None else [value.shape[a] for a in axes]
            scores = (*others, self.num_heads, *[query.shape[a] for a in axes], *source)
            specs += (keras.KerasTensor(scores, dtype=self.compute_dtype),)
        if cache is not None:
            specs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return specs[0] if len(specs) == 1 else specs

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
            attention_axes=self._attention_axes,
            sliding_window=self._sliding_window,
            kernel_initializer=serialize(self.kernel_initializer),
            bias_initializer=serialize(self.bias_initializer),
            kernel_regularizer=serialize(self.kernel_regularizer),
            bias_regularizer=serialize(self.bias_regularizer),
            activity_regularizer=serialize(self._activity_regularizer),
            kernel_constraint=serialize(self.kernel_constraint),
            bias_constraint=serialize(self.bias_constraint),
            use_gate=self._use_gate,
            seed=self.seed,
        )
        return config


# --- The generality of Keras' layer, kept out of the main path ------------------------------------------------


def _without_keras_mask(tensor):
    return ops.copy(tensor) if getattr(tensor, "_keras_mask", None) is not None else tensor


def _as_shape(output_shape):
    if not output_shape:
        return None
    if isinstance(output_shape, int):
        return (output_shape,)
    if not isinstance(output_shape, (tuple, list)) or not all(isinstance(d, int) for d in output_shape):
        raise ValueError(f"Invalid `output_shape`: {output_shape!r}; expected an int, or a tuple or list of ints.")
    return tuple(output_shape)


def _as_axes(attention_axes):
    if attention_axes is None:
        return None
    if isinstance(attention_axes, int):
        return (attention_axes,)
    if not isinstance(attention_axes, (tuple, list)):
        raise ValueError(f"`attention_axes` must be an int, list or tuple, got {attention_axes!r}.")
    return tuple(attention_axes)


def _check_key_value_shapes(value_shape, key_shape):
    if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
        raise ValueError(
            "All dimensions of `value` and `key`, except the last one, must be equal. "
            f"Received: value_shape={value_shape} and key_shape={key_shape}"
        )


def _band_mask(query_length, key_length, width, start=0):
    """Boolean (query_length, key_length) mask, True where |query position - key position| < width."""
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(start, "int32")
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.less(ops.abs(query_positions[:, None] - key_positions[None, :]), width)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _projection_equation(free_dims, bound_dims, output_dims):
    """EinsumDense equation and bias axes: `free_dims` kept, `bound_dims` contracted, `output_dims` produced.

    >>> _projection_equation(2, 1, 2)
    ('abc,cde->abde', 'de')
    """
    free, bound = _LETTERS[:free_dims], _LETTERS[free_dims:free_dims + bound_dims]
    out = _LETTERS[free_dims + bound_dims:free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _attention_equations(rank, axes):
    """Q K^T and weights x V equations for projected (B, ..., N, H) tensors attending over `axes`.

    The scores are laid out as Keras lays them out: (batch and other axes, N, query axes, key axes).

    >>> _attention_equations(5, (2,))
    ('abcde,abfde->abdcf', 'abdcf,abfde->abcde')
    """
    query = _LETTERS[:rank]
    key = "".join(_LETTERS[rank + axes.index(i)] if i in axes else query[i] for i in range(rank))
    others = "".join(query[i] for i in range(rank - 1) if i not in axes)  # batch, non-attention axes, heads
    scores = others + "".join(query[i] for i in axes) + "".join(key[i] for i in axes)
    return f"{query},{key}->{scores}", f"{scores},{key}->{query}"
