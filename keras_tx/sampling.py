"""Samplers: how a decoding step turns next-token logits into a token, and where its randomness comes from.

Samplers (`sampler=`):
    "greedy"   the most likely token.
    "random"   a draw from softmax(logits / temperature).
    "top_k"    a draw among the `top_k` most likely tokens.
    "top_p"    a draw from the smallest set of most likely tokens whose probability adds up to `top_p`
               (nucleus sampling).
    "beam"     beam search (`keras_tx.generation.beam_loop`).

The three random samplers are one computation, softmax(filter(logits / temperature)), whose settings
(temperature, top_k, top_p) are numbers, not code: a compiled decoding loop takes them as data.

Randomness is counter-based: the uniform number of sequence `row` at decoding step `step` is a fixed integer
hash of (seed, step, row) (`uniforms`), written in `keras.ops`. It needs no random state, so it is computed
inside the compiled loop, on every backend, and the exported TensorFlow graph computes the very same numbers:
a seed gives the same tokens compiled or not, under TensorFlow or JAX, in Python or in the SavedModel. A draw
maps its number u in (0, 1] to a token by inverting the cumulative distribution.
"""

import numpy as np
from keras import ops

from keras_tx import validation

SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")
DEFAULT_TOP_K = 10
DEFAULT_TOP_P = 0.9
DEFAULT_NUM_BEAMS = 4


# ------------------------------------------------------------------------------------------- randomness


def _uint32(value):
    return ops.convert_to_tensor(np.uint32(value))


def _mix(x):
    """A bijection of uint32 with full avalanche (the "lowbias32" mixer: xor-shift, multiply, three times)."""
    x = ops.bitwise_xor(x, ops.right_shift(x, _uint32(16)))
    x = ops.multiply(x, _uint32(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, _uint32(15)))
    x = ops.multiply(x, _uint32(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, _uint32(16)))


def seed_words(seed):
    """A seed (an int from 0 to 2**63 - 1, or an int64 tensor in a TensorFlow graph) as (2,) uint32: its low
    and high 32 bits, the form `uniforms` takes. None draws a fresh seed.

    Example:
    >>> seed_words(2**32 + 5).tolist()
    [5, 1]
    """
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63))
    if isinstance(seed, (int, np.integer)):
        return np.array([int(seed) & 0xFFFFFFFF, int(seed) >> 32], "uint32")
    return ops.cast(ops.stack([ops.bitwise_and(seed, 0xFFFFFFFF), ops.right_shift(seed, 32)]), "uint32")


def uniforms(seed, step, batch):
    """The random numbers of decoding step `step`: (batch,) float32 in (0, 1], one per sequence (row).

    A pure function of (seed, step, row): an integer hash, exact on every backend and in graphs.

    Args:
        seed: (2,) uint32 from `seed_words`.
        step: the step's index, an int32 scalar (the number of tokens generated before it).
        batch: the number of rows.

    Example:
    >>> u = ops.convert_to_numpy(uniforms(seed_words(0), 3, 4))
    >>> u.shape, bool((u > 0).all() and (u <= 1).all())
    ((4,), True)
    """
    seed = ops.cast(seed, "uint32")
    rows = ops.cast(ops.arange(batch, dtype="int32"), "uint32")  # (TensorFlow has no uint32 range kernel)
    golden = _uint32(0x9E3779B9)
    h = _mix(ops.add(seed[0], golden))
    h = _mix(ops.add(ops.bitwise_xor(h, seed[1]), golden))
    h = _mix(ops.add(ops.bitwise_xor(h, ops.cast(step, "uint32")), golden))
    h = _mix(ops.add(ops.bitwise_xor(h, rows), golden))  # (batch,)
    # The top 24 bits, exact in float32; + 1 makes it (0, 1]: a zero would draw a token of probability 0.
    return (ops.cast(ops.right_shift(h, _uint32(8)), "float32") + 1.0) * (2.0**-24)


# --------------------------------------------------------------------------------------------- samplers


def filter_logits(logits, top_k=None, top_p=None):
    """Keep the `top_k` most likely tokens of each row, then the smallest set of those whose probability
    reaches `top_p` (the nucleus); set the other logits to -inf.

    The most likely token is always kept, so every row stays a distribution. `top_k` and `top_p` may be
    tensors: the compiled loop passes them as data, so changing them does not recompile.

    Args:
        logits: (B, V).
        top_k: tokens kept (None: all).
        top_p: probability mass kept, in (0, 1] (None: all).

    Example:
    >>> logits = ops.log(ops.convert_to_tensor([[0.2, 0.5, 0.3]]))
    >>> ops.convert_to_numpy(ops.isfinite(filter_logits(logits, top_k=2))).tolist()
    [[False, True, True]]
    >>> ops.convert_to_numpy(ops.isfinite(filter_logits(logits, top_p=0.7))).tolist()
    [[False, True, True]]
    """
    vocabulary_size = logits.shape[-1]
    sorted_logits = ops.top_k(logits, vocabulary_size)[0]  # (B, V), descending
    rank = ops.arange(vocabulary_size, dtype="int32")[None, :]  # (1, V)
    keep = ops.ones_like(sorted_logits, dtype="bool")
    if top_k is not None:
        keep = rank < ops.cast(top_k, "int32")
    if top_p is not None:
        probabilities = ops.softmax(ops.where(keep, sorted_logits, float("-inf")), axis=-1)
        mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
        keep = ops.logical_and(keep, mass_before < ops.cast(top_p, "float32"))
    # Both rules keep a prefix of the sorted row: the smallest logit kept is the threshold.
    kept = ops.maximum(ops.sum(ops.cast(keep, "int32"), axis=-1, keepdims=True), 1)  # (B, 1)
    threshold = ops.take_along_axis(sorted_logits, kept - 1, axis=-1)
    return ops.where(logits >= threshold, logits, float("-inf"))


def sample_from_probabilities(probabilities, uniform):
    """Draw one token per row: the first index whose cumulative probability reaches `uniform` (in (0, 1]).

    Inverting the cumulative distribution needs one random number per row (`uniforms`). Zero-probability
    tokens are never drawn.

    Example:
    >>> probabilities = ops.convert_to_tensor([[0.25, 0.0, 0.75]])
    >>> ops.convert_to_numpy(sample_from_probabilities(probabilities, ops.convert_to_tensor([0.5])))
    array([2], dtype=int32)
    """
    cumulative = ops.cumsum(ops.cast(probabilities, "float32"), axis=-1)  # (B, V)
    target = ops.cast(uniform, "float32")[:, None] * cumulative[:, -1:]  # (B, 1), scaled in case sum != 1
    token = ops.sum(ops.cast(cumulative < target, "int32"), axis=-1)
    return ops.minimum(token, probabilities.shape[-1] - 1)


def settings(sampler, temperature=1.0, top_k=None, top_p=None):
    """The settings of a random sampler, (temperature, top_k, top_p), as numbers that compiled loops take as data.

    A rule that is off keeps everything: k = 2**30 tokens, p = 2 (more than all the probability there is).
    `temperature` may be a tensor (the exported signature's); a temperature <= 0 picks the most likely token.

    Example:
    >>> [float(x) for x in settings("top_k", 0.5)]
    [0.5, 10.0, 2.0]
    """
    top_k = (DEFAULT_TOP_K if top_k is None else top_k) if sampler == "top_k" else 2**30
    top_p = (DEFAULT_TOP_P if top_p is None else top_p) if sampler == "top_p" else 2.0
    temperature = temperature if ops.is_tensor(temperature) else np.float32(temperature)
    return temperature, np.int32(top_k), np.float32(top_p)


def choose(logits, uniform, settings=None):
    """The next token (B,) int32 of `logits` (B, V): the most likely when `settings` is None (greedy, known when
    tracing), else a draw from softmax(filter(logits / temperature)) with settings = (temperature, top_k, top_p)
    from `settings(...)`, and the most likely token where the temperature is <= 0."""
    logits = ops.cast(logits, "float32")
    greedy = ops.cast(ops.argmax(logits, axis=-1), "int32")
    if settings is None:
        return greedy
    temperature, top_k, top_p = settings
    temperature = ops.cast(temperature, "float32")
    scaled = logits / ops.where(temperature > 0, temperature, 1.0)
    probabilities = ops.softmax(filter_logits(scaled, top_k, top_p), axis=-1)
    drawn = ops.cast(sample_from_probabilities(probabilities, uniform), "int32")
    return ops.where(temperature > 0, drawn, greedy)


def next_token(logits, uniform, sampler="greedy", temperature=1.0, top_k=None, top_p=None):
    """One token per row of `logits` (B, V) with one of the samplers "greedy", "random", "top_k", "top_p".

    Args:
        logits: (B, V) next-token logits.
        uniform: (B,) numbers in (0, 1], the randomness of this step (unused by "greedy").
        sampler: which rule picks the token.
        temperature: logits are divided by it before sampling (< 1 sharper, > 1 flatter).
        top_k, top_p: the parameters of the "top_k" and "top_p" samplers (ignored by the others).

    Returns:
        (B,) int32 token ids.

    Example:
    >>> logits = ops.convert_to_tensor([[0.0, 2.0, 1.0]])
    >>> int(next_token(logits, ops.ones((1,)), "greedy")[0])
    1
    """
    if sampler == "greedy":
        return choose(logits, uniform)
    if sampler not in ("random", "top_k", "top_p"):
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    return choose(logits, uniform, settings(sampler, temperature, top_k, top_p))


def check(sampler, temperature, top_k, top_p, num_beams, seed):
    """Validated (sampler, num_beams) (`keras_tx.validation`); temperature 0 makes a random sampler greedy."""
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    if validation.temperature(temperature, "`temperature`") == 0 and sampler != "beam":
        sampler = "greedy"
    if top_k is not None:
        validation.integer("`top_k`", top_k, 1)
    if top_p is not None:
        validation.number("`top_p`", top_p, 0.0, 1.0, low_open=True)
    num_beams = validation.integer("`num_beams`", DEFAULT_NUM_BEAMS if num_beams is None else num_beams, 1,
                                   validation.MAX_NUM_BEAMS)
    validation.seed(seed, "`seed`")
    return sampler, int(num_beams)
