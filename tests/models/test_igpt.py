import keras
import numpy as np
import pytest

from keras_tx.models.gpt import GPT
from keras_tx.models.igpt import ImageGPT, Palette
from tests.models.vision_checks import check_config_and_saving, check_fit_reduces_loss

RNG = np.random.default_rng(0)
# 8x8 grey "images": a bright blob on a dark background, downsampled to a 4x4 token grid (16 pixels).
IMAGES = np.zeros((24, 8, 8, 1), "float32")
for i, (r, c) in enumerate(RNG.integers(0, 5, size=(24, 2))):
    IMAGES[i, r : r + 4, c : c + 4] = RNG.uniform(0.6, 1.0)
IMAGES += RNG.uniform(0, 0.1, IMAGES.shape).astype("float32")
TINY = dict(image_size=4, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)


@pytest.fixture(scope="module")
def palette():
    return Palette.fit(IMAGES, num_colors=6)


def test_palette_is_sorted_distinct_and_round_trips(palette):
    centres = palette.centres
    assert centres.shape == (6, 1) and len(np.unique(centres, axis=0)) == 6
    assert np.all(np.diff(centres[:, 0]) > 0)  # sorted by brightness: index order is grey-level order
    indices = RNG.integers(0, 6, size=(5, 12))
    images = palette.dequantize(indices, 3, 4)
    assert images.shape == (5, 3, 4, 1)
    np.testing.assert_array_equal(palette.quantize(images), indices)  # quantize(dequantize(idx)) == idx
    # Quantizing moves each pixel to its nearest centre: the error is at most half the widest gap.
    error = np.abs(palette.dequantize(palette.quantize(IMAGES), 8, 8) - IMAGES).max()
    assert error <= np.diff(centres[:, 0]).max() / 2 + max(centres[0, 0], 1 - centres[-1, 0]) + 1e-6


def test_palette_with_few_colours_and_rgb():
    two_tone = np.zeros((3, 4, 4, 1), np.uint8)
    two_tone[:, :2] = 255  # uint8 in, [0, 1] centres out
    np.testing.assert_allclose(Palette.fit(two_tone, num_colors=16).centres, [[0.0], [1.0]])
    rgb = RNG.random((6, 8, 8, 3)).astype("float32")
    palette = Palette.fit(rgb, num_colors=8)
    assert palette.centres.shape == (8, 3)
    indices = RNG.integers(0, 8, size=(2, 64))
    np.testing.assert_array_equal(palette.quantize(palette.dequantize(indices, 8, 8)), indices)


def test_sequences_downsample_and_start_with_the_start_token(palette):
    model = ImageGPT(palette, **TINY)
    assert model.vocabulary_size == 7 and model.max_length == 17 and isinstance(model, GPT)
    tokens = model.sequences(IMAGES[:3])
    assert tokens.shape == (3, 17) and (tokens[:, 0] == 6).all() and (tokens[:, 1:] < 6).all()
    block_means = IMAGES[:3].reshape(3, 4, 2, 4, 2, 1).mean(axis=(2, 4))  # 8x8 -> 4x4 by 2x2 averages
    np.testing.assert_array_equal(tokens[:, 1:], palette.quantize(block_means))
    x, y = model.training_pairs(IMAGES[:3])
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_fit_reduces_the_loss(palette):
    model = ImageGPT(palette, **TINY)
    x, y = model.training_pairs(IMAGES)
    check_fit_reduces_loss(model, x, y, epochs=10)


def test_completion_keeps_the_given_rows_and_is_reproducible(palette):
    model = ImageGPT(palette, **TINY)
    given = model.dequantize_images(model.quantize_images(IMAGES[:2]))  # (2, 4, 4, 1)
    first = model.complete(IMAGES[:2], keep_rows=2, num_samples=3, temperature=1.5, seed=7)
    assert first.shape == (2, 3, 4, 4, 1)
    np.testing.assert_array_equal(first[:, :, :2], np.broadcast_to(given[:, None, :2], (2, 3, 2, 4, 1)))
    np.testing.assert_array_equal(model.complete(IMAGES[:2], 2, 3, temperature=1.5, seed=7), first)
    other = model.complete(IMAGES[:2], 2, 3, temperature=1.5, seed=8)
    assert not np.array_equal(other, first)  # the seed, not luck, makes them equal
    assert np.isin(first, palette.centres).all()  # only palette colours, never the start token
    np.testing.assert_array_equal(model.complete(IMAGES[:2], keep_rows=4)[:, 0], given)
    with pytest.raises(ValueError, match="keep_rows"):
        model.complete(IMAGES[:2], keep_rows=5)


def test_start_token_is_never_sampled(palette):
    model = ImageGPT(palette, **TINY)
    # Make the start token by far the most likely output (final hidden state = ones, its embedding = 50s):
    # generation must still draw only colours.
    model.layer_norm.gamma.assign(np.zeros(16, "float32"))
    model.layer_norm.beta.assign(np.ones(16, "float32"))
    embeddings = np.zeros((7, 16), "float32")
    embeddings[6] = 50.0
    model.token_embedding.embeddings.assign(embeddings)
    assert (keras.ops.convert_to_numpy(model(np.full((1, 3), 6, "int32"))).argmax(-1) == 6).all()
    tokens = model.generate(np.full((2, 1), 6, "int32"), 16, sampler="random", seed=0)
    assert (tokens[:, 1:] < 6).all()


def test_keras_file_keeps_the_palette_and_the_completions(tmp_path, palette):
    model = ImageGPT(palette, **TINY)
    x, _ = model.training_pairs(IMAGES[:2])
    reloaded = check_config_and_saving(model, x, tmp_path)
    np.testing.assert_array_equal(reloaded.palette.centres, palette.centres)
    np.testing.assert_array_equal(
        reloaded.complete(IMAGES[:2], keep_rows=1, num_samples=2, seed=3),
        model.complete(IMAGES[:2], keep_rows=1, num_samples=2, seed=3),
    )


def test_linear_probe_features(palette):
    model = ImageGPT(palette, **TINY)
    features = {layer: model.linear_probe_features(IMAGES[:5], layer=layer, batch_size=2) for layer in (1, 2)}
    assert all(f.shape == (5, 16) and np.isfinite(f).all() for f in features.values())
    assert not np.allclose(features[1], features[2])
    np.testing.assert_allclose(model.linear_probe_features(IMAGES[:5]), features[1], atol=1e-5)  # middle = 1 of 2
    with pytest.raises(ValueError, match="layer"):
        model.linear_probe_features(IMAGES[:1], layer=3)
