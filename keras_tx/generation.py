"""Autoregressive decoding: the loop that turns a next-token model into a text generator, and its samplers.

A causal language model gives, for every position, a distribution over the next token. Generation feeds the
prompt once ("prefill"), picks a token from the last distribution, appends it, and repeats. Two things make
that fast:

- the key/value cache: each step runs the model on the one new token only, reusing the keys and values of
  all earlier positions (O(t) work per step instead of re-running the whole prefix, O(t^2));
- compilation: the whole loop (prefill, then a `while_loop` of single-token steps) is one XLA program,
  `tf.function(jit_compile=True)` under TensorFlow and `jax.jit` under JAX, traced once per model, program
  (greedy; the three random samplers; beam search with a number of beams), batch size, prompt length and
  max_new_tokens, and reused after that. Temperature, top_k, top_p, the stop token and the random numbers
  are arguments of the program, so changing them does not recompile (`trace_count` shows it). Other
  backends run the same loop uncompiled.

A model is decodable when it has

    model.call_with_cache(token_ids, cache, cache_update_index) -> (logits, hidden_states, cache)
    model.initial_cache(batch_size, length) -> an all-zero cache for `length` positions
    model.max_length -> the longest sequence it takes, or None (an RNN)

`keras_tx.models.GPT` and `keras_tx.models.RNNLanguageModel` have them.

Samplers (`sampler=`):
    "greedy"   the most likely token.
    "random"   a draw from softmax(logits / temperature).
    "top_k"    a draw among the `top_k` most likely tokens.
    "top_p"    a draw from the smallest set of most likely tokens whose probability adds up to `top_p`
               (nucleus sampling).
    "beam"     beam search: keep the `num_beams` sequences with the highest sum of log-probabilities and
               return the best. All beams have the same length, so the plain sum equals the length-normalised
               score; with `stop_token_id` a finished beam keeps its score and is extended by the stop token
               (the plain sum, which favours beams that finish early). Temperature is ignored.

Random draws use one uniform number per sequence and step, drawn with numpy from `seed` before the loop and
mapped to a token by inverting the cumulative distribution: the same seed gives the same tokens, on every
backend, compiled or not.
"""

import numpy as np

import keras
from keras import ops

from keras_tx import validation

SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")
DEFAULT_TOP_K = 10
DEFAULT_TOP_P = 0.9
DEFAULT_NUM_BEAMS = 4


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
    >>> logits = keras.ops.log(keras.ops.convert_to_tensor([[0.2, 0.5, 0.3]]))
    >>> keras.ops.convert_to_numpy(keras.ops.isfinite(filter_logits(logits, top_k=2))).tolist()
    [[False, True, True]]
    >>> keras.ops.convert_to_numpy(keras.ops.isfinite(filter_logits(logits, top_p=0.7))).tolist()
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

    Inverting the cumulative distribution needs one random number per row, so the randomness can be drawn
    up front (see the module docstring). Zero-probability tokens are never drawn.

    Example:
    >>> probabilities = keras.ops.convert_to_tensor([[0.25, 0.0, 0.75]])
    >>> keras.ops.convert_to_numpy(sample_from_probabilities(probabilities, keras.ops.convert_to_tensor([0.5])))
    array([2], dtype=int32)
    """
    cumulative = ops.cumsum(ops.cast(probabilities, "float32"), axis=-1)  # (B, V)
    target = ops.cast(uniform, "float32")[:, None] * cumulative[:, -1:]  # (B, 1), scaled in case sum != 1
    token = ops.sum(ops.cast(cumulative < target, "int32"), axis=-1)
    return ops.minimum(token, probabilities.shape[-1] - 1)


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
    >>> logits = keras.ops.convert_to_tensor([[0.0, 2.0, 1.0]])
    >>> int(next_token(logits, keras.ops.ones((1,)), "greedy")[0])
    1
    """
    if sampler == "greedy":
        return ops.cast(ops.argmax(ops.cast(logits, "float32"), axis=-1), "int32")
    if sampler not in ("random", "top_k", "top_p"):
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    return _sample(logits, uniform, *_settings(sampler, temperature, top_k, top_p))


def _sample(logits, uniform, temperature, top_k, top_p):
    """A draw from softmax(filter(logits / temperature)): "random", "top_k" and "top_p" are one program."""
    logits = filter_logits(ops.cast(logits, "float32") / ops.cast(temperature, "float32"), top_k, top_p)
    return ops.cast(sample_from_probabilities(ops.softmax(logits, axis=-1), uniform), "int32")


# ------------------------------------------------------------------------------------------- the loops


def _last_logits(logits):
    return ops.cast(logits[:, -1], "float32")  # (B, V): the prediction after the last position


def _choose(logits, uniform, greedy, settings):
    """The next token (B,): argmax, or a draw with settings = (temperature, top_k, top_p) as tensors."""
    if greedy:
        return next_token(logits, uniform, "greedy")
    return _sample(logits, uniform, *settings)


def _sampling_loop(model, prompt, uniforms, settings, stop_token_id, greedy, steps):
    """Prefill, then `steps` single-token steps. Returns (tokens (B, P + steps), steps actually run)."""
    batch, prompt_length = prompt.shape
    cache = model.initial_cache(batch, prompt_length + steps)
    logits, _, cache = model.call_with_cache(prompt, cache, 0)
    tokens = ops.concatenate([prompt, ops.zeros((batch, steps), "int32")], axis=1)  # (B, P + steps)

    def cond(index, tokens, cache, logits, done):
        return ops.logical_and(index < steps, ops.logical_not(ops.all(done)))

    def body(index, tokens, cache, logits, done):
        token = _choose(logits, ops.take(uniforms, index, axis=0), greedy, settings)  # (B,)
        token = ops.where(done, stop_token_id, token)  # finished sequences are padded with the stop token
        position = prompt_length + index
        tokens = ops.slice_update(tokens, [0, position], token[:, None])
        done = ops.logical_or(done, ops.equal(token, stop_token_id))
        # The last iteration runs one model step whose output is not used: it keeps the loop body uniform.
        logits, _, cache = model.call_with_cache(token[:, None], cache, position)
        return index + 1, tokens, cache, _last_logits(logits), done

    start = (ops.convert_to_tensor(0, "int32"), tokens, cache, _last_logits(logits), ops.zeros((batch,), "bool"))
    index, tokens, *_ = ops.while_loop(cond, body, start)
    return tokens, index


def _beam_loop(model, prompt, stop_token_id, num_beams, steps):
    """Beam search over `num_beams` beams per prompt. Returns (best tokens (B, P + steps), steps run)."""
    batch, prompt_length = prompt.shape
    cache = model.initial_cache(batch, prompt_length + steps)
    logits, _, cache = model.call_with_cache(prompt, cache, 0)
    # Every prompt becomes num_beams rows (B * K, ...), beam-major within a prompt.
    cache = ops.repeat(cache, num_beams, axis=0)
    log_probs = ops.repeat(ops.log_softmax(_last_logits(logits), axis=-1), num_beams, axis=0)  # (B*K, V)
    tokens = ops.repeat(ops.concatenate([prompt, ops.zeros((batch, steps), "int32")], axis=1), num_beams, axis=0)
    vocabulary_size = log_probs.shape[-1]
    # At the start the K beams are identical: only the first is live, or top-k would pick K copies.
    first_beam = np.where(np.arange(num_beams) == 0, 0.0, -np.inf).astype("float32")
    scores = ops.convert_to_tensor(np.tile(first_beam, batch))  # (B*K,)
    # A finished beam may only continue with the stop token, at no cost: its score stays fixed.
    after_stop = ops.where(ops.arange(vocabulary_size) == stop_token_id, 0.0, float("-inf"))  # (V,)
    row_offsets = ops.arange(batch, dtype="int32")[:, None] * num_beams  # (B, 1)

    def cond(index, tokens, cache, log_probs, scores, done):
        return ops.logical_and(index < steps, ops.logical_not(ops.all(done)))

    def body(index, tokens, cache, log_probs, scores, done):
        log_probs = ops.where(done[:, None], after_stop[None, :], log_probs)
        candidates = ops.reshape(scores[:, None] + log_probs, (batch, num_beams * vocabulary_size))  # (B, K*V)
        scores, choice = ops.top_k(candidates, num_beams)  # (B, K) each, best first
        source = ops.reshape(row_offsets + choice // vocabulary_size, (-1,))  # (B*K,): the beam each extends
        token = ops.cast(ops.reshape(choice % vocabulary_size, (-1, 1)), "int32")  # (B*K, 1)
        tokens, cache, done = (ops.take(t, source, axis=0) for t in (tokens, cache, done))
        position = prompt_length + index
        tokens = ops.slice_update(tokens, [0, position], token)
        done = ops.logical_or(done, ops.equal(token[:, 0], stop_token_id))
        logits, _, cache = model.call_with_cache(token, cache, position)
        log_probs = ops.log_softmax(_last_logits(logits), axis=-1)
        return index + 1, tokens, cache, log_probs, ops.reshape(scores, (-1,)), done

    done = ops.zeros((batch * num_beams,), "bool")
    start = (ops.convert_to_tensor(0, "int32"), tokens, cache, log_probs, scores, done)
    index, tokens, *_ = ops.while_loop(cond, body, start)
    best = ops.reshape(tokens, (batch, num_beams, -1))[:, 0]  # top_k sorts: beam 0 is the best
    return best, index


# ------------------------------------------------------------------------------------------ compilation


class _CompiledFunctions:
    """The compiled functions of one model, by configuration, and how often each was traced."""

    def __init__(self):
        self.functions = {}
        self.traces = 0


def _compiled(model, key, make):
    """The compiled function of `model` for `key`, made by `make()` the first time it is asked for."""
    store = getattr(model, "_keras_tx_generation", None)
    if store is None:
        store = _CompiledFunctions()
        # A plain object, not a list or dict, so that Keras neither tracks nor saves it.
        model._keras_tx_generation = store
    if key not in store.functions:
        fn = make()

        def counted(*args):
            store.traces += 1  # runs only while tracing: the compiled program does not run Python
            return fn(*args)

        store.functions[key] = _compile(model, counted)
    return store.functions[key]


def trace_count(model):
    """How many times generation functions of `model` have been traced (compiled); 0 if never.

    Example:
    >>> trace_count(keras.Sequential())
    0
    """
    store = getattr(model, "_keras_tx_generation", None)
    return 0 if store is None else store.traces


def _compile(model, fn):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # No autograph: the loops are explicit `ops.while_loop`s, and Python control flow here is static.
        return tf.function(fn, jit_compile=True, autograph=False)
    if backend == "jax":
        import jax

        # jax.jit needs pure functions: the weights go in as arguments (so that training between calls is
        # seen, not baked in as constants) and the model reads them through a StatelessScope.
        def pure(variable_values, *args):
            with keras.StatelessScope(state_mapping=list(zip(model.variables, variable_values))):
                return fn(*args)

        jitted = jax.jit(pure)
        return lambda *args: jitted([v.value for v in model.variables], *args)
    return fn


# ------------------------------------------------------------------------------------------- public API


def _check(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p, num_beams, seed=None):
    """Validated (prompt (B, P) int32, was_1d, num_beams, sampler) (`keras_tx.validation`); temperature 0 -> greedy."""
    try:
        prompt = np.asarray(token_ids)
    except ValueError:  # ragged nested lists
        prompt = np.asarray(token_ids, dtype=object)
    if prompt.dtype == object or not np.issubdtype(prompt.dtype, np.integer):
        raise ValueError(
            f"`token_ids` must be integer token ids: one prompt, or equal-length prompts; got {token_ids!r}."
        )
    was_1d = prompt.ndim == 1
    prompt = prompt[None] if was_1d else prompt
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"`token_ids` must be (length,) or (batch, length) with length >= 1, got {prompt.shape}.")
    validation.batch(prompt, "prompts")
    if getattr(model, "vocabulary_size", None) is not None:  # an id outside it would be clamped by the lookup
        validation.token_ids(prompt, model.vocabulary_size)
    validation.integer("`max_new_tokens`", max_new_tokens, 1, validation.MAX_NEW_TOKENS)
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    max_length = getattr(model, "max_length", None)
    length = prompt.shape[1]
    if max_length is not None and length + max_new_tokens > max_length:
        room = max_length - max_new_tokens
        advice = (
            f"keep at most its last {room} tokens (token_ids[..., -{room}:]) or ask for fewer new tokens"
            if room > 0
            else f"ask for fewer than {max_length} new tokens"
        )
        raise ValueError(
            f"The prompt has {length} tokens and max_new_tokens={max_new_tokens}, {length + max_new_tokens} in all, "
            f"more than the model's max_length={max_length}: {advice}."
        )
    if validation.temperature(temperature, "`temperature`") == 0 and sampler != "beam":
        sampler = "greedy"
    if top_k is not None:
        validation.integer("`top_k`", top_k, 1)
    if top_p is not None:
        validation.number("`top_p`", top_p, 0.0, 1.0, low_open=True)
    num_beams = validation.integer("`num_beams`", DEFAULT_NUM_BEAMS if num_beams is None else num_beams, 1,
                                   validation.MAX_NUM_BEAMS)
    validation.seed(seed, "`seed`")
    return prompt.astype("int32"), was_1d, int(num_beams), sampler


def _settings(sampler, temperature, top_k, top_p):
    """(temperature, top_k, top_p) as numpy scalars, which compiled functions take as data, not as constants.

    A rule that is off keeps everything: k = 2**30 tokens, p = 2 (more than all the probability there is).
    """
    top_k = (DEFAULT_TOP_K if top_k is None else top_k) if sampler == "top_k" else 2**30
    top_p = (DEFAULT_TOP_P if top_p is None else top_p) if sampler == "top_p" else 2.0
    return np.float32(temperature), np.int32(top_k), np.float32(top_p)


def _stop(stop_token_id):
    return np.int32(-1 if stop_token_id is None else stop_token_id)  # -1: no token equals it


def _uniforms(seed, steps, batch):
    # (0, 1], not [0, 1): a zero would select the first token even when its probability is 0.
    return (1.0 - np.random.default_rng(seed).random((steps, batch))).astype("float32")


def generate(
    model,
    token_ids,
    max_new_tokens,
    sampler="greedy",
    temperature=1.0,
    top_k=None,
    top_p=None,
    num_beams=None,
    seed=None,
    stop_token_id=None,
):
    """Continue `token_ids` by `max_new_tokens` tokens with a compiled, cached decoding loop.

    Args:
        model: a decodable model (see the module docstring), e.g. `keras_tx.models.GPT`.
        token_ids: one prompt (length,) or a batch of equal-length prompts (batch, length) of token ids.
        max_new_tokens: how many tokens to add. prompt length + max_new_tokens must not exceed
            `model.max_length` (a ValueError says by how much it does).
        sampler: "greedy", "random", "top_k", "top_p" or "beam".
        temperature: divides the logits before sampling ("random", "top_k", "top_p").
        top_k: tokens kept by the "top_k" sampler (default 10).
        top_p: probability mass kept by the "top_p" sampler (default 0.9).
        num_beams: beams of the "beam" sampler (default 4).
        seed: makes sampling reproducible: the same seed gives the same tokens. None draws a fresh one.
        stop_token_id: generation stops once every sequence has produced it; after it, a sequence is
            padded with it. The output is then shorter than prompt + max_new_tokens.

    Returns:
        numpy int32 array: the prompt followed by the new tokens, (batch, length + n) or (length + n,)
        like `token_ids`, n <= max_new_tokens.

    Example:
    >>> from keras_tx.models import GPT
    >>> gpt = GPT(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=16)
    >>> generate(gpt, [1, 2, 3], max_new_tokens=4).shape
    (7,)
    """
    prompt, was_1d, num_beams, sampler = _check(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p,
                                                num_beams, seed)
    steps = int(max_new_tokens)
    if sampler == "beam":
        fn = _compiled(
            model, ("beam", num_beams, steps), lambda: lambda p, s: _beam_loop(model, p, s, num_beams, steps)
        )
        tokens, ran = fn(prompt, _stop(stop_token_id))
    else:
        # One program for greedy and one for the three random samplers: their settings are data.
        greedy = sampler == "greedy"
        fn = _compiled(
            model,
            ("sample", greedy, steps),
            lambda: lambda p, u, settings, s: _sampling_loop(model, p, u, settings, s, greedy, steps),
        )
        settings = _settings(sampler, temperature, top_k, top_p)
        tokens, ran = fn(prompt, _uniforms(seed, steps, len(prompt)), settings, _stop(stop_token_id))
    tokens = ops.convert_to_numpy(tokens)[:, : prompt.shape[1] + int(ops.convert_to_numpy(ran))]
    return tokens[0] if was_1d else tokens


def generate_stream(
    model,
    token_ids,
    max_new_tokens,
    sampler="greedy",
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    stop_token_id=None,
):
    """Like `generate`, but yields each new token as soon as it is chosen (for a UI that shows them live).

    The prefill and the single-token step are each compiled once per configuration and shape, the loop runs
    in Python. It gives the same tokens as `generate` with the same arguments. Beam search is not streamed
    (its best beam is only known at the end).

    Yields:
        The new token of each sequence: an int for a 1-D prompt, a (batch,) int32 numpy array otherwise.

    Example:
    >>> from keras_tx.models import GPT
    >>> gpt = GPT(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=16)
    >>> len(list(generate_stream(gpt, [1, 2, 3], max_new_tokens=4)))
    4
    """
    if sampler == "beam":
        raise ValueError("Beam search cannot be streamed; use `generate(..., sampler='beam')`.")
    prompt, was_1d, _, sampler = _check(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p, 1, seed)
    steps = int(max_new_tokens)
    greedy = sampler == "greedy"

    def prefill(p):  # shapes from `p`: the function is reused for other prompts of other shapes
        logits, _, cache = model.call_with_cache(p, model.initial_cache(p.shape[0], p.shape[1] + steps), 0)
        return _last_logits(logits), cache

    def step(logits, cache, position, uniform, settings):
        token = _choose(logits, uniform, greedy, settings)
        logits, _, cache = model.call_with_cache(token[:, None], cache, position)
        return token, _last_logits(logits), cache

    prefill_fn = _compiled(model, ("prefill", steps), lambda: prefill)
    step_fn = _compiled(model, ("step", greedy), lambda: step)
    logits, cache = prefill_fn(prompt)
    batch, prompt_length = prompt.shape
    uniforms, stop = _uniforms(seed, steps, batch), _stop(stop_token_id)
    settings = _settings(sampler, temperature, top_k, top_p)
    done = np.zeros(batch, bool)
    for index in range(steps):
        token, logits, cache = step_fn(logits, cache, np.int32(prompt_length + index), uniforms[index], settings)
        token = np.where(done, stop, ops.convert_to_numpy(token)).astype("int32")
        done |= token == stop
        yield int(token[0]) if was_1d else token
        if done.all():
            return


def generate_uncached(
    model,
    token_ids,
    max_new_tokens,
    sampler="greedy",
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    stop_token_id=None,
):
    """The reference decoder: run the whole model on the growing sequence at every step, no cache, no XLA.

    Slow on purpose (O(t^2) per sequence); it is the definition `generate` must agree with, and the baseline
    of the benchmarks. Same arguments and result as `generate`, without beam search.

    Example:
    >>> from keras_tx.models import GPT
    >>> gpt = GPT(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_length=16)
    >>> bool((generate_uncached(gpt, [1, 2, 3], 4) == generate(gpt, [1, 2, 3], 4)).all())
    True
    """
    if sampler == "beam":
        raise ValueError("The uncached reference decoder has no beam search.")
    prompt, was_1d, _, sampler = _check(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p, 1, seed)
    uniforms, stop = _uniforms(seed, max_new_tokens, len(prompt)), _stop(stop_token_id)
    settings = _settings(sampler, temperature, top_k, top_p)
    tokens, done = prompt, np.zeros(len(prompt), bool)
    for index in range(max_new_tokens):
        logits = model(tokens, training=False)[:, -1]  # (B, V), the full forward pass over all t tokens
        token = _choose(logits, uniforms[index], sampler == "greedy", settings)
        token = np.where(done, stop, ops.convert_to_numpy(token)).astype("int32")
        done |= token == stop
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
        if done.all():
            break
    return tokens[0] if was_1d else tokens
