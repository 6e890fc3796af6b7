"""The NumPy masked-LM masker: BERT's 15% / 80-10-10 rule over >= 100k tokens, specials untouched, seeded."""

import numpy as np

from keras_tx.data.masking import mask_token_ids

SPECIAL = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def _sequences(count, length, rng):
    """[CLS] tokens [SEP] [PAD]... with lengths from 3 to `length`."""
    ids = rng.integers(5, 1000, size=(count, length)).astype("int32")
    ends = rng.integers(2, length, size=count)  # position of [SEP]
    ids[:, 0] = SPECIAL["[CLS]"]
    ids[np.arange(count), ends] = SPECIAL["[SEP]"]
    ids[np.arange(length)[None, :] > ends[:, None]] = SPECIAL["[PAD]"]
    return ids


def test_rates_over_100k_tokens_and_specials_never_selected():
    rng = np.random.default_rng(0)
    original = _sequences(10_500, 128, rng)
    masked, positions, labels, weights = mask_token_ids(original, SPECIAL, 1000, np.random.default_rng(1))
    assert positions.shape == (10_500, 19)  # ceil(0.15 * 126)
    selected = weights > 0
    rows = np.broadcast_to(np.arange(len(original))[:, None], positions.shape)[selected]
    columns = positions[selected]
    assert selected.sum() >= 100_000
    ordinary = ~np.isin(original, [0, 2, 3])
    np.testing.assert_array_equal(selected.sum(1), np.ceil(0.15 * ordinary.sum(1)))  # per sequence, rounded up
    assert ordinary[rows, columns].all()  # never [PAD], [CLS] or [SEP]
    assert len(set(zip(rows.tolist(), columns.tolist()))) == len(rows)  # no position twice
    np.testing.assert_array_equal(labels[selected], original[rows, columns])
    new = masked[rows, columns]
    rates = {"mask": np.mean(new == 4), "random": np.mean((new != 4) & (new != labels[selected])),
             "unchanged": np.mean(new == labels[selected])}
    for name, expected in (("mask", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        assert abs(rates[name] - expected) < 0.01, rates
    random_tokens = new[(new != 4) & (new != labels[selected])]
    assert random_tokens.min() >= 5 and random_tokens.max() < 1000  # never a reserved token
    untouched = np.ones_like(original, bool)
    untouched[rows, columns] = False
    np.testing.assert_array_equal(masked[untouched], original[untouched])
    assert not labels[~selected].any() and not weights[~selected].any()


def test_the_same_seed_gives_the_same_masks():
    original = _sequences(50, 32, np.random.default_rng(0))
    first = mask_token_ids(original, SPECIAL, 1000, np.random.default_rng(7), max_predictions=5)
    second = mask_token_ids(original, SPECIAL, 1000, np.random.default_rng(7), max_predictions=5)
    other = mask_token_ids(original, SPECIAL, 1000, np.random.default_rng(8), max_predictions=5)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])
    assert (first[3].sum(1) <= 5).all()  # capped at max_predictions
