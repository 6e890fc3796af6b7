import os
import tempfile

import keras
import numpy as np
import pytest

from keras_tx import generation
from keras_tx.data import CharTokenizer, language_model_dataset
from keras_tx.models import RNNLanguageModel

IDS = np.random.default_rng(0).integers(0, 30, size=(2, 9)).astype("int32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_forward_config_and_save(cell):
    lm = RNNLanguageModel(30, cell=cell, embedding_dim=8, units=16, num_layers=2, dropout=0.1)
    logits = _np(lm(IDS))
    assert logits.shape == (2, 9, 30)
    config = lm.get_config()
    assert RNNLanguageModel.from_config(config).get_config() == config
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        lm.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(reloaded, RNNLanguageModel)
    np.testing.assert_allclose(_np(reloaded(IDS)), logits, atol=1e-6)


def test_it_reads_left_to_right():
    lm = RNNLanguageModel(30, embedding_dim=8, units=16)
    changed = IDS.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % 30
    np.testing.assert_allclose(_np(lm(changed))[:, :5], _np(lm(IDS))[:, :5], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_carried_state_equals_full_forward_and_generation_agrees(cell):
    keras.utils.set_random_seed(3)
    lm = RNNLanguageModel(30, cell=cell, embedding_dim=8, units=16, num_layers=2)
    lm.set_weights([w * 3 for w in lm.get_weights()])  # sharper distributions: no near-ties in greedy choices
    cache = lm.initial_cache(2)
    logits, _, cache = lm.call_with_cache(IDS[:, :4], cache)
    steps = [_np(logits)]
    for t in range(4, 9):
        logits, _, cache = lm.call_with_cache(IDS[:, t : t + 1], cache)
        steps.append(_np(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), _np(lm(IDS)), atol=1e-5)
    if cell == "rnn":
        return  # the decoding loop is the same for both cells: compile it once
    # The same compiled decoding loop as GPT, with the recurrent state as the cache.
    out = lm.generate(IDS[:, :4], 5)
    np.testing.assert_array_equal(out, generation.generate_uncached(lm, IDS[:, :4], 5))
    sampled = lm.generate(IDS[:, :4], 5, sampler="top_k", top_k=3, seed=0)
    np.testing.assert_array_equal(lm.generate(IDS[:, :4], 5, sampler="top_k", top_k=3, seed=0), sampled)


def test_fit_reduces_the_loss():
    text = "abcabcabd " * 60
    tokenizer = CharTokenizer.from_text(text)
    dataset = language_model_dataset(tokenizer.encode(text), 12, batch_size=8, seed=0)
    lm = RNNLanguageModel(tokenizer.vocabulary_size, embedding_dim=8, units=32)
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = lm.fit(dataset, epochs=4, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0], history


def test_mixed_bfloat16_forward():
    keras.config.set_dtype_policy("mixed_bfloat16")
    lm = RNNLanguageModel(30, embedding_dim=8, units=16)
    logits = lm(IDS)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    assert np.all(np.isfinite(_np(keras.ops.cast(logits, "float32"))))


def test_unknown_cell_is_a_value_error():
    with pytest.raises(ValueError, match="Unknown cell 'gru'"):
        RNNLanguageModel(30, cell="gru")
