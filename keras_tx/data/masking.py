"""BERT's masked-LM pretraining data in NumPy: packing texts into sequences, and masking. No TensorFlow, so it
runs where only JAX is installed (benchmarks on a GPU host), and reproducible from a seeded generator (keras-hub's
tf.data masker draws from unseeded TF state)."""

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


def distinct_rows(rows):
    """The token lists of `rows` that are not part of another row (contiguously), each once, longest first.

    SST-2's training rows are the phrases of the parse trees of its sentences, most of them parts of others ("is
    great" of "the acting is great"): of its 67,349 rows, 6,882 are part of no other (tokenized by saved_models/
    bert_mlm's 7,606 pieces). Packed together, a sequence holding a phrase and a part of it would let the model
    copy a masked token instead of predicting it.

    Args:
        rows: lists or 1-D arrays of token ids.

    Example:
    >>> [r.tolist() for r in distinct_rows([[5, 6], [4, 5, 6, 7], [8], [4, 5, 6, 7]])]
    [[4, 5, 6, 7], [8]]
    """
    rows = [np.asarray(row) for row in rows]
    kept, joined, recent, seen = [], "", [], set()
    for index in sorted(range(len(rows)), key=lambda i: -len(rows[i])):
        if not len(rows[index]):
            continue
        key = " " + " ".join(map(str, rows[index].tolist())) + " "  # spaces keep ids whole in the substring test
        if key in seen or key in joined or any(key in other for other in recent):
            continue
        kept.append(rows[index])
        seen.add(key)
        recent.append(key)
        if len(recent) == 500:  # fold the recent ones into one big string now and then: one search instead of 500
            joined, recent = joined + "".join(recent), []
    return kept


def pack_rows(rows, length, special_ids, rng):
    """`rows` in a random order packed into (N, length) sequences, RoBERTa's "full sentences":
    [CLS] a [SEP] b [SEP] ... [PAD]..., as many rows as fit, a row never split across sequences (one longer than
    `length - 2` tokens is cut).

    Args:
        rows: lists or 1-D arrays of token ids (without [CLS] or [SEP]).
        length: tokens per sequence.
        special_ids: {token: id} with [PAD], [CLS] and [SEP].
        rng: a `numpy.random.Generator`: the order of the rows.

    Example:
    >>> pack_rows([[7, 8], [9]], 6, {"[PAD]": 0, "[CLS]": 2, "[SEP]": 3}, np.random.default_rng(0)).tolist()
    [[2, 7, 8, 3, 9, 3]]
    """
    if length < 3:
        raise ValueError(f"A packed sequence needs room for [CLS], a token and [SEP]: length {length} is below 3.")
    cls_id, sep_id = special_ids["[CLS]"], special_ids["[SEP]"]
    sequences, current = [], [cls_id]
    for index in rng.permutation(len(rows)):
        row = list(np.asarray(rows[index])[: length - 2])
        if len(current) + len(row) + 1 > length:
            sequences.append(current)
            current = [cls_id]
        current += row + [sep_id]
    if len(current) > 1:
        sequences.append(current)
    packed = np.full((len(sequences), length), special_ids["[PAD]"], "int32")
    for number, sequence in enumerate(sequences):
        packed[number, : len(sequence)] = sequence
    return packed
