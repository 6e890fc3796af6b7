"""keras-tx: the Transformer family, from the RNN to image GPT, as readable Keras 3 layers."""

import os
import sys

__version__ = "0.1.0"


def _is_the_command_line():
    """True in the `keras-tx` console script, which parses its arguments before it lets Keras (and TensorFlow,
    several seconds) start: `keras-tx --help` and a mistyped flag answer at once."""
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "keras-tx"


if not _is_the_command_line():
    # `import keras_tx` registers every layer and model with Keras, as `import keras_hub` does, so that
    # `keras.saving.load_model("saved_models/gpt_shakespeare/model.keras")` finds our classes. TensorFlow's
    # start-up lines are kept off stderr meanwhile (keras_tx.quiet).
    from keras_tx.quiet import muted_stderr

    with muted_stderr():
        from keras_tx import layers, models  # noqa: E402,F401


def __getattr__(name):
    if name in ("layers", "models", "data", "generation", "training"):
        import importlib

        return importlib.import_module(f"keras_tx.{name}")
    raise AttributeError(f"module 'keras_tx' has no attribute {name!r}")
