"""GPT: a stack of Transformer decoder blocks trained to predict the next token.

Step 7 of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer -> GPT
-> BERT -> ViT -> image GPT. GPT keeps only the decoder of the Transformer (no encoder, no cross-attention)
and trains it as a language model: position t predicts token t + 1. The causal mask makes that one parallel
pass over a whole sequence, every position a training example, with no position seeing its own answer.
What GPT-2 adds to the 2017 decoder:

- pre-LN blocks (`x + Attention(LN(x))`) and a final LayerNorm, which train deep stacks without warm-up tricks;
- learned position embeddings, GELU (tanh approximation) in the feed-forward network, N(0, 0.02) weights;
- the output projection tied to the token embedding: logits = h @ E^T.

Pretraining on raw text then gives a backbone that can be fine-tuned for a task (`GPTClassifier`), and
generation (`GPT.generate`, keras_tx/generation.py) reuses each step's keys and values through a cache.

`GPT.from_keras_hub` copies the weights of a `keras_hub.models.GPT2Backbone`; the logits then match keras-hub's
(tests/models/test_gpt.py), so OpenAI's GPT-2 weights can be loaded through keras-hub's presets.
"""

import keras
from keras import ops

from keras_tx import generation
from keras_tx.layers import PositionEmbedding, TokenEmbedding, TransformerDecoderBlock
from keras_tx.layers.common import gelu_approximate
from keras_tx.layers.common import register as _register
from keras_tx.models.common import ConstructorConfig, copy_keras_hub_weights




def _gpt2_initializer():
    return keras.initializers.RandomNormal(stddev=0.02)


@_register
class GPT(ConstructorConfig, keras.Model):
    """The GPT-2 language model: token ids (batch, T) in, next-token logits (batch, T, vocabulary_size) out.

    Args:
        vocabulary_size: number of token ids.
        num_layers: number of decoder blocks.
        num_heads: attention heads per block; must divide `hidden_dim`.
        hidden_dim: width of the token vectors.
        intermediate_dim: width of the feed-forward hidden layer (4 * hidden_dim in GPT-2).
        max_length: the longest sequence (size of the position table), prompt plus generated tokens included.
        dropout: rate after the embeddings, on attention weights and after each sublayer (training only).
        layer_norm_epsilon: of every LayerNorm.
        dtype: dtype policy, e.g. "mixed_bfloat16".

    Example:
    >>> gpt = GPT(vocabulary_size=65, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=64, max_length=32)
    >>> tuple(gpt(keras.ops.zeros((2, 8), "int32")).shape)
    (2, 8, 65)
    >>> gpt.generate([1, 2, 3], max_new_tokens=5).shape
    (8,)
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_length,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        if hidden_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_dim={hidden_dim}.")
        # === Layers ===
        self.token_embedding = TokenEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=_gpt2_initializer(), dtype=dtype, name="token_embedding"
        )
        self.position_embedding = PositionEmbedding(
            max_length, initializer=_gpt2_initializer(), dtype=dtype, name="position_embedding"
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.blocks = [
            TransformerDecoderBlock(
                num_heads,
                intermediate_dim,
                dropout=dropout,
                activation=gelu_approximate,
                layer_norm_epsilon=layer_norm_epsilon,
                norm_first=True,
                kernel_initializer=_gpt2_initializer(),
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="layer_norm")

        # === Functional model: ids -> hidden states -> logits through the transposed token embedding ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        logits = self.token_embedding(self.hidden_states(token_ids), reverse=True)
        super().__init__(inputs=token_ids, outputs=logits, dtype=dtype, **kwargs)
        self.keep_arguments(locals())  # === Config: vocabulary_size, num_layers, ... as attributes ===

    def hidden_states(self, token_ids, training=None):
        """The final (LayerNorm-ed) hidden states (batch, T, hidden_dim): what the heads read."""
        x = self.token_embedding(token_ids)  # (B, T, D)
        x = x + self.position_embedding(x)
        x = self.embeddings_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)  # causal self-attention, then feed-forward
        return self.layer_norm(x)

    # --- generation ---------------------------------------------------------------------------------------

    def initial_cache(self, batch_size, length):
        """An empty key/value cache for `length` positions: (batch, num_layers, 2, length, heads, head_dim)."""
        head_dim = self.hidden_dim // self.num_heads
        shape = (batch_size, self.num_layers, 2, length, self.num_heads, head_dim)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Run `token_ids` (batch, T), the tokens at positions index..index+T-1, through the model with a cache.

        Their keys and values are written into `cache` at `cache_update_index`; their queries attend to the
        cache up to their own position. Prefill is one call with the prompt at index 0, then one call per token.

        Returns:
            (logits (batch, T, vocabulary_size), hidden states (batch, T, hidden_dim), the updated cache).
        """
        x = self.token_embedding(token_ids)  # (B, T, D)
        # Positions index..index+T-1 by gather, not PositionEmbedding's slice: under TF-XLA a slice start that
        # comes in as an argument is compiled in as a constant, so a compiled step would recompile per position.
        positions = ops.arange(ops.shape(token_ids)[1], dtype="int32") + ops.cast(cache_update_index, "int32")
        x = x + ops.cast(ops.take(self.position_embedding.embeddings, positions, axis=0), x.dtype)[None]
        layer_caches = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(
                x, self_attention_cache=cache[:, i], self_attention_cache_update_index=cache_update_index
            )
            layer_caches.append(layer_cache)
        hidden = self.layer_norm(x)
        logits = self.token_embedding(hidden, reverse=True)
        return logits, hidden, ops.stack(layer_caches, axis=1)  # cache: (B, L, 2, S, N, H)

    def generate(self, token_ids, max_new_tokens, sampler="greedy", **sampling):
        """Continue the prompt(s) `token_ids` by up to `max_new_tokens` tokens with `sampler` ("greedy", "random",
        "top_k", "top_p" or "beam"); `sampling`: temperature, top_k, top_p, num_beams, seed, stop_token_id. See
        `keras_tx.generation.generate`, where their defaults live.

        Example:
        >>> gpt = GPT(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=16)
        >>> gpt.generate([[1, 2], [3, 4]], max_new_tokens=3, sampler="top_k", top_k=3, seed=0).shape
        (2, 5)
        """
        return generation.generate(self, token_ids, max_new_tokens, sampler, **sampling)

    def generate_stream(self, token_ids, max_new_tokens, **kwargs):
        """Yield new tokens one at a time: see `keras_tx.generation.generate_stream`."""
        return generation.generate_stream(self, token_ids, max_new_tokens, **kwargs)

    # --- keras-hub weights and serialization --------------------------------------------------------------

    @classmethod
    def from_keras_hub(cls, backbone, **kwargs):
        """A GPT with the configuration and weights of a `keras_hub.models.GPT2Backbone`.

        Example:
        >>> import keras_hub
        >>> hub = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
        ...     intermediate_dim=16, max_sequence_length=16)
        >>> GPT.from_keras_hub(hub).max_length
        16
        """
        same_names = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout")
        config = {name: getattr(backbone, name) for name in same_names}
        model = cls(**{**config, "max_length": backbone.max_sequence_length, **kwargs})
        pairs = [(model.token_embedding, backbone.token_embedding), (model.layer_norm, backbone.layer_norm),
                 (model.position_embedding, backbone.position_embedding)]
        copy_keras_hub_weights(pairs, model.blocks, backbone.transformer_layers)
        return model


@_register
class GPTClassifier(keras.Model):
    """A classifier fine-tuned from a pretrained GPT: a linear head on the last real token's hidden state.

    Pretrain a `GPT` on raw text (next-token prediction), then fine-tune it with labels: the causal model has
    read the whole sequence only at its last position, so that position's hidden state is the summary the head
    reads. Sequences are padded on the right; the causal mask keeps the padding from reaching earlier positions.

    Args:
        backbone: a `GPT`; its weights are shared with (and trained by) the classifier.
        num_classes: number of classes; the output is (batch, num_classes) logits.
        dropout: rate before the head.

    Call arguments:
        inputs: {"token_ids": (batch, T) int, "padding_mask": (batch, T), 1 for real tokens, then 0s}.

    Example:
    >>> gpt = GPT(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=16)
    >>> classifier = GPTClassifier(gpt, num_classes=3)
    >>> ids = keras.ops.convert_to_tensor([[4, 5, 6, 0], [7, 8, 0, 0]])
    >>> tuple(classifier({"token_ids": ids, "padding_mask": ids != 0}).shape)
    (2, 3)
    """

    def __init__(self, backbone, num_classes, dropout=0.0, **kwargs):
        self.backbone = backbone
        self.head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        self.head = keras.layers.Dense(num_classes, name="head")

        inputs = {
            "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        }
        hidden = backbone.hidden_states(inputs["token_ids"])  # (B, T, D)
        last = ops.sum(ops.cast(inputs["padding_mask"], "int32"), axis=1) - 1  # (B,) index of the last real token
        summary = ops.take_along_axis(hidden, ops.maximum(last, 0)[:, None, None], axis=1)[:, 0]  # (B, D)
        logits = self.head(self.head_dropout(summary))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        self.num_classes = num_classes
        self.dropout = dropout

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
