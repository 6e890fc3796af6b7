"""Corpus BLEU against values computed by hand."""

import math

import pytest

from keras_tx.bleu import corpus_bleu, corpus_bleu_details, tokenize_13a


def test_identical_corpus_scores_100():
    corpus = ["A man rides a bike.", "Two dogs play in the snow, happily."]
    assert corpus_bleu(corpus, corpus) == pytest.approx(100.0)
    assert corpus_bleu(corpus, [[r, "something else entirely"] for r in corpus]) == pytest.approx(100.0)


def test_hand_computed_sentence():
    # hyp: the cat is on the mat / ref: the cat sat on the mat
    # 1-grams 5/6 (the x2, cat, on, mat), 2-grams 3/5 (the cat, on the, the mat), 3-grams 1/4 (on the mat), 4-grams 0/3
    details = corpus_bleu_details(["the cat is on the mat"], ["the cat sat on the mat"], smooth="none")
    assert details.precisions == pytest.approx((500 / 6, 60.0, 25.0, 0.0))
    assert details.score == 0.0  # Papineni: one order without a match gives 0
    # sacrebleu's "exp" smoothing counts the first empty order as 1 / (2 * 3).
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert corpus_bleu(["the cat is on the mat"], ["the cat sat on the mat"]) == pytest.approx(expected)
    assert expected == pytest.approx(37.9918, abs=1e-4)


def test_brevity_penalty():
    details = corpus_bleu_details(["the cat sat on the"], ["the cat sat on the mat"])
    assert details.precisions == pytest.approx((100.0,) * 4)
    assert details.brevity_penalty == pytest.approx(math.exp(1 - 6 / 5))
    assert details.score == pytest.approx(100 * math.exp(-0.2))
    # Longer than the reference: no penalty (precision pays for it instead).
    assert corpus_bleu_details(["the cat sat on the mat today"], ["the cat sat on the mat"]).brevity_penalty == 1.0


def test_counts_are_clipped_and_the_closest_reference_length_is_used():
    # Papineni's example: "the" x7 against two references; "the" occurs at most twice in one reference.
    details = corpus_bleu_details(
        ["the the the the the the the"], [["the cat is on the mat", "there is a cat on the mat"]], smooth="none"
    )
    assert details.precisions[0] == pytest.approx(100 * 2 / 7)
    assert details.reference_length == 7  # the 7-token reference is closer to 7 than the 6-token one
    tie = corpus_bleu_details(["a b c d e"], [["a b c d", "a b c d e f"]])
    assert tie.reference_length == 4  # equally close: the shorter


def test_corpus_bleu_pools_counts_rather_than_averaging_sentences():
    hypotheses = ["the cat sat on the mat", "a dog"]
    references = ["the cat sat on the mat", "a dog ran"]
    details = corpus_bleu_details(hypotheses, references)
    # 1-grams 8/8, 2-grams 6/6, 3-grams 4/4, 4-grams 3/3; lengths 8 vs 9.
    assert details.precisions == pytest.approx((100.0,) * 4)
    assert (details.hypothesis_length, details.reference_length) == (8, 9)
    assert details.score == pytest.approx(100 * math.exp(1 - 9 / 8))


def test_13a_tokenization_and_lowercase():
    assert tokenize_13a("A man's hat, costing $3.50, is well-known.") == [
        "A", "man's", "hat", ",", "costing", "$", "3.50", ",", "is", "well-known", ".",
    ]  # fmt: skip
    assert tokenize_13a("&quot;Hi&quot; (x)") == ['"', "Hi", '"', "(", "x", ")"]
    # Punctuation is split off, so "mat." matches "mat ."; case matters unless lowercase=True.
    assert corpus_bleu(["The cat sat on the mat."], ["the cat sat on the mat ."]) < 100
    assert corpus_bleu(["The cat sat on the mat."], ["the cat sat on the mat ."], lowercase=True) == 100


def test_errors():
    with pytest.raises(ValueError, match="one reference"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu(["a"], ["a"], smooth="add-one")
    assert corpus_bleu([""], ["a cat"]) == 0.0
