"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017): an encoder and a decoder, for translation.

Step 6 of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer (encoder,
decoder) -> GPT -> BERT -> ViT -> image GPT. The RNN encoder-decoder read the source one word at a time and
squeezed it into a state; attention let the decoder look back at every source word. The Transformer keeps only
the attention:

- the encoder reads the whole source at once, bidirectionally: every source position attends to every other
  (padding excluded), in `num_layers` post-LN blocks of self-attention and a ReLU feed-forward network;
- the decoder generates the target causally: position t attends to target positions <= t (causal self-attention),
  then to the whole encoder output (cross-attention), then a feed-forward network.

    encoder_token_ids -> embedding * sqrt(d) + sinusoidal positions -> dropout -> N x encoder block -> memory
    decoder_token_ids -> embedding * sqrt(d) + sinusoidal positions -> dropout
        -> N x decoder block (causal self-attention, cross-attention to memory, feed-forward) -> logits

Training is one parallel pass with teacher forcing: the decoder reads [START] + target[:-1] and predicts target
(which ends with [END]); the causal mask keeps each position from seeing its own answer. Translating is serial:
the source is encoded once, its cross-attention keys/values are computed once per decoder layer, and each new
target token runs one decoder step that reuses the self-attention keys/values of the earlier tokens (a cache).
The whole loop, greedy or beam search, is one compiled program (`translate_ids`).

As in the paper, token embeddings are multiplied by sqrt(hidden_dim), and by default the output projection is the
transposed target embedding (`tie_embeddings=True`): logits = h @ E_target^T. The paper also shares the source
embedding, which needs one joint vocabulary; here source and target have their own WordPiece vocabularies
(keras_tx.data.translation), so only the target side is tied. With `tie_embeddings=False` a separate
Dense(target_vocabulary_size) with a bias makes the logits.

Token id 0 is padding everywhere: source padding is masked out of the encoder's and the decoder's attention, so
padding a source changes nothing; target padding sits after [END], where the causal mask keeps it from reaching
any real position, and `MaskedCrossentropy` keeps it out of the loss.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_tx import generation, validation
from keras_tx.layers import SinusoidalPositionEncoding, TokenEmbedding, TransformerDecoderBlock, TransformerEncoderBlock
from keras_tx.layers.common import register as _register
from keras_tx.models.common import ConstructorConfig

# The ids keras_tx.data.translation's tokenizers give the reserved tokens: [PAD], [UNK], [START], [END].
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
SAMPLERS = ("greedy", "beam")


@_register
class Seq2SeqTransformer(ConstructorConfig, keras.Model):
    """The encoder-decoder Transformer: source and target token ids in, logits over the target vocabulary out.

    Args:
        source_vocabulary_size, target_vocabulary_size: number of token ids on each side.
        num_layers: encoder blocks, and as many decoder blocks (6 in the paper's base model).
        num_heads: attention heads per block; must divide `hidden_dim`.
        hidden_dim: width of the token vectors (d_model; 512 in the paper).
        intermediate_dim: width of the feed-forward hidden layer (d_ff; 2048 in the paper).
        max_source_length: the longest source `translate_ids` accepts (training data is cut to it too).
        max_target_length: the most target tokens, [END] included, that training sees and `translate_ids`
            generates. The sinusoidal encoding has no table, so these bound use, not weights.
        dropout: rate after the embeddings, on attention weights and after each sublayer (training only).
        tie_embeddings: output logits through the transposed target embedding (True) or a separate Dense.
        layer_norm_epsilon: of every LayerNorm.
        dtype: dtype policy, e.g. "mixed_bfloat16".

    Call arguments:
        inputs: {"encoder_token_ids": (batch, S) int, "decoder_token_ids": (batch, T) int}; 0 is padding.

    Returns:
        (batch, T, target_vocabulary_size) logits: position t predicts target token t + 1.

    Example:
    >>> model = Seq2SeqTransformer(20, 30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
    ...     max_source_length=10, max_target_length=12)
    >>> x = {"encoder_token_ids": keras.ops.ones((2, 7), "int32"), "decoder_token_ids": keras.ops.ones((2, 5), "int32")}
    >>> tuple(model(x).shape)
    (2, 5, 30)
    >>> model.translate_ids([[5, 6, 7]], max_length=4).shape[1] <= 4  # stops early if it produces [END]
    True
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        num_layers=3,
        num_heads=8,
        hidden_dim=256,
        intermediate_dim=512,
        max_source_length=128,
        max_target_length=128,
        dropout=0.1,
        tie_embeddings=True,
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        if hidden_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_dim={hidden_dim}.")
        # === Layers ===
        # N(0, d^-1/2) embeddings: times sqrt(d) they enter the blocks with unit variance, and as the tied output
        # projection they give logits of unit scale.
        def embedding(vocabulary_size, name):
            initializer = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
            return TokenEmbedding(
                vocabulary_size, hidden_dim, embeddings_initializer=initializer, dtype=dtype, name=name
            )

        self.source_embedding = embedding(source_vocabulary_size, "source_embedding")
        self.target_embedding = embedding(target_vocabulary_size, "target_embedding")
        self.position_encoding = SinusoidalPositionEncoding(dtype=dtype, name="position_encoding")
        self.source_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="source_dropout")
        self.target_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="target_dropout")
        block_kwargs = dict(
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            activation="relu",
            layer_norm_epsilon=layer_norm_epsilon,
            norm_first=False,  # post-LN, as in the paper: x = LN(x + sublayer(x))
            dtype=dtype,
        )
        self.encoder_blocks = [TransformerEncoderBlock(**block_kwargs, name=f"encoder_{i}") for i in range(num_layers)]
        self.decoder_blocks = [TransformerDecoderBlock(**block_kwargs, name=f"decoder_{i}") for i in range(num_layers)]
        self.output_projection = None
        if not tie_embeddings:
            self.output_projection = keras.layers.Dense(target_vocabulary_size, dtype=dtype, name="output_projection")

        # === Functional model: both token sequences -> logits over the target vocabulary ===
        inputs = {
            "encoder_token_ids": keras.Input(shape=(None,), dtype="int32", name="encoder_token_ids"),
            "decoder_token_ids": keras.Input(shape=(None,), dtype="int32", name="decoder_token_ids"),
        }
        source_mask = ops.not_equal(inputs["encoder_token_ids"], PAD_ID)  # (B, S)
        memory = self.encode(inputs["encoder_token_ids"])
        logits = self.decode(inputs["decoder_token_ids"], memory, source_mask)
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)
        self.keep_arguments(locals())  # === Config: source_vocabulary_size, ... as attributes ===

    # --- the two halves -----------------------------------------------------------------------------------

    def _embed(self, embedding, token_ids, start_index=0):
        """embedding(ids) * sqrt(d) + PE(positions start_index, start_index + 1, ...): (B, T, D)."""
        x = embedding(token_ids)
        x = x * ops.cast(math.sqrt(x.shape[-1]), x.dtype)
        # SinusoidalPositionEncoding computes positions as arange(T) + start_index, no slice: a start_index that
        # changes every decoding step stays data under XLA.
        return x + self.position_encoding(x, start_index=start_index)

    def encode(self, source_ids, training=None):
        """The encoder output ("memory") (batch, S, hidden_dim) of source ids (batch, S); id 0 is padding.

        Every source position attends to every non-padding source position, left and right.
        """
        padding_mask = ops.not_equal(source_ids, PAD_ID)  # (B, S)
        x = self.source_dropout(self._embed(self.source_embedding, source_ids), training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x

    def decode(self, decoder_ids, encoder_output, encoder_padding_mask, training=None):
        """Logits (batch, T, target_vocabulary_size) for decoder inputs (batch, T), all positions in one pass."""
        x = self.target_dropout(self._embed(self.target_embedding, decoder_ids), training=training)
        for block in self.decoder_blocks:
            # Causal self-attention, then cross-attention to the non-padding source positions.
            x = block(x, encoder_sequence=encoder_output, encoder_padding_mask=encoder_padding_mask, training=training)
        return self._logits(x)

    def _logits(self, hidden):
        if self.output_projection is None:
            return self.target_embedding(hidden, reverse=True)  # h @ E^T
        return self.output_projection(hidden)

    # --- cached decoding ----------------------------------------------------------------------------------

    def initial_cache(self, batch_size, length):
        """An empty decoder self-attention cache for `length` positions.

        Returns:
            zeros (batch, num_layers, 2, length, heads, head_dim): keys and values of every decoder layer.
        """
        head_dim = self.hidden_dim // self.num_heads
        return ops.zeros((batch_size, self.num_layers, 2, length, self.num_heads, head_dim), self.compute_dtype)

    def cross_attention_cache(self, encoder_output):
        """Each decoder layer's cross-attention keys and values of `encoder_output` (batch, S, hidden_dim).

        They depend on the source only, so decoding computes them once, not once per target token.

        Returns:
            (batch, num_layers, 2, S, heads, head_dim).
        """
        layers = []
        for block in self.decoder_blocks:
            attention = block.cross_attention
            keys, values = attention.key_dense(encoder_output), attention.value_dense(encoder_output)  # (B, S, N, H)
            layers.append(ops.stack([keys, values], axis=1))
        return ops.stack(layers, axis=1)

    def decoding_cache(self, source_ids, length):
        """The cache `call_with_cache` decodes `source_ids` (batch, S) with, for `length` target positions.

        It carries the encoder state, computed here once per source: {"self_attention": `initial_cache`,
        "memory": the encoder output (batch, S, hidden_dim), "padding_mask": (batch, S) True for real source
        tokens, "cross_attention": `cross_attention_cache(memory)`}.
        """
        memory = self.encode(source_ids, training=False)
        return {
            "self_attention": self.initial_cache(ops.shape(source_ids)[0], length),
            "memory": memory,
            "padding_mask": ops.not_equal(source_ids, PAD_ID),
            "cross_attention": self.cross_attention_cache(memory),
        }

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """One decoding step: target tokens at positions index..index+T-1 (usually T = 1) through the decoder.

        Args:
            token_ids: (batch, T) target ids.
            cache: from `decoding_cache`; the self-attention keys/values of these tokens are written into it.
            cache_update_index: the position of the first of `token_ids`.

        Returns:
            (logits (batch, T, target_vocabulary_size), hidden states (batch, T, hidden_dim), the updated cache).
        """
        x = self._embed(self.target_embedding, token_ids, start_index=cache_update_index)
        layer_caches = []
        for i, block in enumerate(self.decoder_blocks):
            # `encoder_sequence` is not read when a cross-attention cache is given (update index None: use it as
            # it is), but the block checks that it was built with cross-attention.
            x, layer_cache, _ = block(
                x,
                encoder_sequence=cache["memory"],
                encoder_padding_mask=cache["padding_mask"],
                self_attention_cache=cache["self_attention"][:, i],
                self_attention_cache_update_index=cache_update_index,
                cross_attention_cache=cache["cross_attention"][:, i],
                cross_attention_cache_update_index=None,
                training=False,
            )
            layer_caches.append(layer_cache)
        return self._logits(x), x, {**cache, "self_attention": ops.stack(layer_caches, axis=1)}

    def decoding_loop(self, source_ids, steps, sampler="greedy", num_beams=1, start_id=START_ID, end_id=END_ID,
                      length_penalty=1.0):
        """The decoding of `translate_ids` as traceable ops (for a compiled function, or an exported graph):
        `keras_tx.generation`'s loops from [START], over `call_with_cache`. The batch may be dynamic.

        Returns:
            (tokens (batch, steps) int32: the target tokens, `end_id` if produced, then 0s; the steps run).
        """
        prompt = ops.ones((ops.shape(source_ids)[0], 1), "int32") * ops.cast(start_id, "int32")  # [START]
        cache = self.decoding_cache(source_ids, steps)  # [START] and steps - 1 tokens are fed
        if sampler == "greedy":
            tokens, ran = generation.sample_loop(self.call_with_cache, prompt, cache, steps, stop_token_id=end_id,
                                                 pad_token_id=PAD_ID)
        else:
            tokens, ran = generation.beam_loop(self.call_with_cache, prompt, cache, steps, num_beams, end_id, PAD_ID,
                                               length_penalty)
        return tokens[:, 1:], ran

    def translate_ids(
        self,
        source_ids,
        max_length=None,
        sampler="greedy",
        num_beams=4,
        start_id=START_ID,
        end_id=END_ID,
        length_penalty=1.0,
    ):
        """Translate source ids into target ids with a compiled, cached decoding loop.

        The source is encoded once; each step feeds the last target token (first [START]) through the decoder with
        the self-attention cache and picks the next. The loop is one XLA program (`tf.function(jit_compile=True)`
        under TensorFlow, `jax.jit` under JAX), traced once per sampler, num_beams, max_length and source shape:
        later calls with the same shapes reuse it whatever the ids, start_id, end_id and length_penalty
        (`keras_tx.generation.trace_count(model)` counts the traces). Keep the source shape fixed (pad to
        `max_source_length`; padding changes nothing) to compile once.

        Args:
            source_ids: (S,) or (batch, S) int token ids, 0 = padding; 1 <= S <= max_source_length.
            max_length: the most target tokens to generate, [END] included; at most (and by default)
                `max_target_length`.
            sampler: "greedy" (the most likely token each step) or "beam" (beam search).
            num_beams: beams of the "beam" sampler; 1 gives the greedy translation.
            start_id: the token the decoder starts from ([START]).
            end_id: the token that ends a translation ([END]).
            length_penalty: beam search ranks a hypothesis by its summed log-probability divided by
                length ** length_penalty (1: mean log-probability per token; 0: the plain sum, which favours
                short translations). Greedy ignores it.

        Returns:
            int32 numpy (batch, n) or (n,) like `source_ids`, n <= max_length: each row is the target tokens, then
            `end_id` if it was produced, then 0s. Decoding stops once every row has produced `end_id`.
        """
        source, was_1d, steps, num_beams = self._check_translate(source_ids, max_length, sampler, num_beams)
        fn = generation.compiled(self, ("translate", sampler, num_beams, steps), lambda: lambda s, a, b, p: (
            self.decoding_loop(s, steps, sampler, num_beams, a, b, p)))
        tokens, ran = fn(source, np.int32(start_id), np.int32(end_id), np.float32(length_penalty))
        tokens = ops.convert_to_numpy(tokens)[:, : int(ops.convert_to_numpy(ran))]
        return tokens[0] if was_1d else tokens

    def translate_ids_uncached(self, source_ids, max_length=None, start_id=START_ID, end_id=END_ID):
        """The greedy reference: re-run the whole model on the growing target prefix every step. No cache, no XLA.

        Slow on purpose (the decoder redoes all t positions at step t); `translate_ids(..., sampler="greedy")`
        must give the same tokens. Same arguments and result. The prefix is kept right-padded to `max_length`
        (the causal mask hides the padding from it) so that every step has the same shapes: JAX runs eager ops
        compiled per shape, and a prefix that grows would compile them anew at every step.
        """
        source, was_1d, max_length, _ = self._check_translate(source_ids, max_length, "greedy", 1)
        batch = len(source)
        prefix = np.zeros((batch, max_length), "int32")  # decoder input: [START], then the tokens chosen so far
        prefix[:, 0] = start_id
        tokens, done = np.zeros((batch, max_length), "int32"), np.zeros(batch, bool)
        for t in range(max_length):
            logits = self({"encoder_token_ids": source, "decoder_token_ids": prefix}, training=False)
            token = np.argmax(ops.convert_to_numpy(ops.cast(logits[:, t], "float32")), axis=-1).astype("int32")
            token = np.where(done, PAD_ID, token).astype("int32")
            done |= token == end_id
            tokens[:, t] = token
            if t + 1 < max_length:
                prefix[:, t + 1] = token
            if done.all():
                tokens = tokens[:, : t + 1]
                break
        return tokens[0] if was_1d else tokens

    def _check_translate(self, source_ids, max_length, sampler, num_beams):
        """Validated (source (B, S) int32 numpy, was_1d, max_length, num_beams)."""
        source, was_1d = validation.id_rows(source_ids, "source_ids", "equal-length (padded with 0)")
        if source.shape[1] > self.max_source_length:
            raise ValueError(
                f"The source has {source.shape[1]} tokens, more than the model's max_source_length="
                f"{self.max_source_length}."
            )
        if not np.any(source != PAD_ID, axis=1).all():
            raise ValueError("Every source needs at least one token that is not padding (id 0).")
        if max_length is None:
            max_length = self.max_target_length
        if not isinstance(max_length, (int, np.integer)) or not 1 <= max_length <= self.max_target_length:
            raise ValueError(
                f"`max_length` must be an integer from 1 to the model's max_target_length={self.max_target_length}, "
                f"got {max_length!r}."
            )
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
        if not isinstance(num_beams, (int, np.integer)) or not 1 <= num_beams <= self.target_vocabulary_size:
            raise ValueError(
                f"`num_beams` must be an integer from 1 to the target vocabulary size "
                f"{self.target_vocabulary_size}, got {num_beams!r}."
            )
        return source.astype("int32"), was_1d, int(max_length), int(num_beams)

    # --- serialization ------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------- training


@_register
class MaskedCrossentropy(keras.losses.Loss):
    """Cross-entropy of target ids under logits, averaged over the non-padding tokens, with label smoothing.

    Padding (id `pad_id`) gets no loss and does not count in the mean, so a batch of short sentences weighs its
    real tokens as much as a batch of long ones. Label smoothing (0.1 in the paper) trains toward
    (1 - s) * one_hot + s / V: the model is penalized for certainty, which hurts perplexity and helps BLEU.

    Args:
        label_smoothing: s above, in [0, 1).
        pad_id: the target id to ignore.

    Example:
    >>> loss = MaskedCrossentropy()
    >>> round(float(loss(keras.ops.convert_to_tensor([[1, 0]]), keras.ops.zeros((1, 2, 4)))), 4)  # log(4)
    1.3863
    """

    def __init__(self, label_smoothing=0.0, pad_id=PAD_ID, name="masked_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)  # (B, T, V)
        loss = -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)[..., 0]  # (B, T)
        if self.label_smoothing:
            loss = (1 - self.label_smoothing) * loss - self.label_smoothing * ops.mean(log_probs, axis=-1)
        mask = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        # The reduction divides the sum by B * T; scaling by B * T / (real tokens) makes it the mean over real ones.
        total = ops.cast(ops.size(mask), "float32")
        return loss * mask * (total / ops.maximum(ops.sum(mask), 1.0))

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "pad_id": self.pad_id}


@_register
def masked_accuracy(y_true, y_pred):
    """The fraction of non-padding target tokens (id != 0) whose most likely prediction is right."""
    y_true = ops.cast(y_true, "int32")
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
    mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
    return ops.sum(correct * mask) / ops.maximum(ops.sum(mask), 1.0)
