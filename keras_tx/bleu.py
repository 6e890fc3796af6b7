"""BLEU (Papineni et al., 2002): how many of a translation's n-grams appear in a reference, for n = 1..4.

Corpus BLEU pools the n-gram counts of all sentences before dividing (it is not the mean of sentence scores):

    p_n  = sum over sentences of clipped n-gram matches / sum of hypothesis n-grams
           (a hypothesis n-gram counts at most as often as it occurs in one reference: "the the the" cannot score
           by repetition)
    BP   = 1 if c > r else exp(1 - r / c), c = total hypothesis length, r = total reference length (per sentence,
           the reference length closest to the hypothesis's, the shorter on a tie)
    BLEU = 100 * BP * exp(mean_n log p_n)

The brevity penalty stands in for recall: without it, a one-word translation that is right scores 100.

Sentences are tokenized like mteval-v13a.pl, the default of sacrebleu (which is not installed here): punctuation
and symbols are split off, except a period or comma inside a number and a hyphen (so "well-known" and "man's" stay
one token). With `smooth="exp"` (sacrebleu's default) an n-gram order with no match counts as 1 / (2^k * total)
for the k-th such order instead of making the score 0; with `smooth="none"` the score is Papineni's (0 then).
Where no order has zero matches (any real test set), both give the same number, and it matches sacrebleu's
corpus BLEU with its defaults up to the tokenizer's handling of rare Unicode symbols.
"""

import collections
import math
import re
from typing import NamedTuple

_HTML_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # split off punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # a period or comma, unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... or before one
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a dash after a digit
)


def tokenize_13a(text):
    """Split `text` into tokens as mteval-v13a.pl does (sacrebleu's "13a").

    Example:
    >>> tokenize_13a("A man's hat, costing $3.50, is well-known.")
    ['A', "man's", 'hat', ',', 'costing', '$', '3.50', ',', 'is', 'well-known', '.']
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _HTML_ENTITIES:
        text = text.replace(entity, character)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def _ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class BLEUScore(NamedTuple):
    """Corpus BLEU and its parts: score and precisions in percent, lengths in tokens."""

    score: float
    precisions: tuple
    brevity_penalty: float
    hypothesis_length: int
    reference_length: int


def corpus_bleu_details(hypotheses, references, max_order=4, smooth="exp", lowercase=False):
    """Corpus BLEU with its n-gram precisions, brevity penalty and lengths: see `corpus_bleu`.

    Example:
    >>> details = corpus_bleu_details(["the cat sat on the"], ["the cat sat on the mat"])
    >>> round(details.brevity_penalty, 4)  # exp(1 - 6/5)
    0.8187
    """
    hypotheses = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    references = [references] if isinstance(references, str) else list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"Expected one reference (or list of references) per hypothesis, got {len(hypotheses)} "
                         f"hypotheses and {len(references)} references.")
    if not hypotheses:
        raise ValueError("Expected at least one hypothesis, got none.")
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}.")

    def tokens(text):
        if not isinstance(text, str):
            raise ValueError(f"Hypotheses and references must be strings, got {text!r}.")
        return tokenize_13a(text.lower() if lowercase else text)

    matches, totals = [0] * max_order, [0] * max_order
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"Hypothesis {hypothesis!r} has no reference.")
        hyp, refs = tokens(hypothesis), [tokens(r) for r in refs]
        hypothesis_length += len(hyp)
        # The reference length closest to the hypothesis's; the shorter one on a tie.
        reference_length += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_order + 1):
            counts = _ngrams(hyp, n)
            most = collections.Counter()  # the most times each n-gram occurs in any one reference
            for ref in refs:
                most |= _ngrams(ref, n)
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)

    precisions, halvings = [], 1.0
    for match, total in zip(matches, totals):
        if total == 0:
            precisions.append(0.0)
        elif match == 0 and smooth == "exp":
            halvings *= 2
            precisions.append(100.0 / (halvings * total))
        else:
            precisions.append(100.0 * match / total)
    if hypothesis_length == 0:
        brevity_penalty = 0.0
    elif hypothesis_length < reference_length:
        brevity_penalty = math.exp(1 - reference_length / hypothesis_length)
    else:
        brevity_penalty = 1.0
    if min(precisions) == 0:
        score = 0.0
    else:
        score = brevity_penalty * math.exp(sum(math.log(p / 100.0) for p in precisions) / max_order) * 100.0
    return BLEUScore(score, tuple(precisions), brevity_penalty, hypothesis_length, reference_length)


def corpus_bleu(hypotheses, references, max_order=4, smooth="exp", lowercase=False):
    """Corpus BLEU-4 in percent (0 to 100) of `hypotheses` against `references`.

    Args:
        hypotheses: a list of translations (strings).
        references: one reference string per hypothesis, or one list of reference strings per hypothesis.
        max_order: the longest n-gram (4: BLEU-4).
        smooth: "exp" (sacrebleu's default) or "none" (Papineni's: 0 when an order has no match).
        lowercase: compare case-insensitively (for a model whose tokenizer lowercases).

    Example:
    >>> corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
    100.0
    >>> round(corpus_bleu(["the cat is on the mat"], ["the cat sat on the mat"]), 2)
    37.99
    """
    return corpus_bleu_details(hypotheses, references, max_order, smooth, lowercase).score
