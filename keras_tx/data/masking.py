"""BERT's masked-LM masking in NumPy: no TensorFlow, so it runs where only JAX is installed (benchmarks on a GPU
host), and reproducible from a seeded generator (keras-hub's tf.data masker draws from unseeded TF state)."""

import math

import numpy as np


def mask_token_ids(token_ids, special_ids, vocabulary_size, rng, mask_rate=0.15, max_predictions=None,
                   mask_token_rate=0.8, random_token_rate=0.1):
    """BERT's masking in NumPy, reproducible from `rng` (the tf.data masker draws from unseeded TF state).

    Per sequence, ceil(mask_rate * n) of its n ordinary tokens (never [PAD], [CLS], [SEP]) are selected, at most
    `max_predictions`; of those `mask_token_rate` become [MASK], `random_token_rate` a random ordinary token, and
    the rest stay unchanged.

    Args:
        token_ids: (B, T) ids, [CLS] ... [SEP] [PAD]... as `encode_texts` gives them.
        special_ids: {token: id} of the reserved tokens ([PAD], [CLS], [SEP] and [MASK] at least); random
            replacements are never one of them.
        vocabulary_size: ids are in [0, vocabulary_size).
        rng: a `numpy.random.Generator`.
        max_predictions: positions per sequence; defaults to ceil(mask_rate * (T - 2)).

    Returns:
        (masked ids (B, T), mask positions (B, P), labels (B, P), weights (B, P) float32: 1 = a real
        prediction, 0 = padding of the positions).
    """
    ids = np.asarray(token_ids)
    batch, length = ids.shape
    if max_predictions is None:
        max_predictions = max(1, math.ceil(mask_rate * (length - 2)))
    selectable = ~np.isin(ids, [special_ids["[PAD]"], special_ids["[CLS]"], special_ids["[SEP]"]])
    scores = np.where(selectable, rng.random(ids.shape), -1.0)
    order = np.argsort(-scores, axis=1)[:, :max_predictions]  # the selectable positions first, in random order
    counts = np.minimum(np.ceil(mask_rate * selectable.sum(1)).astype(int), max_predictions)
    weights = (np.arange(max_predictions)[None, :] < counts[:, None]).astype("float32")
    positions = np.where(weights > 0, order, 0)
    rows = np.arange(batch)[:, None]
    labels = np.where(weights > 0, ids[rows, positions], 0)
    draw = rng.random(positions.shape)
    ordinary = np.setdiff1d(np.arange(vocabulary_size), list(special_ids.values()))
    random_tokens = ordinary[rng.integers(0, len(ordinary), size=positions.shape)]
    replacement = np.where(draw < mask_token_rate, special_ids["[MASK]"],
                           np.where(draw < mask_token_rate + random_token_rate, random_tokens, labels))
    masked = ids.copy()
    chosen = weights > 0
    masked[rows.repeat(max_predictions, 1)[chosen], positions[chosen]] = replacement[chosen]
    return masked, positions.astype("int32"), labels.astype("int32"), weights
