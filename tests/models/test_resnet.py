import keras
import numpy as np
import pytest

from keras_tx.models import ResNet
from tests.models.vision_checks import check_config_and_saving, check_fit_reduces_loss

RNG = np.random.default_rng(0)
TINY = dict(width=4, blocks_per_stage=(1, 1))


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes_and_keras_file(tmp_path, shape):
    model = ResNet(shape, num_classes=10, **TINY)
    images = RNG.random((2,) + shape).astype("float32")
    assert _np(model(images)).shape == (2, 10)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(images, RNG.normal(size=(2, 10)), verbose=0)  # move BatchNorm's moving statistics off their init
    check_config_and_saving(model, images, tmp_path, atol=1e-4)


def test_features_double_per_stage_and_width_sets_the_size():
    images = RNG.random((2, 28, 28, 1)).astype("float32")
    features = ResNet((28, 28, 1), num_classes=None, width=4, blocks_per_stage=(1, 1, 1))(images)
    assert _np(features).shape == (2, 16)  # 4 -> 8 -> 16 channels
    small, large = (ResNet((28, 28, 1), 10, width=w).count_params() for w in (8, 16))
    assert 3.5 < large / small < 4.1  # conv weights grow with width^2
    assert 11_000_000 < ResNet((32, 32, 3), 10, width=64).count_params() < 11_500_000  # ResNet-18's size


def test_fit_reduces_the_loss():
    x = RNG.random((32, 28, 28, 1)).astype("float32")
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype("int32")
    check_fit_reduces_loss(ResNet((28, 28, 1), num_classes=2, **TINY), x, y, learning_rate=1e-2)


def test_blocks_start_as_the_identity():
    """Zero-initialised last BatchNorm scale: every residual branch starts at 0, so a block is relu(shortcut)."""
    model = ResNet((8, 8, 2), num_classes=None, width=2, blocks_per_stage=(1,))
    images = RNG.random((1, 8, 8, 2)).astype("float32")
    stem = keras.Model(model.input, model.get_layer("stem_relu").output)
    block = keras.Model(model.input, model.get_layer("stage1_block1_out").output)
    np.testing.assert_allclose(_np(block(images)), _np(stem(images)), atol=1e-6)


def test_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = ResNet((28, 28, 1), num_classes=3, **TINY)
    keras.config.set_dtype_policy("float32")
    assert all(w.dtype == "float32" for w in model.weights)
    out = model(RNG.random((2, 28, 28, 1)).astype("float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert np.isfinite(_np(keras.ops.cast(out, "float32"))).all()
