import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tx.layers import LSTM, SimpleRNN
from tests.battery import run_layer_battery

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 6, 4)).astype("float32")
# Right padding, and a hole in the middle: masked steps must keep the state and repeat the last output.
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0]], bool)
PAIRS = [(SimpleRNN, keras.layers.SimpleRNN), (LSTM, keras.layers.LSTM)]


def _outputs(outputs):
    return [keras.ops.convert_to_numpy(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


@pytest.mark.parametrize("ours_cls", [SimpleRNN, LSTM])
def test_battery(ours_cls):
    run_layer_battery(ours_cls, {"units": 5, "return_sequences": True}, X, expected_output_shape=(3, 6, 5))


def test_battery_lstm_state():
    run_layer_battery(LSTM, {"units": 5, "return_state": True, "go_backwards": True}, X, expected_output_shape=(3, 5))


@pytest.mark.parametrize("ours_cls,keras_cls", PAIRS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"return_sequences": True, "return_state": True},
        {"return_sequences": False, "return_state": True},
        {"return_sequences": True, "go_backwards": True},
    ],
)
def test_same_weights_same_outputs_as_keras(ours_cls, keras_cls, kwargs):
    theirs = keras_cls(5, **kwargs)
    expected = _outputs(theirs(X, mask=MASK))
    ours = ours_cls(5, **kwargs)
    ours(X)
    ours.set_weights(theirs.get_weights())
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in theirs.weights]
    got = _outputs(ours(X, mask=MASK))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    # And the other way round: our trained weights run in Keras' layer.
    theirs.set_weights([w * 1.5 for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_outputs(ours(X))[0], _outputs(theirs(X))[0], atol=1e-5, rtol=1e-5)


def test_initial_state_is_used():
    layer = LSTM(5, return_state=True)
    _, h0, c0 = layer(X)
    out_zero = _outputs(layer(X))[0]
    out_init = _outputs(layer(X, initial_state=[h0, c0]))[0]
    assert not np.allclose(out_zero, out_init)
    reference = keras.layers.LSTM(5, return_state=True)
    reference(X)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(out_init, _outputs(reference(X, initial_state=[h0, c0]))[0], atol=1e-5)


def test_lstm_has_four_times_the_parameters():
    rnn, lstm = SimpleRNN(16), LSTM(16)
    rnn(X), lstm(X)
    assert lstm.count_params() == 4 * rnn.count_params()


def test_forget_bias_starts_at_one():
    layer = LSTM(3)
    layer(X)
    bias = keras.ops.convert_to_numpy(layer.cell.bias)
    np.testing.assert_array_equal(bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def _gradient_reaching_first_step(layer_cls, length=100):
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, length, 8)).astype("float32"))
    layer = layer_cls(32, return_sequences=True)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x)[:, -1])  # a loss at the last step only
    per_step = tf.norm(tape.gradient(loss, x), axis=(0, 2)).numpy()
    return per_step[0] / per_step[-1]  # relative to the gradient at the last step itself


def test_gradient_vanishes_through_simple_rnn_but_not_lstm():
    rnn, lstm = _gradient_reaching_first_step(SimpleRNN), _gradient_reaching_first_step(LSTM)
    # Measured: about 1e-14 for SimpleRNN and 3e-9 for LSTM; demand at least three orders of magnitude.
    assert lstm > 1e3 * rnn, (rnn, lstm)


def test_dropout_only_in_training():
    layer = LSTM(5, dropout=0.5, seed=1)
    a, b = _outputs(layer(X, training=False))[0], _outputs(layer(X, training=False))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, _outputs(layer(X, training=True))[0])


def test_bad_input_rank():
    with pytest.raises(ValueError, match="batch, time, features"):
        LSTM(4)(np.zeros((3, 4), "float32"))
