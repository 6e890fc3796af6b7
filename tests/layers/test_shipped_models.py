"""The shipped models in saved_models/ still load and compute what they computed when they were trained.

The golden outputs in golden/shipped_models.npz were captured from the layers as they were when the models were
saved (before MultiHeadAttention learned attention_axes, use_gate and Keras' private sublayer names). Loading the
old `.keras` files must still find every weight by its path, and a forward pass must give the same numbers.
Regenerate (only if a model is deliberately retrained): `python -m tests.layers.test_shipped_models`.
"""

import os

import keras
import numpy as np
import pytest

import keras_tx.models  # noqa: F401  (registers the models for safe_mode loading)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "shipped_models.npz")
MODELS = ["gpt_shakespeare", "bert_mlm", "vit_fashion_mnist", "igpt_fashion_mnist", "translation_de_en"]


def _inputs(name):
    """Fixed inputs for each model: a small batch of 2, seeded."""
    rng = np.random.default_rng(0)
    if name == "gpt_shakespeare":
        return rng.integers(0, 65, size=(2, 12)).astype("int32")
    if name == "igpt_fashion_mnist":
        return rng.integers(0, 16, size=(2, 20)).astype("int32")
    if name == "vit_fashion_mnist":
        return rng.random((2, 28, 28, 1)).astype("float32")
    if name == "bert_mlm":
        padding = np.ones((2, 12), "int32")
        padding[1, 9:] = 0
        return {
            "token_ids": rng.integers(5, 7606, size=(2, 12)).astype("int32") * padding,
            "segment_ids": np.zeros((2, 12), "int32"),
            "padding_mask": padding,
            "mask_positions": np.array([[1, 4, 7], [2, 3, 8]], "int32"),
        }
    if name == "translation_de_en":
        return {
            "encoder_token_ids": rng.integers(1, 3488, size=(2, 10)).astype("int32"),
            "decoder_token_ids": rng.integers(1, 2878, size=(2, 9)).astype("int32"),
        }
    raise KeyError(name)


def _outputs(name):
    model = keras.saving.load_model(os.path.join(ROOT, "saved_models", name, "model.keras"), safe_mode=True)
    outputs = model(_inputs(name), training=False)
    flat = keras.tree.flatten(outputs)
    # The first 128 logits of each position are enough to notice a wrong weight, and keep the .npz small.
    return [keras.ops.convert_to_numpy(o).astype("float32")[..., :128] for o in flat]


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_loads_and_gives_the_golden_outputs(name):
    golden = np.load(GOLDEN)
    expected = [golden[key] for key in sorted(k for k in golden.files if k.startswith(name + "/"))]
    got = _outputs(name)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


if __name__ == "__main__":
    arrays = {}
    for name in MODELS:
        for i, output in enumerate(_outputs(name)):
            arrays[f"{name}/{i:02d}"] = output
    np.savez_compressed(GOLDEN, **arrays)
    print({k: v.shape for k, v in arrays.items()})
