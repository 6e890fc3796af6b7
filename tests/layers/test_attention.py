import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tx.layers import MultiHeadAttention, SelfAttention, masked_softmax, scaled_dot_product_attention
from tests.battery import run_layer_battery

RNG = np.random.default_rng(0)
Q = RNG.normal(size=(2, 5, 8)).astype("float32")
V = RNG.normal(size=(2, 7, 6)).astype("float32")
PADDING = np.array([[1] * 7, [1, 1, 1, 1, 0, 0, 0]], bool)  # second sequence: 3 padded keys


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_scaled_dot_product_attention_matches_numpy():
    q, k, v = RNG.normal(size=(3, 4, 16)), RNG.normal(size=(3, 6, 16)), RNG.normal(size=(3, 6, 5))
    mask = RNG.random((3, 4, 6)) > 0.3
    mask[..., 0] = True
    out, weights = scaled_dot_product_attention(q.astype("float32"), k.astype("float32"), v.astype("float32"), mask)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(16)
    scores = np.where(mask, scores, -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(_np(weights), expected, atol=1e-6)
    np.testing.assert_allclose(_np(out), expected @ v, atol=1e-5)


def test_attention_weights_are_distributions_with_masked_entries_zero():
    mask = np.tril(np.ones((5, 5), bool))[None]
    _, weights = scaled_dot_product_attention(Q, Q, Q, mask)
    weights = _np(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[:, ~mask[0]] == 0)
    assert np.all(weights >= 0)


def _entropy(weights):
    return float(-(weights * np.log(weights + 1e-12)).sum(-1).mean())


def test_without_the_scale_the_softmax_saturates_as_dk_grows():
    scaled, unscaled = [], []
    for d_k in (4, 64, 1024):
        q, k = (RNG.normal(size=(8, 32, d_k)).astype("float32") for _ in range(2))
        scaled.append(_entropy(_np(scaled_dot_product_attention(q, k, k)[1])))
        unscaled.append(_entropy(_np(scaled_dot_product_attention(q, k, k, scale=1.0)[1])))
    uniform = np.log(32)
    # Unit-variance scores: entropy stays near the same level whatever d_k (measured ~2.9-3.0 of 3.47).
    assert max(scaled) - min(scaled) < 0.15 * uniform, scaled
    # Unscaled scores have variance d_k: the softmax becomes nearly one-hot (measured ~0.1 at d_k=1024).
    assert unscaled[0] > unscaled[1] > unscaled[2], unscaled
    assert unscaled[2] < 0.1 * uniform, unscaled


def test_saturated_softmax_has_vanishing_gradient():
    q, k = (RNG.normal(size=(8, 32, 1024)).astype("float32") for _ in range(2))
    upstream = tf.constant(RNG.normal(size=(8, 32, 32)).astype("float32"))
    norms = []
    for scale in (1 / np.sqrt(1024), 1.0):
        logits = tf.constant(q @ k.transpose(0, 2, 1) * scale)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_sum(masked_softmax(logits) * upstream)
        norms.append(float(np.median(tf.norm(tape.gradient(loss, logits), axis=-1))))  # per query row
    # The softmax Jacobian diag(p) - p p^T is ~0 when p is one-hot: little signal reaches Q and K.
    assert norms[1] < 0.1 * norms[0], norms


def test_masked_softmax_fully_masked_row_is_uniform_not_nan():
    weights = _np(masked_softmax(np.zeros((1, 2, 3), "float32"), np.array([[[1, 0, 0], [0, 0, 0]]], bool)))
    np.testing.assert_allclose(weights[0, 1], [1 / 3] * 3, atol=1e-6)


def test_self_attention_battery():
    run_layer_battery(SelfAttention, {"units": 6, "use_causal_mask": True}, Q, expected_output_shape=(2, 5, 6))


def test_self_attention_is_permutation_equivariant():
    layer = SelfAttention(6)
    perm = RNG.permutation(5)
    out, shuffled = _np(layer(Q)), _np(layer(Q[:, perm]))
    np.testing.assert_allclose(shuffled, out[:, perm], atol=1e-5)


def test_self_attention_causal_mask():
    layer = SelfAttention(6, use_causal_mask=True)
    changed = Q.copy()
    changed[:, 3:] = RNG.normal(size=(2, 2, 8))
    np.testing.assert_allclose(_np(layer(changed))[:, :3], _np(layer(Q))[:, :3], atol=1e-6)
    assert not np.allclose(_np(layer(changed))[:, 3:], _np(layer(Q))[:, 3:])


def test_self_attention_padding_mask():
    layer = SelfAttention(6)
    mask = np.array([[1] * 5, [1, 1, 1, 0, 0]], bool)
    changed = Q.copy()
    changed[1, 3:] = 100.0
    np.testing.assert_allclose(_np(layer(changed, mask=mask))[1, :3], _np(layer(Q, mask=mask))[1, :3], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{"num_heads": 2, "key_dim": 4}, {"num_heads": 3, "key_dim": 4, "value_dim": 2, "output_shape": 5,
                                       "use_bias": False}],
)
def test_mha_battery(kwargs):
    run_layer_battery(MultiHeadAttention, kwargs, {"query": Q, "value": V}, call_kwargs={"use_causal_mask": True})


def _keras_pair(**kwargs):
    theirs = keras.layers.MultiHeadAttention(**kwargs)
    theirs(Q, V)
    ours = MultiHeadAttention(**kwargs)
    ours(Q, V)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"use_causal_mask": True},
        {"attention_mask": RNG.random((2, 5, 7)) > 0.4},
        {"value_mask": PADDING},
        {"value_mask": PADDING, "query_mask": np.array([[1] * 5, [1, 1, 0, 0, 0]], bool), "use_causal_mask": True},
    ],
    ids=["plain", "causal", "attention_mask", "padding", "all_masks"],
)
@pytest.mark.parametrize("scores", [False, True])
def test_mha_equals_keras(call_kwargs, scores):
    ours, theirs = _keras_pair(num_heads=3, key_dim=4, value_dim=5, output_shape=7)
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in theirs.weights]
    expected = theirs(Q, V, return_attention_scores=True, **call_kwargs)
    got = ours(Q, V, return_attention_scores=scores, **call_kwargs)
    # Keras reads the query mask only from a Keras mask on `query` and ignores an explicit `query_mask`; we honour
    # it. Rows of masked (padding) queries therefore differ, and only they: compare the real query positions.
    rows = call_kwargs.get("query_mask", np.ones((2, 5), bool))
    if scores:
        np.testing.assert_allclose(_np(got[1]).transpose(0, 2, 1, 3)[rows], _np(expected[1]).transpose(0, 2, 1, 3)[rows],
                                   atol=1e-5)
        got = got[0]
    np.testing.assert_allclose(_np(got)[rows], _np(expected[0])[rows], atol=1e-5)


def test_mha_keras_masks_propagate_like_keras():
    ids = np.array([[3, 4, 5, 6, 7], [3, 4, 5, 0, 0]])
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    x = embedding(ids)
    theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    theirs(x, x)
    ours = MultiHeadAttention(num_heads=2, key_dim=4)
    ours(x, x)
    ours.set_weights(theirs.get_weights())
    theirs_out = theirs(x, x)
    ours_out = ours(x, x)
    np.testing.assert_allclose(_np(ours_out), _np(theirs_out), atol=1e-5)


def test_mha_padded_keys_change_nothing():
    ours, _ = _keras_pair(num_heads=2, key_dim=4)
    changed = V.copy()
    changed[1, 4:] = RNG.normal(size=(3, 6)) * 10
    np.testing.assert_allclose(
        _np(ours(Q, changed, value_mask=PADDING)), _np(ours(Q, V, value_mask=PADDING)), atol=1e-5
    )


def test_mha_causal_mask_hides_the_future():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    changed = Q.copy()
    changed[:, 2:] = RNG.normal(size=(2, 3, 8))
    base, new = _np(layer(Q, Q, use_causal_mask=True)), _np(layer(changed, changed, use_causal_mask=True))
    np.testing.assert_allclose(new[:, :2], base[:, :2], atol=1e-6)
    assert not np.allclose(new[:, 2:], base[:, 2:])


def test_mha_cached_decoding_equals_the_full_causal_pass():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = RNG.normal(size=(2, 9, 8)).astype("float32")
    full = _np(layer(x, x, use_causal_mask=True))
    cache = np.zeros((2, 2, 9, 2, 4), "float32")
    # Prefill the first 4 positions at once, then decode one position at a time.
    out, cache = layer(x[:, :4], x[:, :4], use_causal_mask=True, cache=cache, cache_update_index=0)
    steps = [_np(out)]
    for t in range(4, 9):
        out, cache = layer(x[:, t:t + 1], x[:, t:t + 1], use_causal_mask=True, cache=cache, cache_update_index=t)
        steps.append(_np(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # The cache holds exactly the keys and values of the whole sequence.
    np.testing.assert_allclose(_np(cache)[:, 0], _np(layer.key_dense(x)), atol=1e-5)


def test_mha_reuses_a_filled_cache_for_cross_attention():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    empty = np.zeros((2, 2, 7, 2, 4), "float32")
    first, cache = layer(Q, V, cache=empty, cache_update_index=0)
    again, same_cache = layer(Q, V * 0, cache=cache)  # value ignored: keys/values come from the cache
    np.testing.assert_allclose(_np(again), _np(first), atol=1e-6)
    np.testing.assert_allclose(_np(first), _np(layer(Q, V)), atol=1e-5)
    np.testing.assert_array_equal(_np(same_cache), _np(cache))


def test_mha_dropout_is_active_only_in_training():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=3)
    a, b = _np(layer(Q, V)), _np(layer(Q, V, training=False))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(_np(layer(Q, V, training=True)), a)


def test_mha_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(num_heads=0, key_dim=4)
    with pytest.raises(ValueError, match="cache_update_index"):
        MultiHeadAttention(num_heads=1, key_dim=4)(Q, V, cache_update_index=0)
    with pytest.raises(ValueError, match="batch, length, features"):
        MultiHeadAttention(num_heads=1, key_dim=4)(Q[0], V[0])
