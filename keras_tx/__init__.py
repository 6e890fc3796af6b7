"""keras-tx: the Transformer family, from the RNN to image GPT, as readable Keras 3 layers."""

__version__ = "0.1.0"

from keras_tx import layers  # noqa: E402,F401
