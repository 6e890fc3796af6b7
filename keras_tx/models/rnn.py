"""The recurrent language model: the baseline every later model of this package is measured against.

Steps 1 and 2 of the line RNN -> LSTM -> attention -> ... -> GPT, as a model. Tokens are embedded, read left to
right by a stack of recurrent layers (`keras_tx.layers.SimpleRNN` or `LSTM`), and each step's output is mapped
to logits over the next token: the same task and the same inputs and outputs as `GPT`, so the two train with
the same data, loss and `fit` call. The difference is in how the past reaches the present: here only through
a fixed-size state, updated once per token (a long way for a gradient to travel, and no parallelism over
time); in GPT through attention to every earlier position directly.

For generation the recurrent state is the "cache": `call_with_cache` carries it from one token to the next, so
the decoding loop of keras_tx/generation.py serves both models.
"""

import keras
from keras import ops

from keras_tx import generation
from keras_tx.layers import LSTM, SimpleRNN
from keras_tx.layers.common import register as _register
from keras_tx.models.common import ConstructorConfig

_CELLS = {"lstm": (LSTM, 2), "rnn": (SimpleRNN, 1)}  # layer class, number of states (LSTM: h and c)


@_register
class RNNLanguageModel(ConstructorConfig, keras.Model):
    """Embedding -> recurrent layers -> Dense: token ids (batch, T) in, next-token logits (batch, T, vocab) out.

    Args:
        vocabulary_size: number of token ids.
        cell: "lstm" or "rnn" (a SimpleRNN).
        embedding_dim: width of the token vectors.
        units: width of each recurrent layer's state.
        num_layers: recurrent layers, stacked.
        dropout: input dropout of each recurrent layer and before the output layer (training only).
        dtype: dtype policy, e.g. "mixed_bfloat16".

    Example:
    >>> lm = RNNLanguageModel(vocabulary_size=65, cell="lstm", embedding_dim=16, units=32)
    >>> tuple(lm(keras.ops.zeros((2, 8), "int32")).shape)
    (2, 8, 65)
    >>> lm.generate([1, 2, 3], max_new_tokens=5).shape
    (8,)
    """

    max_length = None  # a recurrence has no longest sequence

    def __init__(
        self, vocabulary_size, cell="lstm", embedding_dim=64, units=128, num_layers=1, dropout=0.0, dtype=None, **kwargs
    ):
        if cell not in _CELLS:
            raise ValueError(f"Unknown cell {cell!r}; expected one of {sorted(_CELLS)}.")
        layer_class, self._num_states = _CELLS[cell]
        # === Layers ===
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, dtype=dtype, name="embedding")
        self.recurrent_layers = [
            layer_class(
                units, return_sequences=True, return_state=True, dropout=dropout, dtype=dtype, name=f"{cell}_{i}"
            )
            for i in range(num_layers)
        ]
        self.output_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="output_dropout")
        self.output_dense = keras.layers.Dense(vocabulary_size, dtype=dtype, name="logits")

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        x = self.embedding(token_ids)  # (B, T, E)
        for layer in self.recurrent_layers:
            x = layer(x)[0]  # (B, T, U); the final states are only needed when generating
        logits = self.output_dense(self.output_dropout(x))  # (B, T, V)
        super().__init__(inputs=token_ids, outputs=logits, dtype=dtype, **kwargs)
        self.keep_arguments(locals())  # === Config: vocabulary_size, cell, ... as attributes ===

    def initial_cache(self, batch_size, length=None):
        """Zero states of every layer, (batch, num_layers, num_states, units); `length` is not needed."""
        shape = (batch_size, self.num_layers, self._num_states, self.units)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index=None):
        """Continue from the states in `cache` over `token_ids` (batch, T).

        Returns:
            (logits (batch, T, vocab), last layer outputs (batch, T, units), the states after the last token).
        """
        x = self.embedding(token_ids)
        states = []
        for i, layer in enumerate(self.recurrent_layers):
            x, *state = layer(x, initial_state=[cache[:, i, s] for s in range(self._num_states)])
            states.append(ops.stack(state, axis=1))  # (B, S, U)
        return self.output_dense(x), x, ops.cast(ops.stack(states, axis=1), cache.dtype)  # (B, L, S, U)

    def generate(self, token_ids, max_new_tokens, sampler="greedy", temperature=1.0, seed=None, **kwargs):
        """Continue the prompt(s) by up to `max_new_tokens` tokens: see `keras_tx.generation.generate`.

        Example:
        >>> lm = RNNLanguageModel(vocabulary_size=10, embedding_dim=4, units=8)
        >>> lm.generate([[1, 2], [3, 4]], max_new_tokens=3, sampler="random", seed=0).shape
        (2, 5)
        """
        return generation.generate(
            self, token_ids, max_new_tokens, sampler=sampler, temperature=temperature, seed=seed, **kwargs
        )
