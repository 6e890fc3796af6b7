"""keras-tx: the Transformer family, from the RNN to image GPT, as readable Keras 3 layers."""

__version__ = "0.1.0"


def __getattr__(name):
    # Subpackages load on first use, so that `import keras_tx` (and the CLI) does not start TensorFlow.
    if name in ("layers", "models", "data", "generation", "training"):
        import importlib

        return importlib.import_module(f"keras_tx.{name}")
    raise AttributeError(f"module 'keras_tx' has no attribute {name!r}")
