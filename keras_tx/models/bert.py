"""BERT: the Transformer encoder alone, trained to fill in masked tokens.

Step 8 of the line ... -> Transformer -> GPT -> BERT -> ViT. GPT keeps the decoder and its causal mask, so each
position reads only the past and the model learns by predicting the next token. BERT keeps the encoder instead:
no causal mask, so every position reads the whole sentence, left and right. Next-token prediction would then be
trivial (the answer is in the input), so BERT learns by the masked language model: hide ~15% of the tokens
(80% become [MASK], 10% a random token, 10% stay as they are, so that the model cannot rely on seeing [MASK])
and predict the originals from both sides. The pretrained encoder is then fine-tuned: a small head on the
final state of the [CLS] token (the "pooled output") classifies the whole sentence.

    token_ids, segment_ids -> token + segment + position embeddings -> LayerNorm -> dropout
        -> num_layers x post-LN TransformerEncoderBlock (GELU) -> sequence_output
        -> Dense(tanh) on the first ([CLS]) token -> pooled_output

`BERT` computes what `keras_hub.models.BertBackbone` computes (`BERT.from_keras_hub` copies its weights);
`BERTMaskedLM` and `BERTClassifier` add the two heads. Masking and tokenization live in
`keras_tx.data.wordpiece` (they need TensorFlow); this file uses keras only.
"""

import keras
import numpy as np
from keras import ops

from keras_tx import validation
from keras_tx.layers.common import clone_initializer as _clone
from keras_tx.layers.common import gelu_approximate
from keras_tx.layers.common import register as _register
from keras_tx.layers.embeddings import TokenAndPositionEmbedding
from keras_tx.layers.transformer import TransformerEncoderBlock
from keras_tx.models.common import ConstructorConfig, copy_keras_hub_weights

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)  # BERT's initializer for every weight matrix




@_register
class BERT(ConstructorConfig, keras.Model):
    """The BERT encoder: embeddings, a stack of post-LN encoder blocks and the [CLS] pooler.

    Args:
        vocabulary_size: number of token ids.
        num_layers, num_heads, hidden_dim, intermediate_dim: size of the encoder stack.
        max_length: the longest sequence (rows of the position table).
        num_segments: number of segment ids (2: sentence A and B).
        dropout: rate on the embeddings, on the attention weights and on each block's sublayer outputs.
        layer_norm_epsilon: of every layer normalization (1e-12 in BERT).
        dtype: dtype policy of the layers.

    Inputs: a dict of (batch, T) int tensors "token_ids", "segment_ids", "padding_mask" (1 = real token).
    Outputs: a dict, "sequence_output" (batch, T, hidden_dim) and "pooled_output" (batch, hidden_dim).

    Example:
    >>> bert = BERT(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
    >>> x = {name: np.ones((1, 6), "int32") for name in INPUT_NAMES}
    >>> tuple(bert(x)["pooled_output"].shape)
    (1, 16)
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_length=512,
        num_segments=2,
        dropout=0.1,
        layer_norm_epsilon=1e-12,
        dtype=None,
        **kwargs,
    ):
        init = _initializer
        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size, max_length, hidden_dim, embeddings_initializer=init(), dtype=dtype, name="embedding"
        )
        self.segment_embedding = keras.layers.Embedding(
            num_segments, hidden_dim, embeddings_initializer=init(), dtype=dtype, name="segment_embedding"
        )
        self.embedding_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="embedding_norm"
        )
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")
        self.blocks = [
            TransformerEncoderBlock(
                num_heads, intermediate_dim, dropout=dropout, activation=gelu_approximate,
                layer_norm_epsilon=layer_norm_epsilon, kernel_initializer=init(), dtype=dtype, name=f"block_{i}",
                norm_first=False,  # post-LN, as in the paper and in every BERT checkpoint
            )
            for i in range(num_layers)
        ]
        self.pooler = keras.layers.Dense(hidden_dim, "tanh", kernel_initializer=init(), dtype=dtype, name="pooler")
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        sequence_output, _ = self._encode(inputs)
        # Attention lets [CLS] read the whole sentence, so its final state can stand for the sentence.
        pooled_output = self.pooler(sequence_output[:, 0, :])
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence_output, "pooled_output": pooled_output}, **kwargs
        )
        self.keep_arguments(locals())  # === Config: vocabulary_size, num_layers, ... as attributes ===

    @property
    def token_embedding(self):
        """The `TokenEmbedding` (vocabulary_size, hidden_dim) that the masked-LM head reuses as its output layer."""
        return self.embedding.token_embedding

    def _encode(self, inputs, return_attention_scores=False, training=None):
        """Embeddings and blocks; returns the sequence output and the blocks' (B, heads, T, T) attention weights."""
        x = self.embedding(inputs["token_ids"]) + self.segment_embedding(inputs["segment_ids"])  # (B, T, D)
        x = self.embedding_dropout(self.embedding_norm(x), training=training)
        scores = []
        for block in self.blocks:
            x = block(
                x, padding_mask=inputs["padding_mask"], return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                x, weights = x
                scores.append(weights)
        return x, scores

    def attention_scores(self, inputs):
        """The attention weights of every block, for inspection (e.g. a heat map).

        Args:
            inputs: the model's input dict of (batch, T) arrays.

        Returns:
            A list of `num_layers` float32 numpy arrays (batch, num_heads, T, T); row t of a head is the
            distribution over the keys that position t attends to (zero on padding).
        """
        inputs = {name: ops.convert_to_tensor(inputs[name], "int32") for name in INPUT_NAMES}
        _, scores = self._encode(inputs, return_attention_scores=True, training=False)
        return [ops.convert_to_numpy(ops.cast(s, "float32")) for s in scores]

    @classmethod
    def from_keras_hub(cls, backbone):
        """A `BERT` with the configuration and weights of a `keras_hub.models.BertBackbone`.

        Example:
        >>> theirs = keras_hub.models.BertBackbone(50, 2, 2, 16, 32, max_sequence_length=32)
        >>> ours = BERT.from_keras_hub(theirs)
        """
        ours = cls(
            backbone.vocabulary_size, backbone.num_layers, backbone.num_heads, backbone.hidden_dim,
            backbone.intermediate_dim, max_length=backbone.max_sequence_length, num_segments=backbone.num_segments,
            dropout=backbone.dropout, dtype=backbone.dtype_policy,
        )
        pairs = [(ours.token_embedding, backbone.token_embedding), (ours.segment_embedding, backbone.segment_embedding),
                 (ours.embedding.position_embedding, backbone.position_embedding), (ours.pooler, backbone.pooled_dense),
                 (ours.embedding_norm, backbone.embeddings_layer_norm)]
        copy_keras_hub_weights(pairs, ours.blocks, backbone.transformer_layers)
        return ours


@_register
class MaskedLMHead(keras.layers.Layer):
    """BERT's masked-LM head: Dense + activation + LayerNorm, then logits over the vocabulary (+ a bias).

    With `token_embedding` the output projection is the input embedding table, transposed (tied, as in BERT);
    without it the head owns a (hidden_dim, vocabulary_size) kernel.

    Args:
        vocabulary_size: number of token ids.
        token_embedding: optional `TokenEmbedding` to tie the output projection to.
        activation: of the dense layer ("gelu", exact, as keras-hub's BertMaskedLM).
        layer_norm_epsilon: of the layer normalization.
        kernel_initializer: of the dense layer (and of the untied kernel).

    Call arguments:
        inputs: (batch, T, hidden_dim) encoder output.
        mask_positions: optional (batch, P) int positions to predict; omitted, every position is predicted.

    Returns:
        (batch, P, vocabulary_size) logits, or (batch, T, vocabulary_size) without `mask_positions`.

    Example:
    >>> head = MaskedLMHead(50)
    >>> tuple(head(keras.ops.zeros((2, 6, 16)), mask_positions=np.array([[1, 4], [2, 0]])).shape)
    (2, 2, 50)
    """

    def __init__(
        self,
        vocabulary_size,
        token_embedding=None,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if token_embedding is not None and token_embedding.input_dim != vocabulary_size:
            raise ValueError(
                f"vocabulary_size={vocabulary_size} differs from the tied embedding's {token_embedding.input_dim}."
            )
        self.vocabulary_size = vocabulary_size
        self.token_embedding = token_embedding
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape, mask_positions_shape=None):
        hidden_dim = tuple(inputs_shape)[-1]
        self.dense = keras.layers.Dense(
            hidden_dim, self.activation, kernel_initializer=_clone(self.kernel_initializer), dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build((None, None, hidden_dim))
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.norm.build((None, None, hidden_dim))
        if self.token_embedding is None:
            shape = (hidden_dim, self.vocabulary_size)
            self.output_kernel = self.add_weight(shape, _clone(self.kernel_initializer), name="output_kernel")
        elif not self.token_embedding.built:  # reloaded on its own: the copy in our config needs its table
            self.token_embedding.build((None,))
        self.output_bias = self.add_weight((self.vocabulary_size,), "zeros", name="output_bias")

    def call(self, inputs, mask_positions=None):
        x = inputs
        if mask_positions is not None:
            # (B, P) positions -> (B, P, 1), gathered along T: (B, T, D) -> (B, P, D).
            x = ops.take_along_axis(x, ops.cast(mask_positions, "int32")[:, :, None], axis=1)
        x = self.norm(self.dense(x))
        if self.token_embedding is not None:
            logits = self.token_embedding(x, reverse=True)
        else:
            logits = ops.matmul(x, ops.cast(self.output_kernel, x.dtype))
        return logits + ops.cast(self.output_bias, logits.dtype)  # (B, P, V)

    def compute_output_shape(self, inputs_shape, mask_positions_shape=None):
        positions = tuple(inputs_shape)[:2] if mask_positions_shape is None else tuple(mask_positions_shape)
        return positions + (self.vocabulary_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            # Saved as a copy: a head reloaded on its own gets its own table. Inside `BERTMaskedLM` the head is
            # rebuilt from the backbone instead, so the tie survives saving.
            "token_embedding": None if self.token_embedding is None else keras.layers.serialize(self.token_embedding),
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }

    @classmethod
    def from_config(cls, config):
        if config.get("token_embedding") is not None:
            config = {**config, "token_embedding": keras.layers.deserialize(config["token_embedding"])}
        return cls(**config)


class _Task(keras.Model):
    """A backbone, a head and an optional tokenizer; saved and reloaded as one `.keras` file.

    The tokenizer (e.g. keras-hub's `WordPieceTokenizer`) is an attribute of the model, so `model.save` stores
    its configuration in the model's config and its vocabulary among the file's assets, and `load_model` gives
    the model back with its tokenizer. It may be set after construction: `model.tokenizer = tokenizer`.
    """

    def _task_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tokenizer": None if self.tokenizer is None else keras.saving.serialize_keras_object(self.tokenizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "tokenizer"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@_register
class BERTMaskedLM(_Task):
    """BERT pretraining: predict the original tokens at the masked positions (logits, one row per position).

    Args:
        backbone: a `BERT`.
        tokenizer: optional WordPiece tokenizer with [CLS], [SEP] and [MASK] in its vocabulary; `fill_mask`
            needs it (see `keras_tx.data.make_wordpiece_tokenizer`).
        max_predictions: the most [MASK]s `fill_mask` fills in one text (20 in BERT's pretraining data).

    Inputs: the backbone's dict plus "mask_positions" (batch, P) int, the positions to predict (padded with 0
    and weight 0 in the labels, as `keras_tx.data.mlm_dataset` makes them).
    Outputs: (batch, P, vocabulary_size) logits.

    Example:
    >>> mlm = BERTMaskedLM(BERT(50, 2, 2, 16, 32))
    >>> x = {name: np.ones((1, 6), "int32") for name in INPUT_NAMES}
    >>> tuple(mlm({**x, "mask_positions": np.array([[1, 3]])}).shape)
    (1, 2, 50)
    """

    def __init__(self, backbone, tokenizer=None, max_predictions=20, **kwargs):
        self.backbone = backbone
        self.max_predictions = max_predictions
        self.head = MaskedLMHead(
            backbone.vocabulary_size,
            token_embedding=backbone.token_embedding,  # tied: logits = h @ E^T + b
            kernel_initializer=_initializer(),
            dtype=backbone.embedding.dtype_policy,
            name="mlm_head",
        )
        inputs = {**backbone.input, "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions")}
        sequence_output = backbone({name: inputs[name] for name in INPUT_NAMES})["sequence_output"]
        super().__init__(inputs=inputs, outputs=self.head(sequence_output, inputs["mask_positions"]), **kwargs)
        self.tokenizer = tokenizer  # after: Functional's init would "build" it, warning that it is not built

    def encode_masked(self, text):
        """(token ids [CLS] ... [SEP], positions of the [MASK]s) of a text, as `fill_mask` reads it.

        The checks every surface makes (keras_tx.validation): UTF-8, not empty, not too long, "[mask]" in any case,
        at least one [MASK] and at most `max_predictions`, at most `max_length` tokens.
        """
        if self.tokenizer is None:
            raise ValueError("fill_mask needs a tokenizer: pass `tokenizer=` or set `model.tokenizer`.")
        text = validation.normalize_masks(validation.text(text))
        # Split on the literal "[MASK]" ourselves, so that no tokenizer setting (lowercasing, punctuation
        # splitting) can break it apart.
        pieces = text.split("[MASK]")
        if len(pieces) == 1:
            raise ValueError(validation.NO_MASK)
        if len(pieces) - 1 > self.max_predictions:
            raise ValueError(validation.too_many_masks(self.max_predictions))
        token = self.tokenizer.token_to_id
        ids, positions = [token("[CLS]")], []
        for i, piece in enumerate(pieces):
            if i:
                positions.append(len(ids))
                ids.append(token("[MASK]"))
            ids.extend(int(t) for t in np.asarray(self.tokenizer(piece)).reshape(-1))
        ids.append(token("[SEP]"))
        if len(ids) > self.backbone.max_length:
            raise ValueError(
                f"The text is {len(ids)} tokens long with [CLS] and [SEP]; the model takes at most "
                f"max_length={self.backbone.max_length}."
            )
        return ids, positions

    def fill_mask(self, text, top_k=5):
        """The `top_k` most likely tokens, with their probabilities, for each [MASK] in `text`.

        Each [MASK] is predicted from the whole text (the other [MASK]s stay masked), as in pretraining.

        Args:
            text: a string with one or more "[MASK]" (any case), at most 10,000 characters.
            top_k: how many candidates per mask (at least 1; more than the vocabulary gives all of it).

        Returns:
            One list per [MASK], in order, of `top_k` (token, probability) pairs, most likely first.

        Example:
        >>> mlm.fill_mask("the movie was [MASK] .", top_k=3)
        [[('good', 0.41), ('great', 0.17), ('bad', 0.09)]]
        """
        top_k = min(validation.integer("top_k", top_k, 1), self.backbone.vocabulary_size)
        ids, positions = self.encode_masked(text)
        inputs = {
            "token_ids": np.array([ids], "int32"),
            "segment_ids": np.zeros((1, len(ids)), "int32"),
            "padding_mask": np.ones((1, len(ids)), "int32"),
            "mask_positions": np.array([positions], "int32"),
        }
        logits = ops.convert_to_numpy(ops.cast(self(inputs, training=False), "float32"))[0]  # (P, V)
        logits = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        return [
            [(self.tokenizer.id_to_token(int(i)), float(p[i])) for i in np.argsort(-p, kind="stable")[:top_k]]
            for p in probabilities
        ]

    @classmethod
    def from_keras_hub(cls, masked_lm, **kwargs):
        """A `BERTMaskedLM` with the weights of a `keras_hub.models.BertMaskedLM` (backbone and head)."""
        ours = cls(BERT.from_keras_hub(masked_lm.backbone), **kwargs)
        theirs = masked_lm.masked_lm_head
        ours.head.dense.set_weights(theirs._intermediate_dense.get_weights())
        ours.head.norm.set_weights(theirs._intermediate_layer_norm.get_weights())
        ours.head.output_bias.assign(ops.convert_to_numpy(theirs._bias))  # a copy, not a shared buffer
        return ours

    def get_config(self):
        return {**self._task_config(), "max_predictions": self.max_predictions}


@_register
class BERTClassifier(_Task):
    """Sentence classification (e.g. SST-2): pooled [CLS] output -> dropout -> dense logits.

    Args:
        backbone: a `BERT`, pretrained (fine-tuning) or fresh (training from scratch).
        num_classes: number of classes.
        dropout: rate before the output layer.
        tokenizer: optional tokenizer, kept with the model (see `BERTMaskedLM`).

    Inputs: the backbone's dict. Outputs: (batch, num_classes) logits.

    Example:
    >>> classifier = BERTClassifier(BERT(50, 2, 2, 16, 32), num_classes=2)
    >>> tuple(classifier({name: np.ones((1, 6), "int32") for name in INPUT_NAMES}).shape)
    (1, 2)
    """

    def __init__(self, backbone, num_classes, dropout=0.1, tokenizer=None, **kwargs):
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout
        dtype = backbone.embedding.dtype_policy
        self.output_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="output_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, kernel_initializer=_initializer(), dtype=dtype, name="logits"
        )
        inputs = dict(backbone.input)
        pooled_output = backbone(inputs)["pooled_output"]
        super().__init__(inputs=inputs, outputs=self.output_dense(self.output_dropout(pooled_output)), **kwargs)
        self.tokenizer = tokenizer

    def get_config(self):
        return {**self._task_config(), "num_classes": self.num_classes, "dropout": self.dropout}
