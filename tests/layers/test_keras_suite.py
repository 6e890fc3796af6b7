"""Keras' own test files for MultiHeadAttention, LSTM and SimpleRNN, run against keras_tx's layers.

The three files are read from the installed keras package (so a Keras upgrade re-checks us), the one line that
imports `layers` is rewritten to a shim that is `keras.layers` with MultiHeadAttention, LSTM and SimpleRNN
replaced by ours, and their test classes are collected here by pytest. What is deliberately left out is listed in
XFAIL, each with the reason; strict, so a test that starts passing is noticed.
"""

import os
import types

import keras
import keras.src.layers as keras_layers
import pytest

from keras_tx import layers as ours

KERAS_TESTS = os.path.join(os.path.dirname(os.path.abspath(keras_layers.__file__)))
IMPORT_LINE = "from keras.src import layers\n"

# Test name -> why it is expected to fail (at most three; strict). None at present: all 59 tests pass on the
# TensorFlow backend (Keras' file itself skips its two flash-attention tests there: JAX and PyTorch only).
XFAIL = {}


def _shim():
    shim = types.ModuleType("keras_tx_layers_shim")
    shim.__getattr__ = lambda name: getattr(keras_layers, name)
    shim.MultiHeadAttention = ours.MultiHeadAttention
    shim.LSTM = ours.LSTM
    shim.SimpleRNN = ours.SimpleRNN
    return shim


def _load(relative_path):
    """Keras' test module at `relative_path`, with `layers` pointing at the shim."""
    path = os.path.join(KERAS_TESTS, relative_path)
    with open(path) as f:
        source = f.read()
    assert source.count(IMPORT_LINE) == 1, f"{path} no longer imports layers as expected"
    source = source.replace(IMPORT_LINE, "layers = _KERAS_TX_SHIM\n")  # one line for one: tracebacks keep their lines
    module = types.ModuleType("keras_suite_" + os.path.basename(path)[:-3])
    module.__file__ = path
    module._KERAS_TX_SHIM = _shim()
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def _ours(test_class):
    """A subclass of Keras' test class collected here, with the expected failures marked."""
    namespace = {}
    for name in dir(test_class):
        if name in XFAIL:
            namespace[name] = pytest.mark.xfail(reason=XFAIL[name], strict=True)(getattr(test_class, name))
    return type(test_class.__name__, (test_class,), namespace)


MultiHeadAttentionTest = _ours(_load("attention/multi_head_attention_test.py").MultiHeadAttentionTest)
LSTMTest = _ours(_load("rnn/lstm_test.py").LSTMTest)
SimpleRNNTest = _ours(_load("rnn/simple_rnn_test.py").SimpleRNNTest)
