import os
import tempfile

import keras
import keras_hub
import numpy as np
import pytest

from keras_tx.data import CharTokenizer, language_model_dataset
from keras_tx.models import GPT, GPTClassifier

CONFIG = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=32)
IDS = np.random.default_rng(0).integers(0, 50, size=(2, 12)).astype("int32")


def _np(x):
    return keras.ops.convert_to_numpy(x.value if isinstance(x, keras.Variable) else x)


def _reload(model):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        return keras.saving.load_model(path, safe_mode=True)


def test_logits_shape_and_tied_output():
    gpt = GPT(**CONFIG)
    logits = _np(gpt(IDS))
    assert logits.shape == (2, 12, 50)
    # Tied: the logits are the final hidden states times the token embedding, no separate output matrix.
    hidden = _np(gpt.hidden_states(IDS))
    np.testing.assert_allclose(logits, hidden @ _np(gpt.token_embedding.embeddings).T, atol=1e-5)
    assert not any("logits" in w.path or "output" in w.path.split("/")[0] for w in gpt.weights)


def test_from_keras_hub_gives_keras_hub_logits():
    hub = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=32
    )
    gpt = GPT.from_keras_hub(hub)
    assert gpt.count_params() == hub.count_params()
    ids = np.random.default_rng(1).integers(0, 50, size=(3, 32)).astype("int32")  # every position used
    hidden = hub({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    expected = _np(hidden) @ _np(hub.token_embedding.embeddings).T
    np.testing.assert_allclose(_np(gpt(ids)), expected, atol=1e-4, rtol=0)


def test_config_round_trip():
    gpt = GPT(**CONFIG, dropout=0.1, layer_norm_epsilon=1e-6, name="tiny_gpt")
    config = gpt.get_config()
    clone = GPT.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == gpt.count_params()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gpt))
    assert isinstance(again, GPT) and again.get_config() == config


def test_save_and_load_gives_the_same_logits():
    gpt = GPT(**CONFIG)
    reloaded = _reload(gpt)
    assert isinstance(reloaded, GPT)
    np.testing.assert_allclose(_np(reloaded(IDS)), _np(gpt(IDS)), atol=1e-6)
    assert len(reloaded.weights) == len(gpt.weights)  # still tied: no output matrix appeared


def test_causal_the_future_does_not_change_the_past():
    gpt = GPT(**CONFIG)
    changed = IDS.copy()
    changed[:, 6:] = (changed[:, 6:] + 7) % 50
    before, after = _np(gpt(IDS)), _np(gpt(changed))
    np.testing.assert_allclose(after[:, :6], before[:, :6], atol=1e-5)
    assert not np.allclose(after[:, 6:], before[:, 6:], atol=1e-3)


def test_call_with_cache_equals_full_forward():
    gpt = GPT(**CONFIG)
    full = _np(gpt(IDS))
    cache = gpt.initial_cache(2, 12)
    assert tuple(cache.shape) == (2, 2, 2, 12, 2, 8)  # (B, layers, keys/values, S, heads, head_dim)
    logits, hidden, cache = gpt.call_with_cache(IDS[:, :5], cache, 0)  # prefill
    steps = [_np(logits)]
    for t in range(5, 12):
        logits, hidden, cache = gpt.call_with_cache(IDS[:, t : t + 1], cache, t)
        steps.append(_np(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert tuple(hidden.shape) == (2, 1, 16)


def test_bad_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="num_heads=3 must divide hidden_dim=16"):
        GPT(**{**CONFIG, "num_heads": 3})


def test_fit_reduces_the_loss():
    text = "to be or not to be, that is the question. " * 20
    tokenizer = CharTokenizer.from_text(text)
    dataset = language_model_dataset(tokenizer.encode(text), 16, batch_size=8, seed=0)
    gpt = GPT(tokenizer.vocabulary_size, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, max_length=16)
    gpt.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = gpt.fit(dataset, epochs=4, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0], history


def test_mixed_bfloat16_forward_and_generation():
    keras.config.set_dtype_policy("mixed_bfloat16")
    gpt = GPT(**{**CONFIG, "num_layers": 1})
    logits = gpt(IDS)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    assert all(w.dtype == "float32" for w in gpt.weights)
    assert np.all(np.isfinite(_np(keras.ops.cast(logits, "float32"))))
    assert gpt.generate(IDS[:, :4], 3).shape == (2, 7)


def test_classifier_reads_the_last_real_token():
    gpt = GPT(**CONFIG)
    classifier = GPTClassifier(gpt, num_classes=3)
    ids = IDS[:, :8].copy()
    lengths = np.array([8, 5])
    mask = (np.arange(8)[None] < lengths[:, None]).astype("int32")
    logits = _np(classifier({"token_ids": ids, "padding_mask": mask}))
    assert logits.shape == (2, 3)
    # The head sees the hidden state of each sequence's last real token...
    hidden = _np(gpt.hidden_states(ids))
    summary = hidden[np.arange(2), lengths - 1]
    kernel, bias = (_np(w) for w in classifier.head.weights)
    np.testing.assert_allclose(logits, summary @ kernel + bias, atol=1e-5)
    # ...so whatever stands in the padding does not matter.
    ids[1, 5:] = 1
    np.testing.assert_allclose(_np(classifier({"token_ids": ids, "padding_mask": mask})), logits, atol=1e-5)


def test_classifier_fine_tunes_the_backbone_and_round_trips():
    gpt = GPT(**{**CONFIG, "num_layers": 1})
    classifier = GPTClassifier(gpt, num_classes=2, dropout=0.1)
    x = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}
    y = np.array([0, 1])
    before = _np(gpt.token_embedding.embeddings).copy()
    classifier.compile(
        optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    classifier.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(_np(gpt.token_embedding.embeddings), before)  # pretrain, then fine-tune: shared
    reloaded = _reload(classifier)
    assert isinstance(reloaded, GPTClassifier) and isinstance(reloaded.backbone, GPT)
    np.testing.assert_allclose(_np(reloaded(x)), _np(classifier(x)), atol=1e-5)
    assert GPTClassifier.from_config(classifier.get_config()).get_config() == classifier.get_config()
