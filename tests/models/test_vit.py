import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_tx.models import ResNet, ViT
from tests.models.vision_checks import check_config_and_saving, check_fit_reduces_loss

RNG = np.random.default_rng(0)
IMAGES = RNG.random((4, 16, 16, 3)).astype("float32")
TINY = dict(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("pooling", ["token", "gap"])
def test_config_round_trip_and_keras_file(tmp_path, pooling):
    model = ViT(**TINY, num_classes=5, pooling=pooling, dropout=0.1)
    assert _np(model(IMAGES)).shape == (4, 5)
    check_config_and_saving(model, IMAGES, tmp_path)


def test_features_only_without_a_head():
    model = ViT(**TINY, num_classes=None)
    assert _np(model(IMAGES)).shape == (4, 16)
    np.testing.assert_allclose(_np(model(IMAGES)), _np(model.encode(IMAGES))[:, 0], atol=1e-6)


def test_fit_reduces_the_loss():
    x = RNG.random((32, 16, 16, 1)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int32")  # top half brighter?
    check_fit_reduces_loss(ViT(**TINY, num_classes=2, num_channels=1), x, y)


@pytest.mark.parametrize("use_class_token", [True, False])
def test_from_keras_hub_gives_the_same_features(use_class_token):
    hub = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        use_class_token=use_class_token,
    )
    expected = _np(hub(IMAGES))  # (B, T, 16) after the final LayerNorm
    ours = ViT.from_keras_hub(hub)
    assert ours.count_params() == hub.count_params()
    assert ours.pooling == ("token" if use_class_token else "gap")
    np.testing.assert_allclose(_np(ours.encode(IMAGES)), expected, atol=1e-4)
    pooled = expected[:, 0] if use_class_token else expected.mean(axis=1)
    np.testing.assert_allclose(_np(ours(IMAGES)), pooled, atol=1e-4)
    # Not equal by accident: a fresh ViT of the same shape computes something else.
    assert not np.allclose(_np(ViT(**TINY, num_classes=None, pooling=ours.pooling).encode(IMAGES)), expected, atol=1e-2)


def test_from_keras_hub_rejects_what_it_cannot_copy():
    hub = keras_hub.models.ViTBackbone((16, 16, 3), 4, 1, 2, 16, 32, use_mha_bias=False)
    with pytest.raises(ValueError, match="use_mha_bias"):
        ViT.from_keras_hub(hub)


def test_attention_maps_and_rollout():
    model = ViT(**TINY, num_classes=3)
    maps = model.attention_maps(IMAGES)
    assert len(maps) == 2 and all(m.shape == (4, 2, 17, 17) for m in maps)  # 1 class token + 16 patches
    for m in maps:
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, atol=1e-5)  # each row a distribution
    rollout = model.attention_rollout(IMAGES)
    assert rollout.shape == (4, 4, 4) and (rollout >= 0).all()
    # By hand: (W + I) / 2 per block, head-averaged, multiplied through; the class token's row over the patches.
    joint = [0.5 * m.mean(axis=1) + 0.5 * np.eye(17) for m in maps]
    expected = (joint[1] @ joint[0])[:, 0, 1:].reshape(4, 4, 4)
    np.testing.assert_allclose(rollout, expected, atol=1e-5)
    assert ViT(**TINY, num_classes=3, pooling="gap").attention_rollout(IMAGES).shape == (4, 4, 4)


def _input_gradient(model_fn, images):
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = model_fn(x)
    return tape.gradient(output, x).numpy()


def test_attention_sees_the_whole_image_after_one_block_a_convolution_only_its_neighbourhood():
    """The receptive-field claim: ViT's class token depends on every pixel after one block; a 3x3 conv does not."""
    images = RNG.random((1, 16, 16, 3)).astype("float32")
    vit = ViT(**{**TINY, "num_layers": 1}, num_classes=None)
    direction = RNG.normal(size=(16,)).astype("float32")  # a generic readout of the class token's 16 features
    grad = _input_gradient(lambda x: keras.ops.sum(vit(x) * direction), images)
    assert np.all(np.abs(grad) > 0), "some pixel does not reach the class token"

    resnet = ResNet((16, 16, 3), num_classes=None, width=4, blocks_per_stage=(1,))
    conv = resnet.get_layer("stem_conv")  # the first 3x3 convolution of the ResNet
    grad = _input_gradient(lambda x: conv(x)[0, 8, 8, 0], images)  # one output pixel
    reached = np.abs(grad[0]).sum(axis=-1) > 0  # (16, 16)
    expected = np.zeros((16, 16), bool)
    expected[7:10, 7:10] = True
    np.testing.assert_array_equal(reached, expected)


def test_mixed_precision_and_xla():
    keras.config.set_dtype_policy("mixed_bfloat16")
    half = ViT(**TINY, num_classes=3)
    keras.config.set_dtype_policy("float32")
    full = ViT(**TINY, num_classes=3)
    half.set_weights(full.get_weights())
    assert all(w.dtype == "float32" for w in half.weights)
    out = _np(keras.ops.cast(half(IMAGES), "float32"))
    np.testing.assert_allclose(out, _np(full(IMAGES)), atol=0.1)
    full.compile(jit_compile=True)
    np.testing.assert_allclose(full.predict(IMAGES, verbose=0), _np(full(IMAGES)), atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViT(**{**TINY, "image_size": 18}, num_classes=2)
    with pytest.raises(ValueError, match="pooling"):
        ViT(**TINY, num_classes=2, pooling="max")
