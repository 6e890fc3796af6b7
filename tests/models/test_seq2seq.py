"""The encoder-decoder Transformer: shapes, the claims (bidirectional encoder, causal decoder, padding invisible),
cached decoding equal to the full pass, greedy and beam search, compilation once, saving, and learning a task."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_tx.generation import trace_count
from keras_tx.models import MaskedCrossentropy, Seq2SeqTransformer, masked_accuracy
from keras_tx.models.seq2seq import END_ID, START_ID

CONFIG = dict(
    source_vocabulary_size=20,
    target_vocabulary_size=24,
    num_layers=1,  # each compiled decoding loop costs seconds per layer to compile
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=32,
    max_source_length=10,
    max_target_length=12,
    dropout=0.0,
)
RNG = np.random.default_rng(0)
SOURCE = RNG.integers(4, 20, size=(2, 7)).astype("int32")
DECODER = np.concatenate([np.full((2, 1), START_ID), RNG.integers(4, 24, size=(2, 8))], axis=1).astype("int32")
X = {"encoder_token_ids": SOURCE, "decoder_token_ids": DECODER}


def _np(x):
    return keras.ops.convert_to_numpy(x.value if isinstance(x, keras.Variable) else x)


def _reload(model):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        return keras.saving.load_model(path, safe_mode=True)


# --- a task the model must learn: reverse a sequence of symbols --------------------------------------------

REVERSE_LENGTH = 6  # longest source; the target adds [END]


def _reverse_task(count, seed):
    rng = np.random.default_rng(seed)
    source = np.zeros((count, REVERSE_LENGTH), "int32")
    decoder = np.zeros((count, REVERSE_LENGTH + 1), "int32")
    target = np.zeros((count, REVERSE_LENGTH + 1), "int32")
    for i in range(count):
        n = rng.integers(3, REVERSE_LENGTH + 1)
        symbols = rng.integers(4, 12, n)  # ids 4..11; 0-3 are [PAD] [UNK] [START] [END]
        source[i, :n] = symbols
        target[i, :n], target[i, n] = symbols[::-1], END_ID
        decoder[i, 0], decoder[i, 1 : n + 1] = START_ID, symbols[::-1]
    return {"encoder_token_ids": source, "decoder_token_ids": decoder}, target


@pytest.fixture(scope="module")
def reverser():
    """A one-layer Transformer trained (about 10 s) to reverse 64 sequences; and its loss history."""
    keras.utils.set_random_seed(0)
    x, y = _reverse_task(64, seed=0)
    model = Seq2SeqTransformer(
        12, 12, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_source_length=REVERSE_LENGTH, max_target_length=REVERSE_LENGTH + 1, dropout=0.0,
    )
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=MaskedCrossentropy(), metrics=[masked_accuracy])
    history = model.fit(x, y, batch_size=16, epochs=40, verbose=0).history
    return model, x, y, history


def _exact(out, expected):
    """How many rows of `out` are their expected target exactly (up to [END]; padding after it)."""
    return sum(np.array_equal(row, target[: len(row)]) and END_ID in row for row, target in zip(out, expected))


# The decoding tests share compiled programs (each takes seconds to compile): greedy and beam search over the
# first 8 training sources, and greedy over one source.


def test_fit_reduces_the_loss_and_learns_to_reverse(reverser):
    model, x, y, history = reverser
    assert history["loss"][-1] < 0.2 * history["loss"][0], history["loss"]
    assert history["masked_accuracy"][-1] > 0.9, history["masked_accuracy"]
    # Serial greedy decoding, from [START] only, reproduces the training pairs.
    out = model.translate_ids(x["encoder_token_ids"][:8])
    assert _exact(out, y[:8]) >= 6, (out, y[:8])


def test_cached_greedy_equals_uncached_and_beam_of_one(reverser):
    model, x, y, _ = reverser
    source = x["encoder_token_ids"][:8]
    greedy = model.translate_ids(source)
    np.testing.assert_array_equal(greedy, model.translate_ids_uncached(source))
    np.testing.assert_array_equal(greedy, model.translate_ids(source, sampler="beam", num_beams=1))
    beams = model.translate_ids(source, sampler="beam", num_beams=4)
    assert beams.shape[0] == 8 and beams.dtype == np.int32
    # On a task it has learned, beam search finds the training targets about as often as greedy does.
    assert _exact(beams, y[:8]) >= _exact(greedy, y[:8]) - 1


def test_no_recompilation_between_calls_of_the_same_shapes(reverser):
    model, x, _, _ = reverser
    source = x["encoder_token_ids"][:8]
    started = time.perf_counter()
    model.translate_ids(source)
    first = time.perf_counter() - started
    model.translate_ids(source, sampler="beam", num_beams=4)
    traced = trace_count(model)
    # Other ids, start/end tokens and length penalties are data of the same programs: no new trace...
    model.translate_ids(x["encoder_token_ids"][8:16])
    started = time.perf_counter()
    model.translate_ids(source[::-1], start_id=3, end_id=2)
    later = time.perf_counter() - started
    model.translate_ids(source + 1, sampler="beam", num_beams=4, length_penalty=0.0, end_id=5)
    assert trace_count(model) == traced
    if first > 1.0:  # ...and no XLA compilation either: a compiled call takes milliseconds, a compilation seconds
        assert later < 0.25 * first, (first, later)


def test_translate_ids_one_source_and_stop(reverser):
    model, x, _, _ = reverser
    source = x["encoder_token_ids"]
    batch = model.translate_ids(source[:8])
    one = model.translate_ids(source[0])  # one source in, one row out
    assert one.ndim == 1 and one.dtype == np.int32
    np.testing.assert_array_equal(one, batch[0, : len(one)])
    # Decoding ends right after the end token: name the second token generated, and it is the last.
    end = int(one[1])
    stopped = model.translate_ids(source[0], end_id=end)
    np.testing.assert_array_equal(stopped, one[: list(one).index(end) + 1])
    # In a batch, a row that has ended is padded with 0 until all have.
    both = model.translate_ids(source[:8], end_id=end)
    assert np.all(both[0, list(both[0]).index(end) + 1 :] == 0)
    # A padded source translates as the unpadded one does.
    length = int(np.sum(source[1] != 0))
    assert length < source.shape[1]
    unpadded = model.translate_ids_uncached(source[1, :length])
    np.testing.assert_array_equal(unpadded, batch[1, : len(unpadded)])


def test_logits_shape_and_tied_output():
    model = Seq2SeqTransformer(**CONFIG)
    logits = _np(model(X))
    assert logits.shape == (2, 9, 24)
    assert not any("output" in w.path.split("/")[0] for w in model.weights)
    untied = Seq2SeqTransformer(**{**CONFIG, "tie_embeddings": False})
    assert _np(untied(X)).shape == (2, 9, 24)
    assert untied.count_params() == model.count_params() + 16 * 24 + 24


def test_encoder_is_bidirectional_and_decoder_is_causal():
    model = Seq2SeqTransformer(**CONFIG)
    # Changing the last source token changes the encoder output at the first position: it reads both ways.
    changed = SOURCE.copy()
    changed[:, -1] = (changed[:, -1] + 1 - 4) % 16 + 4
    assert not np.allclose(_np(model.encode(changed))[:, 0], _np(model.encode(SOURCE))[:, 0], atol=1e-4)
    # Changing decoder tokens from position 5 on changes no logits before position 5: it reads only the past.
    later = DECODER.copy()
    later[:, 5:] = (later[:, 5:] + 1 - 4) % 20 + 4
    before, after = _np(model(X)), _np(model({**X, "decoder_token_ids": later}))
    np.testing.assert_allclose(after[:, :5], before[:, :5], atol=1e-5)
    assert not np.allclose(after[:, 5:], before[:, 5:], atol=1e-4)
    # ...and every decoder position reads the source (cross-attention).
    assert not np.allclose(_np(model({**X, "encoder_token_ids": changed}))[:, 0], before[:, 0], atol=1e-4)


def test_source_padding_changes_nothing():
    model = Seq2SeqTransformer(**CONFIG)
    short = SOURCE[:, :5]
    padded = np.concatenate([short, np.zeros((2, 4), "int32")], axis=1)
    np.testing.assert_allclose(
        _np(model({**X, "encoder_token_ids": padded})), _np(model({**X, "encoder_token_ids": short})), atol=1e-5
    )
    # Uneven lengths in one batch: the padded row gives what it gives alone.
    mixed = np.concatenate([SOURCE[:1], padded[1:, :7]], axis=0)
    alone = _np(model({"encoder_token_ids": short[1:], "decoder_token_ids": DECODER[1:]}))
    np.testing.assert_allclose(_np(model({**X, "encoder_token_ids": mixed}))[1:], alone, atol=1e-5)


def test_call_with_cache_equals_full_pass():
    model = Seq2SeqTransformer(**{**CONFIG, "num_layers": 2})
    full = _np(model(X))
    memory = model.encode(SOURCE)
    cross = model.cross_attention_cache(memory)
    assert tuple(cross.shape) == (2, 2, 2, 7, 2, 8)  # (B, layers, keys/values, S, heads, head_dim)
    # The decoding cache carries the encoder state: the memory, the source padding mask, the cross-attention keys
    # and values (computed once), and the self-attention cache that each step writes into.
    cache = model.decoding_cache(SOURCE, 9)
    np.testing.assert_allclose(_np(cache["cross_attention"]), _np(cross), atol=1e-6)
    np.testing.assert_array_equal(_np(cache["padding_mask"]), SOURCE != 0)
    assert tuple(cache["self_attention"].shape) == tuple(model.initial_cache(2, 9).shape)
    steps = []
    for t in range(9):
        logits, hidden, cache = model.call_with_cache(DECODER[:, t : t + 1], cache, t)
        steps.append(_np(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert tuple(hidden.shape) == (2, 1, 16)


def test_config_round_trip_and_save_load():
    model = Seq2SeqTransformer(**{**CONFIG, "dropout": 0.1, "tie_embeddings": False}, name="tiny_transformer")
    config = model.get_config()
    clone = Seq2SeqTransformer.from_config(config)
    assert clone.get_config() == config and clone.count_params() == model.count_params()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(again, Seq2SeqTransformer) and again.get_config() == config
    model.compile(optimizer="adam", loss=MaskedCrossentropy(label_smoothing=0.1), metrics=[masked_accuracy])
    reloaded = _reload(model)
    assert isinstance(reloaded, Seq2SeqTransformer)
    np.testing.assert_allclose(_np(reloaded(X)), _np(model(X)), atol=1e-6)
    assert reloaded.loss.label_smoothing == 0.1


def test_masked_crossentropy_ignores_padding():
    logits = RNG.normal(size=(2, 4, 6)).astype("float32")
    labels = np.array([[4, 5, 3, 0], [5, 3, 0, 0]], "int32")
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    np.testing.assert_allclose(float(MaskedCrossentropy()(labels, logits)), float(reference(labels, logits)), rtol=1e-5)
    # The mean over the 5 real tokens, whatever the logits at padding.
    changed = logits.copy()
    changed[labels == 0] = 50.0
    expected = float(reference(labels, logits))
    np.testing.assert_allclose(float(MaskedCrossentropy()(labels, changed)), expected, rtol=1e-5)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = labels != 0
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    smoothed = 0.9 * nll - 0.1 * log_probs.mean(-1)
    np.testing.assert_allclose(float(MaskedCrossentropy(0.1)(labels, logits)), smoothed[real].mean(), rtol=1e-5)
    accuracy = float(masked_accuracy(labels, logits))
    np.testing.assert_allclose(accuracy, (logits.argmax(-1) == labels)[real].mean(), rtol=1e-6)


def test_mixed_bfloat16_forward():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = Seq2SeqTransformer(**{**CONFIG, "num_layers": 1})
    logits = model(X)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
    assert np.all(np.isfinite(_np(keras.ops.cast(logits, "float32"))))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(source_ids=np.ones((1, 11), "int32")), "max_source_length=10"),
        (dict(source_ids=np.zeros((1, 3), "int32")), "not padding"),
        (dict(source_ids=[[1.5, 2.0]]), "integer token ids"),
        (dict(source_ids=[[4, 5], [6]]), "integer token ids"),
        (dict(source_ids=SOURCE, max_length=13), "max_target_length=12"),
        (dict(source_ids=SOURCE, sampler="top_k"), "Unknown sampler"),
        (dict(source_ids=SOURCE, sampler="beam", num_beams=0), "num_beams"),
    ],
)
def test_user_errors_are_value_errors(kwargs, message):
    model = Seq2SeqTransformer(**CONFIG)
    with pytest.raises(ValueError, match=message):
        model.translate_ids(**kwargs)


def test_bad_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="num_heads=3 must divide hidden_dim=16"):
        Seq2SeqTransformer(**{**CONFIG, "num_heads": 3})


JAX_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
from keras_tx.generation import trace_count
from keras_tx.models.seq2seq import Seq2SeqTransformer

config, source = json.loads(sys.argv[2]), np.array(json.loads(sys.argv[3]), "int32")
model = Seq2SeqTransformer(**config)
model.set_weights(list(np.load(sys.argv[1]).values()))
result = {"greedy": model.translate_ids(source).tolist(),
          "beam": model.translate_ids(source, sampler="beam", num_beams=4).tolist()}
traced = trace_count(model)
model.translate_ids(source[::-1])
assert trace_count(model) == traced, "recompiled"
assert "tensorflow" not in sys.modules, "keras_tx.models.seq2seq imported tensorflow under JAX"
print("RESULT", json.dumps(result))
"""


def test_translate_ids_under_jax_agrees_with_tensorflow(reverser, tmp_path):
    """The GPU machines run JAX: jax.jit compiles the same loops, and they give TensorFlow's tokens."""
    pytest.importorskip("jax")
    model, x, _, _ = reverser
    source = x["encoder_token_ids"][:8]
    np.savez(tmp_path / "weights.npz", *model.get_weights())
    config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "weights.npz"), json.dumps(config),
         json.dumps(source.tolist())],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    tokens = json.loads(lines[0][len("RESULT ") :])
    np.testing.assert_array_equal(tokens["greedy"], model.translate_ids(source))
    np.testing.assert_array_equal(tokens["beam"], model.translate_ids(source, sampler="beam", num_beams=4))
