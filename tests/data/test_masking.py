"""The NumPy masked-LM data: BERT's 15% / 80-10-10 rule over >= 100k tokens, specials untouched, seeded; packing
several texts into a sequence, the texts that are parts of others left out."""

import numpy as np
import pytest

from keras_tx.data.masking import distinct_rows, mask_token_ids, pack_rows

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


def test_distinct_rows_drops_parts_of_other_rows_and_repeats():
    rows = [[5, 6], [4, 5, 6, 7], [8], [4, 5, 6, 7], [12, 3], [1, 23], [], [6, 7, 9]]
    kept = [row.tolist() for row in distinct_rows(rows)]
    # [5, 6] is inside [4, 5, 6, 7], which is kept once; [6, 7, 9] only overlaps it; ids stay whole ("1 23" is not
    # inside "12 3"); an empty row has nothing to keep.
    assert kept == [[4, 5, 6, 7], [6, 7, 9], [12, 3], [1, 23], [8]]


def test_distinct_rows_beyond_the_fold():
    rng = np.random.default_rng(0)
    rows = [rng.integers(10, 10_000, size=8) for _ in range(1200)]  # more than the 500 kept apart before folding
    parts = [row[2:5] for row in rows[::7]]
    kept = distinct_rows(rows + parts + rows[:300])
    assert sorted(map(tuple, kept)) == sorted(set(map(tuple, rows)))


def test_pack_rows_places_every_row_once_whole_and_fills_each_sequence():
    rng = np.random.default_rng(1)
    rows = [rng.integers(5, 100, size=rng.integers(1, 12)).tolist() for _ in range(300)] + [list(range(5, 45))]
    packed = pack_rows(rows, 16, SPECIAL, np.random.default_rng(2))
    assert packed.shape[1] == 16 and packed.dtype == np.int32
    assert (packed[:, 0] == SPECIAL["[CLS]"]).all()
    found = []
    for sequence in packed:
        content = sequence[sequence != SPECIAL["[PAD]"]]
        assert content[-1] == SPECIAL["[SEP]"] and (sequence[len(content):] == SPECIAL["[PAD]"]).all()
        pieces = np.split(content[1:], np.flatnonzero(content[1:] == SPECIAL["[SEP]"]) + 1)[:-1]
        found.append([piece[:-1].tolist() for piece in pieces])
    flat = [piece for sequence in found for piece in sequence]
    expected = [row[:14] for row in rows]  # the 40-token row is cut to length - 2
    assert sorted(flat) == sorted(expected)
    for sequence, following in zip(packed, found[1:]):  # the next sequence's first row did not fit
        assert (sequence != SPECIAL["[PAD]"]).sum() + len(following[0]) + 1 > 16
    again = pack_rows(rows, 16, SPECIAL, np.random.default_rng(2))
    other = pack_rows(rows, 16, SPECIAL, np.random.default_rng(3))
    np.testing.assert_array_equal(packed, again)
    assert packed.shape != other.shape or not np.array_equal(packed, other)
    with pytest.raises(ValueError, match="length 2"):
        pack_rows(rows, 2, SPECIAL, rng)
