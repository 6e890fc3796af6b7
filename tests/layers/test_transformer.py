import keras
import keras_hub
import numpy as np
import pytest

from keras_tx.layers import FeedForward, TransformerDecoderBlock, TransformerEncoderBlock
from tests.battery import run_layer_battery

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 6, 8)).astype("float32")
ENC = RNG.normal(size=(2, 4, 8)).astype("float32")
PADDING = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]], bool)
ENC_PADDING = np.array([[1] * 4, [1, 1, 1, 0]], bool)
CONFIG = {"num_heads": 2, "intermediate_dim": 16}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _transfer(ours, theirs):
    ours.set_weights_from_keras_hub(theirs)


def test_feedforward_battery():
    run_layer_battery(FeedForward, {"intermediate_dim": 16, "activation": "gelu"}, X, expected_output_shape=X.shape)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_battery(norm_first):
    run_layer_battery(TransformerEncoderBlock, {**CONFIG, "norm_first": norm_first}, X, expected_output_shape=X.shape)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_battery(norm_first):
    run_layer_battery(TransformerDecoderBlock, {**CONFIG, "norm_first": norm_first}, X, expected_output_shape=X.shape)


def test_decoder_with_cross_attention_battery():
    run_layer_battery(
        TransformerDecoderBlock, CONFIG, {"decoder_sequence": X, "encoder_sequence": ENC}, expected_output_shape=X.shape
    )


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_encoder_equals_keras_hub(norm_first, masked):
    theirs = keras_hub.layers.TransformerEncoder(16, 2, activation="gelu", normalize_first=norm_first)
    ours = TransformerEncoderBlock(2, 16, activation="gelu", norm_first=norm_first)
    padding = PADDING if masked else None
    expected = theirs(X, padding_mask=padding)
    ours(X)
    _transfer(ours, theirs)
    got = _np(ours(X, padding_mask=padding))
    np.testing.assert_allclose(got, _np(expected), atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_decoder_equals_keras_hub(norm_first, cross):
    theirs = keras_hub.layers.TransformerDecoder(16, 2, normalize_first=norm_first)
    ours = TransformerDecoderBlock(2, 16, norm_first=norm_first)
    kwargs = {"decoder_padding_mask": PADDING}
    if cross:
        kwargs.update(encoder_sequence=ENC, encoder_padding_mask=ENC_PADDING)
    expected = theirs(X, **kwargs)
    ours(X, **kwargs)
    _transfer(ours, theirs)
    np.testing.assert_allclose(_np(ours(X, **kwargs))[PADDING], _np(expected)[PADDING], atol=1e-5)


def test_decoder_is_causal_and_encoder_is_not():
    changed = X.copy()
    changed[:, 4:] = RNG.normal(size=(2, 2, 8))
    decoder, encoder = TransformerDecoderBlock(**CONFIG), TransformerEncoderBlock(**CONFIG)
    np.testing.assert_allclose(_np(decoder(changed))[:, :4], _np(decoder(X))[:, :4], atol=1e-5)
    assert not np.allclose(_np(encoder(changed))[:, :4], _np(encoder(X))[:, :4])


def test_encoder_keras_mask_equals_padding_mask():
    ids = np.array([[3, 4, 5, 6, 7, 8], [3, 4, 5, 6, 0, 0]])
    x = keras.layers.Embedding(10, 8, mask_zero=True)(ids)
    block = TransformerEncoderBlock(**CONFIG)
    np.testing.assert_allclose(
        _np(block(x))[PADDING], _np(block(x, padding_mask=ids != 0))[PADDING], atol=1e-6
    )
    assert not np.allclose(_np(block(x))[PADDING], _np(block(keras.ops.convert_to_tensor(_np(x))))[PADDING])


@pytest.mark.parametrize("cross", [False, True])
def test_decoder_cached_decoding_equals_full_pass(cross):
    block = TransformerDecoderBlock(norm_first=True, **CONFIG)
    enc = {"encoder_sequence": ENC, "encoder_padding_mask": ENC_PADDING} if cross else {}
    full = _np(block(X, **enc))
    self_cache = np.zeros((2, 2, 6, 2, 4), "float32")
    cross_cache = np.zeros((2, 2, 4, 2, 4), "float32") if cross else None
    steps = []
    for t in range(6):
        kwargs = dict(enc, self_attention_cache=self_cache, self_attention_cache_update_index=t)
        if cross:
            kwargs.update(cross_attention_cache=cross_cache, cross_attention_cache_update_index=0 if t == 0 else None)
            out, self_cache, cross_cache = block(X[:, t:t + 1], **kwargs)
        else:
            out, self_cache = block(X[:, t:t + 1], **kwargs)
        steps.append(_np(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_decoder_returns_attention_scores():
    out, scores = TransformerDecoderBlock(**CONFIG)(X, return_attention_scores=True)
    scores = _np(scores)
    assert scores.shape == (2, 2, 6, 6)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(scores[0, 0], 1) == 0)


def test_decoder_inputs_must_not_change_between_calls():
    block = TransformerDecoderBlock(**CONFIG)
    block(X)
    with pytest.raises(ValueError, match="without cross-attention"):
        block(X, encoder_sequence=ENC)
