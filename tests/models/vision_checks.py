"""Checks the vision model tests share: config round trip, `.keras` save/load, loss going down under `fit`."""

import os

import keras
import numpy as np


def check_config_and_saving(model, inputs, directory, atol=1e-5):
    """`from_config(get_config())` rebuilds the same model; a `.keras` file reloads (safe_mode) to the same outputs."""
    config = model.get_config()
    clone = type(model).from_config(config)
    assert type(clone) is type(model) and clone.get_config() == config
    assert clone.count_params() == model.count_params()
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    path = os.path.join(str(directory), "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)  # no custom_objects: the class is registered
    assert type(reloaded) is type(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(inputs, training=False)), expected, atol=atol)
    return reloaded


def check_fit_reduces_loss(model, x, y, epochs=8, learning_rate=3e-3, batch_size=None):
    """A few epochs of Adam on a tiny set: the loss goes down and stays finite."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size or len(x), verbose=0).history["loss"]
    assert np.all(np.isfinite(history)), history
    assert history[-1] < 0.9 * history[0], history
    return history
