"""The layer library, in the order the ideas arrived: recurrence, attention, embeddings, Transformer blocks."""

from keras_tx.layers.attention import (  # noqa: F401
    SelfAttention,
    causal_mask,
    masked_softmax,
    scaled_dot_product_attention,
)
from keras_tx.layers.multi_head_attention import MultiHeadAttention  # noqa: F401
from keras_tx.layers.recurrent import LSTM, LSTMCell, SimpleRNN, SimpleRNNCell  # noqa: F401
from keras_tx.layers.embeddings import (  # noqa: F401
    ClassToken,
    PatchEmbedding,
    PositionEmbedding,
    SinusoidalPositionEncoding,
    TokenAndPositionEmbedding,
    TokenEmbedding,
)
from keras_tx.layers.transformer import FeedForward, TransformerDecoderBlock, TransformerEncoderBlock  # noqa: F401
