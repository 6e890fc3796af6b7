"""keras_tx/layers and keras_tx/models run on any Keras backend: they must not import tensorflow."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_tx"
FILES = sorted(p for folder in ("layers", "models") for p in (PACKAGE / folder).glob("*.py"))


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_tensorflow_import(path):
    bad = [name for name in _imports(path) if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_text")]
    assert not bad, f"{path} imports {bad}"


JAX_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
import keras
from keras_tx import layers
assert "tensorflow" not in sys.modules, "keras_tx.layers pulled in tensorflow"
x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
block = layers.TransformerDecoderBlock(num_heads=2, intermediate_dim=16, norm_first=True)
full = np.asarray(block(x))
cache = np.zeros((2, 2, 6, 2, 4), "float32")
steps = []
for t in range(6):
    out, cache = block(x[:, t:t + 1], self_attention_cache=cache, self_attention_cache_update_index=t)
    steps.append(np.asarray(out))
np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5)
for layer in (layers.LSTM(4, return_sequences=True), layers.SimpleRNN(4), layers.SelfAttention(4),
              layers.TransformerEncoderBlock(2, 16), layers.FeedForward(16)):
    assert np.all(np.isfinite(np.asarray(layer(x))))
print("ok", keras.backend.backend())
"""


def test_layers_run_on_jax_without_tensorflow():
    """The GPU machines run JAX: the layers must work there, and never load tensorflow."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "ok jax" in result.stdout, result.stderr[-3000:]
