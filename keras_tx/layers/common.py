"""Small helpers shared by the layer files."""

import keras

# Every layer is registered under one package name, so `.keras` files reload without `custom_objects`.
register = keras.saving.register_keras_serializable(package="keras_tx")


def clone_initializer(initializer):
    """A fresh copy of an initializer, so that two weights never share a seeded initializer's values."""
    return initializer.__class__.from_config(initializer.get_config())
