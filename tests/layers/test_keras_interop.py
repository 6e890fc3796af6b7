"""keras_tx's layers inside Keras' own machinery: wrappers, cells in keras.layers.RNN, dropout masks, LoRA,
Keras checkpoints. What a user who swaps our layer in for Keras' relies on, beyond Keras' own test files
(test_keras_suite.py)."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_tx import layers as ours
from keras_tx.models import GPT

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 6, 4)).astype("float32")
MASK = np.array([[1] * 6, [1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0]], bool)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _reload(model):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        return keras.saving.load_model(path, safe_mode=True)


@pytest.mark.parametrize("ours_cls,keras_cls", [(ours.LSTM, keras.layers.LSTM), (ours.SimpleRNN, keras.layers.SimpleRNN)])
def test_bidirectional_wraps_ours_as_it_wraps_keras(ours_cls, keras_cls):
    wrapped = keras.layers.Bidirectional(ours_cls(5, return_sequences=True))
    reference = keras.layers.Bidirectional(keras_cls(5, return_sequences=True))
    got = wrapped(X, mask=MASK)
    reference(X)
    reference.set_weights(wrapped.get_weights())
    np.testing.assert_allclose(_np(got), _np(reference(X, mask=MASK)), atol=1e-5)
    # The backward copy is ours too, and the wrapper saves and reloads.
    assert isinstance(wrapped.backward_layer, ours_cls) and wrapped.backward_layer.go_backwards
    inputs = keras.Input((6, 4))
    model = keras.Model(inputs, wrapped(inputs))
    np.testing.assert_allclose(_np(_reload(model)(X)), _np(model(X)), atol=1e-6)


@pytest.mark.parametrize(
    "cell_cls,keras_cls", [(ours.LSTMCell, keras.layers.LSTM), (ours.SimpleRNNCell, keras.layers.SimpleRNN)]
)
def test_keras_rnn_runs_our_cell(cell_cls, keras_cls):
    layer = keras.layers.RNN(cell_cls(5), return_sequences=True, return_state=True)
    got = layer(X, mask=MASK)
    reference = keras_cls(5, return_sequences=True, return_state=True)
    reference(X)
    reference.set_weights(layer.get_weights())
    expected = reference(X, mask=MASK)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(_np(a), _np(b), atol=1e-5)


@pytest.mark.parametrize(
    "ours_cls,keras_cls,kwargs",
    [
        (ours.LSTM, keras.layers.LSTM, {"dropout": 0.3}),
        (ours.LSTM, keras.layers.LSTM, {"dropout": 0.3, "recurrent_dropout": 0.2}),  # one mask per gate
        (ours.SimpleRNN, keras.layers.SimpleRNN, {"dropout": 0.3, "recurrent_dropout": 0.4}),
    ],
)
def test_dropout_masks_are_drawn_as_keras_draws_them(ours_cls, keras_cls, kwargs):
    layer = ours_cls(5, seed=7, return_sequences=True, **kwargs)
    reference = keras_cls(5, seed=7, return_sequences=True, **kwargs)
    layer(X)
    reference(X)
    layer.set_weights(reference.get_weights())
    got, expected = _np(layer(X, training=True)), _np(reference(X, training=True))
    np.testing.assert_allclose(got, expected, atol=1e-5)  # same seed, same masks
    assert not np.allclose(got, _np(layer(X, training=False)))
    # And inside keras.layers.RNN, our cell's masks are prepared and reset per call as Keras' own.
    rnn = keras.layers.RNN(layer.cell.__class__.from_config(layer.cell.get_config()), return_sequences=True)
    rnn(X)
    rnn.set_weights(reference.get_weights())
    assert not np.allclose(_np(rnn(X, training=True)), _np(rnn(X, training=True)))


def test_stateful_lstm_continues_where_the_last_batch_ended():
    layer = ours.LSTM(5, stateful=True, return_sequences=True)
    first, second = _np(layer(X[:, :3])), _np(layer(X[:, 3:]))
    whole = ours.LSTM(5, return_sequences=True)
    whole(X)
    whole.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), _np(whole(X)), atol=1e-5)
    layer.reset_state()
    np.testing.assert_allclose(_np(layer(X[:, :3])), first, atol=1e-6)


def test_time_distributed_applies_our_block_to_every_slice():
    block = ours.TransformerEncoderBlock(num_heads=2, intermediate_dim=8)
    x = RNG.normal(size=(2, 3, 5, 4)).astype("float32")  # (batch, slices, tokens, features)
    got = _np(keras.layers.TimeDistributed(block)(x))
    for i in range(3):
        np.testing.assert_allclose(got[:, i], _np(block(x[:, i])), atol=1e-5)


def test_mha_with_attention_axes_and_gate_equals_keras():
    x = RNG.normal(size=(2, 3, 4, 8)).astype("float32")
    for kwargs in ({"attention_axes": (1, 2)}, {"attention_axes": 2, "use_gate": True, "output_shape": (2, 3)}):
        layer = ours.MultiHeadAttention(num_heads=2, key_dim=4, **kwargs)
        reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, **kwargs)
        layer(x, x)
        reference(x, x)
        layer.set_weights(reference.get_weights())
        got, got_scores = layer(x, x, return_attention_scores=True)
        expected, expected_scores = reference(x, x, return_attention_scores=True)
        np.testing.assert_allclose(_np(got), _np(expected), atol=1e-5)
        np.testing.assert_allclose(_np(got_scores), _np(expected_scores), atol=1e-5)


def test_keras_mha_checkpoint_loads_into_ours_by_name():
    def model(layer_cls):
        query, value = keras.Input((5, 8)), keras.Input((7, 6))
        return keras.Model([query, value], layer_cls(num_heads=2, key_dim=4, use_gate=True)(query, value))

    theirs, mine = model(keras.layers.MultiHeadAttention), model(ours.MultiHeadAttention)
    inputs = [RNG.normal(size=(2, 5, 8)).astype("float32"), RNG.normal(size=(2, 7, 6)).astype("float32")]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mha.weights.h5")
        theirs.save_weights(path)
        mine.load_weights(path)
    np.testing.assert_allclose(_np(mine(inputs)), _np(theirs(inputs)), atol=1e-5)


def test_gpt_fine_tunes_with_lora_on_its_attention():
    gpt = GPT(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=16)
    ids = RNG.integers(0, 50, size=(8, 13)).astype("int32")
    before = _np(gpt(ids[:, :-1]))
    attentions = [layer for layer in gpt._flatten_layers() if isinstance(layer, ours.MultiHeadAttention)]
    assert len(attentions) == 2
    for attention in attentions:
        attention.query_dense.enable_lora(4)
        attention.value_dense.enable_lora(4)
    np.testing.assert_allclose(_np(gpt(ids[:, :-1])), before, atol=1e-6)  # lora_b starts at zero
    frozen = {id(a.query_dense._kernel): _np(a.query_dense._kernel) for a in attentions}
    lora = [w for w in gpt.trainable_weights if "lora" in w.path]
    assert len(lora) == 8
    lora_before = [_np(w) for w in lora]
    gpt.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = gpt.fit(ids[:, :-1], ids[:, 1:], epochs=3, batch_size=4, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert all(not np.allclose(_np(w), old) for w, old in zip(lora, lora_before)), "LoRA weights did not train"
    for attention in attentions:  # the base kernels are frozen
        np.testing.assert_array_equal(_np(attention.query_dense._kernel), frozen[id(attention.query_dense._kernel)])
    tuned = _np(gpt(ids[:, :-1]))
    assert not np.allclose(tuned, before)
    # Saved with the LoRA update merged into the kernels: the reloaded model computes the tuned outputs.
    np.testing.assert_allclose(_np(_reload(gpt)(ids[:, :-1])), tuned, atol=1e-4)
