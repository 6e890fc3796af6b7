"""Small helpers shared by the layer files."""

import keras

# Every layer is registered under one package name, so `.keras` files reload without `custom_objects`.
register = keras.saving.register_keras_serializable(package="keras_tx")


def clone_initializer(initializer):
    """A fresh copy of an initializer, so that two weights never share a seeded initializer's values."""
    return initializer.__class__.from_config(initializer.get_config())


@register
def gelu_approximate(x):
    """GELU with the tanh approximation: what GPT-2 and BERT were trained with (and keras-hub uses for both)."""
    return keras.activations.gelu(x, approximate=True)
