"""The Transformer blocks: encoder (self-attention + feed-forward) and decoder (+ causal mask, cross-attention).

Step 6 of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer. A block is
multi-head attention followed by a position-wise feed-forward network, each wrapped in a residual connection
and a layer normalization. Where the normalization sits matters:

    post-LN (the 2017 paper, BERT):   x = LN(x + Attention(x));   x = LN(x + FFN(x))
    pre-LN  (GPT-2, ViT):             x = x + Attention(LN(x));   x = x + FFN(LN(x))

Pre-LN keeps an unnormalized residual path from input to output and trains deep stacks without warm-up
tricks; post-LN is what the original models use. Both are here (`norm_first`). The decoder block masks the
future (position t sees only positions <= t), which lets a whole sequence train in one parallel pass while
generation runs one token at a time; its key/value cache makes each of those serial steps cost O(t) instead of
re-running the whole prefix.

With weights transferred, `TransformerEncoderBlock` and `TransformerDecoderBlock` compute what
`keras_hub.layers.TransformerEncoder` / `TransformerDecoder` compute (tests/layers/test_transformer.py).
"""

import keras
from keras import ops

from keras_tx.layers.multi_head_attention import MultiHeadAttention
from keras_tx.layers.common import clone_initializer as _clone
from keras_tx.layers.common import register as _register


@_register
class FeedForward(keras.layers.Layer):
    """The position-wise network: Dense(intermediate_dim, activation) -> Dense(width), applied to every token.

    Args:
        intermediate_dim: width of the hidden layer (4x the model width in most Transformers).
        activation: of the hidden layer ("relu" in the paper, "gelu" in GPT-2/BERT/ViT).
        dropout: rate after the hidden activation (0 to match keras-hub, which has none there).
        kernel_initializer, bias_initializer: of both layers.

    Example:
    >>> tuple(FeedForward(32)(keras.ops.zeros((2, 5, 8))).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.intermediate_dense = self._dense(intermediate_dim, self.activation, "intermediate_dense")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.output_dense = None

    def _dense(self, units, activation, name):
        return keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.output_dense = self._dense(input_shape[-1], None, "output_dense")
        self.intermediate_dense.build(input_shape)
        self.output_dense.build(input_shape[:-1] + (self.intermediate_dim,))

    def call(self, inputs, training=None):
        hidden = self.dropout_layer(self.intermediate_dense(inputs), training=training)
        return self.output_dense(hidden)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_dim": self.intermediate_dim,
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


class _Block(keras.layers.Layer):
    """What the encoder and decoder blocks share: configuration, sublayer factories, residual wiring."""

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        norm_first=False,
        key_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.norm_first = norm_first
        self.key_dim = key_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def _head_dim(self, hidden_dim):
        key_dim = self.key_dim or hidden_dim // self.num_heads
        if key_dim <= 0:
            raise ValueError(f"hidden_dim={hidden_dim} is too small for num_heads={self.num_heads}.")
        return key_dim

    def _attention(self, hidden_dim, name):
        return MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self._head_dim(hidden_dim),
            dropout=self.dropout,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, name):
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def _feedforward(self):
        return FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feedforward",
        )

    def _residual(self, x, norm, sublayer, dropout, training):
        """x + sublayer(x) with the normalization before (pre-LN) or after (post-LN). Returns (x, extras)."""
        y = norm(x) if self.norm_first else x
        y, *extras = _as_tuple(sublayer(y))
        x = x + dropout(y, training=training)
        return (x if self.norm_first else norm(x)), extras

    def set_weights_from_keras_hub(self, theirs):
        """Copy the weights of a keras_hub `TransformerEncoder` / `TransformerDecoder` into this block.

        keras-hub keeps its sublayers in private attributes and orders them differently from ours, so they are
        matched by role, not by position. Used by the models' `from_keras_hub` and by the equivalence tests.
        """
        pairs = [
            (self.self_attention, theirs._self_attention_layer),
            (self.self_attention_norm, theirs._self_attention_layer_norm),
            (self.feedforward.intermediate_dense, theirs._feedforward_intermediate_dense),
            (self.feedforward.output_dense, theirs._feedforward_output_dense),
            (self.feedforward_norm, theirs._feedforward_layer_norm),
        ]
        if getattr(self, "cross_attention", None) is not None:
            pairs += [
                (self.cross_attention, theirs._cross_attention_layer),
                (self.cross_attention_norm, theirs._cross_attention_layer_norm),
            ]
        for mine, their_layer in pairs:
            mine.set_weights(their_layer.get_weights())

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "norm_first": self.norm_first,
            "key_dim": self.key_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@_register
class TransformerEncoderBlock(_Block):
    """Self-attention over the whole sequence, then a feed-forward network (BERT, ViT, the paper's encoder).

    Args:
        num_heads: attention heads.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: rate on attention weights and on each sublayer's output.
        activation: of the feed-forward hidden layer.
        layer_norm_epsilon: of the layer normalizations.
        norm_first: pre-LN (True: GPT-2, ViT) or post-LN (False: the paper, BERT).
        key_dim: width of a head; defaults to hidden_dim // num_heads.
        kernel_initializer, bias_initializer: of all projections.

    Call arguments:
        inputs: (batch, T, hidden_dim).
        padding_mask: optional (batch, T), 1 = real token (also taken from a Keras mask on `inputs`).
        attention_mask: optional (batch, T, T), 1 = attend.
        return_attention_scores: also return the (batch, heads, T, T) weights.
        training: dropout on or off.

    Example:
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    >>> tuple(block(keras.ops.zeros((2, 5, 8))).shape)
    (2, 5, 8)
    """

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        hidden_dim = input_shape[-1]
        self.self_attention = self._attention(hidden_dim, "self_attention")
        self.self_attention.build(input_shape, input_shape)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_norm.build(input_shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.feedforward = self._feedforward()
        self.feedforward.build(input_shape)
        self.feedforward_norm = self._norm("feedforward_norm")
        self.feedforward_norm.build(input_shape)
        self.feedforward_dropout = self._dropout("feedforward_dropout")

    def call(
        self, inputs, padding_mask=None, attention_mask=None, return_attention_scores=False, training=None, mask=None
    ):
        # `mask` is the Keras mask Keras passes in when `inputs` carry one (e.g. an Embedding with mask_zero).
        mask = _merge_padding_and_attention_mask(mask if padding_mask is None else padding_mask, attention_mask)

        def attend(x):
            return self.self_attention(
                x, x, attention_mask=mask, return_attention_scores=return_attention_scores, training=training
            )

        x, extras = self._residual(inputs, self.self_attention_norm, attend, self.self_attention_dropout, training)
        x, _ = self._residual(
            x, self.feedforward_norm, lambda y: self.feedforward(y, training=training), self.feedforward_dropout,
            training,
        )
        return (x, extras[0]) if return_attention_scores else x


@_register
class TransformerDecoderBlock(_Block):
    """Causal self-attention, optional cross-attention to an encoder output, then a feed-forward network.

    Without an encoder sequence it is a GPT block; with one, the decoder block of the original Transformer.
    The cross-attention sublayer is created on the first call that passes `encoder_sequence` (build-time
    shapes decide it, as in keras-hub).

    Args:
        num_heads, intermediate_dim, dropout, activation, layer_norm_epsilon, norm_first, key_dim,
        kernel_initializer, bias_initializer: as for `TransformerEncoderBlock`.

    Call arguments:
        decoder_sequence: (batch, T, hidden_dim).
        encoder_sequence: optional (batch, S_enc, hidden_dim) for cross-attention.
        decoder_padding_mask: optional (batch, T), or (batch, S_max) over the cache when a cache is given.
        encoder_padding_mask: optional (batch, S_enc).
        self_attention_cache: optional (batch, 2, S_max, heads, key_dim) keys/values of earlier positions.
        self_attention_cache_update_index: position of the first of this call's tokens.
        cross_attention_cache: optional (batch, 2, S_enc, heads, key_dim): the encoder's keys/values,
            computed once (pass `cross_attention_cache_update_index=0` on the first step, None after).
        cross_attention_cache_update_index: 0 to fill the cross-attention cache, None to reuse it.
        use_causal_mask: mask the future (default True).
        return_attention_scores: also return the self-attention weights (batch, heads, T, S).
        training: dropout on or off.

    Returns:
        The output, then the self-attention weights if requested, then the updated caches if caches were given
        (self, then cross when the block has cross-attention).

    Example:
    >>> block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    >>> tuple(block(keras.ops.zeros((2, 5, 8))).shape)
    (2, 5, 8)
    """

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        decoder_sequence_shape = tuple(decoder_sequence_shape)
        hidden_dim = decoder_sequence_shape[-1]
        self.self_attention = self._attention(hidden_dim, "self_attention")
        self.self_attention.build(decoder_sequence_shape, decoder_sequence_shape)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_norm.build(decoder_sequence_shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.cross_attention = None
        if encoder_sequence_shape is not None:
            encoder_sequence_shape = tuple(encoder_sequence_shape)
            self.cross_attention = self._attention(hidden_dim, "cross_attention")
            self.cross_attention.build(decoder_sequence_shape, encoder_sequence_shape)
            self.cross_attention_norm = self._norm("cross_attention_norm")
            self.cross_attention_norm.build(decoder_sequence_shape)
            self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self.feedforward = self._feedforward()
        self.feedforward.build(decoder_sequence_shape)
        self.feedforward_norm = self._norm("feedforward_norm")
        self.feedforward_norm.build(decoder_sequence_shape)
        self.feedforward_dropout = self._dropout("feedforward_dropout")

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
    ):
        has_cross = self.cross_attention is not None
        if has_cross != (encoder_sequence is not None):
            raise ValueError(
                "TransformerDecoderBlock was built "
                + ("with" if has_cross else "without")
                + " cross-attention; call it with the same inputs every time "
                "(`encoder_sequence` given on every call, or on none)."
            )
        self_mask = None if decoder_padding_mask is None else ops.cast(decoder_padding_mask, "bool")[:, None, :]

        def self_attend(x):
            return self.self_attention(
                x,
                x,
                attention_mask=self_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                training=training,
            )

        x, extras = self._residual(
            decoder_sequence, self.self_attention_norm, self_attend, self.self_attention_dropout, training
        )
        caches = []
        if self_attention_cache is not None:
            caches.append(extras[-1])
        if has_cross:
            cross_mask = None
            if encoder_padding_mask is not None:
                cross_mask = ops.cast(encoder_padding_mask, "bool")[:, None, :]  # (B, 1, S_enc)

            def cross_attend(x):
                return self.cross_attention(
                    x,
                    encoder_sequence,
                    attention_mask=cross_mask,
                    cache=cross_attention_cache,
                    cache_update_index=cross_attention_cache_update_index,
                    training=training,
                )

            x, cross_extras = self._residual(
                x, self.cross_attention_norm, cross_attend, self.cross_attention_dropout, training
            )
            if cross_attention_cache is not None:
                caches.append(cross_extras[-1])
        x, _ = self._residual(
            x, self.feedforward_norm, lambda y: self.feedforward(y, training=training), self.feedforward_dropout,
            training,
        )
        results = (x,) + ((extras[0],) if return_attention_scores else ()) + tuple(caches)
        return results[0] if len(results) == 1 else results


def _merge_padding_and_attention_mask(padding_mask, attention_mask):
    """A (batch, T) padding mask and a (batch, T, S) attention mask as one (batch, T|1, S) boolean mask."""
    mask = None
    if padding_mask is not None:
        mask = ops.cast(padding_mask, "bool")[:, None, :]
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
    return mask


def _as_tuple(outputs):
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
