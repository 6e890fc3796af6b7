import keras
import keras_hub
import numpy as np
import pytest

from keras_tx.layers import (
    ClassToken,
    PatchEmbedding,
    PositionEmbedding,
    SinusoidalPositionEncoding,
    TokenAndPositionEmbedding,
    TokenEmbedding,
)
from tests.battery import run_layer_battery

RNG = np.random.default_rng(0)
HIDDEN = RNG.normal(size=(2, 5, 8)).astype("float32")
IDS = RNG.integers(1, 20, size=(2, 5)).astype("int32")
IMAGES = RNG.normal(size=(2, 8, 8, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "cls,kwargs,inputs,shape",
    [
        (TokenEmbedding, {"input_dim": 20, "output_dim": 8}, IDS, (2, 5, 8)),
        (PositionEmbedding, {"sequence_length": 10}, HIDDEN, (2, 5, 8)),
        (TokenAndPositionEmbedding, {"vocabulary_size": 20, "sequence_length": 10, "embedding_dim": 8}, IDS,
         (2, 5, 8)),
        (PatchEmbedding, {"patch_size": 4, "hidden_dim": 6}, IMAGES, (2, 4, 6)),
        (ClassToken, {"initializer": "random_normal"}, HIDDEN, (2, 6, 8)),
    ],
)
def test_battery(cls, kwargs, inputs, shape):
    run_layer_battery(cls, kwargs, inputs, expected_output_shape=shape)


def test_sinusoidal_matches_keras_hub_and_the_formula():
    ours = _np(SinusoidalPositionEncoding()(HIDDEN, start_index=3))
    theirs = _np(keras_hub.layers.SinePositionEncoding()(HIDDEN, start_index=3))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    position, i = 3 + 2, 3  # row 2 (absolute position 5), dimensions 2i = 6 and 2i + 1 = 7
    angle = position / 10000 ** (2 * i / 8)
    np.testing.assert_allclose(ours[0, 2, 6:8], [np.sin(angle), np.cos(angle)], atol=1e-6)
    assert ours.shape == HIDDEN.shape


def test_position_embedding_matches_keras_hub():
    theirs = keras_hub.layers.PositionEmbedding(10)
    expected = _np(theirs(HIDDEN, start_index=2))
    ours = PositionEmbedding(10)
    ours(HIDDEN)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_np(ours(HIDDEN, start_index=2)), expected, atol=1e-6)


def test_token_and_position_embedding_matches_keras_hub():
    theirs = keras_hub.layers.TokenAndPositionEmbedding(20, 10, 8, mask_zero=True)
    ids = IDS.copy()
    ids[1, 3:] = 0
    expected = theirs(ids)
    ours = TokenAndPositionEmbedding(20, 10, 8, mask_zero=True)
    ours(ids)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_np(ours(ids)), _np(expected), atol=1e-6)
    np.testing.assert_array_equal(_np(ours.compute_mask(ids)), ids != 0)


def test_token_embedding_reverse_is_the_tied_projection():
    layer = TokenEmbedding(20, 8)
    layer(IDS)
    logits = _np(layer(HIDDEN, reverse=True))
    np.testing.assert_allclose(logits, HIDDEN @ _np(layer.embeddings).T, atol=1e-5)


def test_patch_embedding_is_a_linear_map_of_each_flattened_patch():
    layer = PatchEmbedding(4, 6)
    out = _np(layer(IMAGES))
    kernel, bias = (_np(w) for w in layer.projection.weights)  # kernel (4, 4, 3, 6)
    for row in range(2):
        for col in range(2):
            patch = IMAGES[:, row * 4:(row + 1) * 4, col * 4:(col + 1) * 4, :].reshape(2, -1)
            expected = patch @ kernel.reshape(-1, 6) + bias
            np.testing.assert_allclose(out[:, row * 2 + col], expected, atol=1e-5)  # raster order


def test_patch_embedding_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="multiples of patch_size=4"):
        PatchEmbedding(4, 6)(np.zeros((1, 10, 8, 3), "float32"))


def test_class_token_is_prepended_and_shared():
    layer = ClassToken(initializer="random_normal")
    out = _np(layer(HIDDEN))
    np.testing.assert_array_equal(out[:, 1:], HIDDEN)
    np.testing.assert_array_equal(out[0, 0], out[1, 0])
    np.testing.assert_array_equal(out[0, 0], _np(layer.token)[0, 0])
