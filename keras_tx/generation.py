"""Autoregressive decoding: the loops that turn a next-token model into a text generator or a translator.

A causal language model gives, for every position, a distribution over the next token. Generation feeds the
prompt once ("prefill"), picks a token from the last distribution, appends it, and repeats. Two things make
that fast: the key/value cache (each step runs the model on the one new token only, reusing the keys and
values of all earlier positions: O(t) work per step instead of O(t^2)), and compilation: the whole loop is
one XLA program, `tf.function(jit_compile=True)` under TensorFlow and `jax.jit` under JAX, traced once per
model, program (greedy; the three random samplers; beam search with a number of beams), batch size, prompt
length and max_new_tokens. Temperature, top_k, top_p, the stop token, the seed and the length penalty are
data of the program: changing them does not recompile (`trace_count`). Other backends run it uncompiled.

The two loops, `sample_loop` (greedy and the random samplers of `keras_tx.sampling`) and `beam_loop`, are
written in `keras.ops` over one step function, as keras-hub's samplers are:

    next(token_ids, cache, cache_update_index) -> (logits, hidden_states, cache)

runs the tokens at positions index..index+T-1 and returns the updated cache, any nest of tensors (a seq2seq
model carries its encoder state in it). A model's `call_with_cache` is such a step. They serve the GPT, RNN
language model and image GPT (`generate`: a model with `call_with_cache`, `initial_cache(batch, length)` and
`max_length`, None for an RNN), the seq2seq Transformer (`Seq2SeqTransformer.translate_ids`) and the exported
signatures (keras_tx.export traces them as TensorFlow graph ops). The random numbers are a hash of (seed,
step, row) (`keras_tx.sampling.uniforms`) computed in the loop: a seed gives the same tokens on every backend,
compiled or not, and in the exported graph.

Beam search keeps the `num_beams` hypotheses with the best summed log-probability divided by
length ** length_penalty (the length counts the new tokens up to the stop token); a finished hypothesis keeps
its score and length and is extended by a padding token at no cost. `generate` uses length_penalty 0, the plain
sum (which, with a stop token, favours beams that finish early); `translate_ids` 1 by default.
"""

import numpy as np

import keras
from keras import ops

from keras_tx import sampling, validation
# The samplers, as this module exported them before keras_tx.sampling:
from keras_tx.sampling import (DEFAULT_NUM_BEAMS, DEFAULT_TOP_K, DEFAULT_TOP_P, SAMPLERS,  # noqa: F401
                               filter_logits, next_token, sample_from_probabilities)

# ------------------------------------------------------------------------------------------- the loops


def _last_logits(logits):
    return ops.cast(logits[:, -1], "float32")  # (B, V): the prediction after the last position


def _advance(next, token_ids, cache, position, more, previous, read=_last_logits):
    """`read`(the logits of one step of `token_ids`) and the cache, when `more`; else `previous` and `cache`
    unchanged: the loops skip the step after their last token, whose output nothing reads."""

    def step():
        logits, _, new_cache = next(token_ids, cache, position)
        return read(logits), new_cache

    return ops.cond(more, step, lambda: (previous, cache))


def sample_loop(next, prompt, cache, steps, seed=None, settings=None, first_step=0, stop_token_id=-1,
                pad_token_id=None):
    """Prefill, then up to `steps` single-token steps, each choosing a token (`keras_tx.sampling.choose`).

    Args:
        next: the step function (module docstring), e.g. `model.call_with_cache`.
        prompt: (B, P) int32 tokens; the prefill runs them at positions 0..P-1.
        cache: the cache `next` takes, with room for P + steps - 1 positions.
        steps: how many tokens to choose (a Python int, or a scalar tensor in a TensorFlow graph).
        seed: (2,) uint32 (`sampling.seed_words`); unused when greedy.
        settings: (temperature, top_k, top_p) from `sampling.settings`, or None for greedy decoding.
        first_step: the counter of the first step's random numbers (`sampling.uniforms`): a continuation
            passes the number of tokens generated before it, so that it draws the numbers of those steps.
        stop_token_id: a sequence is done once it chooses it; the loop ends when all are (-1: none).
        pad_token_id: what a done sequence gets after it (default: the stop token).

    Returns:
        (tokens (B, P + steps): the prompt then the chosen tokens, the number of steps run).
    """
    batch, prompt_length = ops.shape(prompt)[0], ops.shape(prompt)[1]
    pad = stop_token_id if pad_token_id is None else pad_token_id
    logits, _, cache = next(prompt, cache, 0)
    tokens = ops.concatenate([prompt, ops.zeros((batch, steps), "int32")], axis=1)  # (B, P + steps)

    def cond(index, tokens, cache, logits, done):
        return ops.logical_and(index < steps, ops.logical_not(ops.all(done)))

    def body(index, tokens, cache, logits, done):
        uniform = None if settings is None else sampling.uniforms(seed, first_step + index, batch)
        token = ops.where(done, pad, sampling.choose(logits, uniform, settings))  # (B,); done: padded
        position = prompt_length + index
        tokens = ops.slice_update(tokens, [0, position], token[:, None])
        done = ops.logical_or(done, ops.equal(token, stop_token_id))
        logits, cache = _advance(next, token[:, None], cache, position, index + 1 < steps, logits)
        return index + 1, tokens, cache, logits, done

    start = (ops.convert_to_tensor(0, "int32"), tokens, cache, _last_logits(logits), ops.zeros((batch,), "bool"))
    index, tokens, *_ = ops.while_loop(cond, body, start)
    return tokens, index


def beam_loop(next, prompt, cache, steps, num_beams, stop_token_id=-1, pad_token_id=None, length_penalty=0.0):
    """Beam search over `num_beams` beams per prompt, scored as the module docstring says.

    Arguments as `sample_loop`'s; `num_beams` is a Python int, `length_penalty` a number (data). The prefill
    runs once per prompt, then the cache is repeated for the beams.

    Returns:
        (the best beam's tokens (B, P + steps), the number of steps run).
    """
    batch, prompt_length = ops.shape(prompt)[0], ops.shape(prompt)[1]
    pad = stop_token_id if pad_token_id is None else pad_token_id
    logits, _, cache = next(prompt, cache, 0)
    # Every prompt becomes num_beams rows (B * K, ...), beam-major within a prompt.
    cache = keras.tree.map_structure(lambda t: ops.repeat(t, num_beams, axis=0), cache)
    log_probs = ops.repeat(ops.log_softmax(_last_logits(logits), axis=-1), num_beams, axis=0)  # (B*K, V)
    tokens = ops.repeat(ops.concatenate([prompt, ops.zeros((batch, steps), "int32")], axis=1), num_beams, axis=0)
    rows, vocabulary_size = ops.shape(log_probs)[0], log_probs.shape[-1]
    # At the start the K beams are identical: only the first is live, or top-k would pick K copies.
    scores = ops.where(ops.arange(rows) % num_beams == 0, 0.0, float("-inf"))  # (B*K,)
    # A finished beam may only continue with the padding token, at no cost: its score stays fixed.
    after_stop = ops.where(ops.arange(vocabulary_size) == pad, 0.0, float("-inf"))  # (V,)
    row_offsets = ops.arange(batch, dtype="int32")[:, None] * num_beams  # (B, 1)

    def cond(index, tokens, cache, log_probs, scores, lengths, done):
        return ops.logical_and(index < steps, ops.logical_not(ops.all(done)))

    def body(index, tokens, cache, log_probs, scores, lengths, done):
        log_probs = ops.where(done[:, None], after_stop[None, :], log_probs)
        totals = scores[:, None] + log_probs  # (B*K, V): the summed log-probability of every extension
        lengths = ops.where(done, lengths, index + 1)  # (B*K,): the length of every extension of a row
        penalty = ops.power(ops.cast(lengths, "float32"), ops.cast(length_penalty, "float32"))
        ranked = ops.reshape(totals / penalty[:, None], (-1, num_beams * vocabulary_size))  # (B, K*V)
        _, choice = ops.top_k(ranked, num_beams)  # (B, K), best first
        scores = ops.reshape(ops.take_along_axis(ops.reshape(totals, (-1, num_beams * vocabulary_size)), choice,
                                                 axis=1), (-1,))
        source = ops.reshape(row_offsets + choice // vocabulary_size, (-1,))  # (B*K,): the beam each extends
        token = ops.cast(ops.reshape(choice % vocabulary_size, (-1, 1)), "int32")  # (B*K, 1)
        tokens, lengths, done = (ops.take(t, source, axis=0) for t in (tokens, lengths, done))
        cache = keras.tree.map_structure(lambda t: ops.take(t, source, axis=0), cache)
        position = prompt_length + index
        tokens = ops.slice_update(tokens, [0, position], token)
        done = ops.logical_or(done, ops.equal(token[:, 0], stop_token_id))
        log_probs, cache = _advance(next, token, cache, position, index + 1 < steps, log_probs,
                                    lambda logits: ops.log_softmax(_last_logits(logits), axis=-1))
        return index + 1, tokens, cache, log_probs, scores, lengths, done

    lengths, done = ops.zeros((rows,), "int32"), ops.zeros((rows,), "bool")
    start = (ops.convert_to_tensor(0, "int32"), tokens, cache, log_probs, scores, lengths, done)
    index, tokens, *_ = ops.while_loop(cond, body, start)
    best = ops.reshape(tokens, (batch, num_beams, -1))[:, 0]  # top_k sorts: beam 0 is the best
    return best, index


# ------------------------------------------------------------------------------------------ compilation


class _CompiledFunctions:
    """The compiled functions of one model, by configuration, and how often each was traced."""

    def __init__(self):
        self.functions = {}
        self.traces = 0


def compiled(model, key, make):
    """The compiled function of `model` for `key` (any hashable configuration), made by `make()` the first time
    it is asked for: `tf.function(jit_compile=True)` under TensorFlow, `jax.jit` under JAX (the weights go in
    as arguments), the plain function on other backends. Its traces are counted (`trace_count`)."""
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
    prompt, was_1d = validation.id_rows(token_ids, "token_ids")
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
    sampler, num_beams = sampling.check(sampler, temperature, top_k, top_p, num_beams, seed)
    return prompt.astype("int32"), was_1d, num_beams, sampler


def _stop(stop_token_id):
    return np.int32(-1 if stop_token_id is None else stop_token_id)  # -1: no token equals it


def _settings(sampler, temperature, top_k, top_p):
    return None if sampler == "greedy" else sampling.settings(sampler, temperature, top_k, top_p)


def _run(model, token_ids, max_new_tokens, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
         num_beams=None, seed=None, stop_token_id=None, first_step=0):
    """`generate`, also returning how many steps ran; `first_step` as `sample_loop`'s."""
    prompt, was_1d, num_beams, sampler = _check(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p,
                                                num_beams, seed)
    steps, stop = int(max_new_tokens), _stop(stop_token_id)

    def cache(p):  # shapes from `p`: a compiled function serves prompts of every shape
        return model.initial_cache(p.shape[0], p.shape[1] + steps)

    if sampler == "beam":
        fn = compiled(model, ("beam", num_beams, steps), lambda: lambda p, s, penalty: beam_loop(
            model.call_with_cache, p, cache(p), steps, num_beams, s, s, penalty))
        tokens, ran = fn(prompt, stop, np.float32(0.0))
    else:
        # One program for greedy and one for the three random samplers: their settings are data.
        settings = _settings(sampler, temperature, top_k, top_p)
        greedy = settings is None
        fn = compiled(model, ("sample", greedy, steps), lambda: lambda p, seed, first, s, settings: sample_loop(
            model.call_with_cache, p, cache(p), steps, seed, None if greedy else settings, first, s))
        tokens, ran = fn(prompt, sampling.seed_words(seed), np.int32(first_step), stop,
                         settings or sampling.settings("random"))
    ran = int(ops.convert_to_numpy(ran))
    tokens = ops.convert_to_numpy(tokens)[:, : prompt.shape[1] + ran]
    return (tokens[0] if was_1d else tokens), ran


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
            `model.max_length` (a ValueError says by how much it does; `generate_long` goes past it).
        sampler: "greedy", "random", "top_k", "top_p" or "beam" (`keras_tx.sampling`).
        temperature: divides the logits before sampling ("random", "top_k", "top_p"); 0 is greedy.
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
    return _run(model, token_ids, max_new_tokens, sampler, temperature, top_k, top_p, num_beams, seed,
                stop_token_id)[0]


def generate_stream(model, token_ids, max_new_tokens, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                    seed=None, stop_token_id=None, first_step=0):
    """Like `generate`, but yields each new token as soon as it is chosen (for a UI that shows them live).

    The prefill and the single-token step are each compiled once per configuration and shape, the loop runs
    in Python. It gives the same tokens as `generate` with the same arguments. Beam search is not streamed
    (its best beam is only known at the end). `first_step`: as `sample_loop`'s.

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
    settings = _settings(sampler, temperature, top_k, top_p)
    greedy = settings is None

    def prefill(p):  # shapes from `p`: the function is reused for other prompts of other shapes
        logits, _, cache = model.call_with_cache(p, model.initial_cache(p.shape[0], p.shape[1] + steps), 0)
        return _last_logits(logits), cache

    def step(logits, cache, position, seed, counter, settings):
        uniform = None if greedy else sampling.uniforms(seed, counter, logits.shape[0])
        token = sampling.choose(logits, uniform, None if greedy else settings)
        logits, _, cache = model.call_with_cache(token[:, None], cache, position)
        return token, _last_logits(logits), cache

    prefill_fn = compiled(model, ("prefill", steps), lambda: prefill)
    step_fn = compiled(model, ("step", greedy), lambda: step)
    logits, cache = prefill_fn(prompt)
    batch, prompt_length = prompt.shape
    seed, stop, settings = sampling.seed_words(seed), _stop(stop_token_id), settings or sampling.settings("random")
    done = np.zeros(batch, bool)
    for index in range(steps):
        token, logits, cache = step_fn(logits, cache, np.int32(prompt_length + index), seed,
                                       np.int32(first_step + index), settings)
        token = np.where(done, stop, ops.convert_to_numpy(token)).astype("int32")
        done |= token == stop
        yield int(token[0]) if was_1d else token
        if done.all():
            return


def generate_uncached(model, token_ids, max_new_tokens, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                      seed=None, stop_token_id=None):
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
    settings, stop = _settings(sampler, temperature, top_k, top_p), _stop(stop_token_id)
    seed = sampling.seed_words(seed)
    tokens, done = prompt, np.zeros(len(prompt), bool)
    for index in range(max_new_tokens):
        logits = model(tokens, training=False)[:, -1]  # (B, V), the full forward pass over all t tokens
        uniform = None if settings is None else sampling.uniforms(seed, index, len(prompt))
        token = ops.convert_to_numpy(sampling.choose(logits, uniform, settings))
        token = np.where(done, stop, token).astype("int32")
        done |= token == stop
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
        if done.all():
            break
    return tokens[0] if was_1d else tokens


# -------------------------------------------------------------------------------- past the model's context


def next_chunk(context, length, remaining):
    """How a generation continues past a context of `context` positions: (new tokens of the next chunk, where
    its window starts in the `length` tokens so far). A chunk is at most half the context and reads the last
    (context - chunk) tokens. A model without a context (None: an RNN) runs in one chunk over everything.
    Python ints in, ints out; in a TensorFlow graph, scalar tensors.

    Example:
    >>> next_chunk(16, 40, 30)
    (8, 32)
    """
    if context is None:
        return remaining, 0
    if ops.is_tensor(length) or ops.is_tensor(remaining):
        chunk = ops.minimum(remaining, max(context // 2, 1))
        return chunk, ops.maximum(length - (context - chunk), 0)
    chunk = min(int(remaining), max(context // 2, 1))
    return chunk, max(int(length) - (context - chunk), 0)


def generate_long(model, prompt_ids, max_new_tokens, **sampling_kwargs):
    """Continue the 1-D prompt `prompt_ids` by `max_new_tokens` tokens, past the model's context if need be.

    In chunks (`next_chunk`), each a `generate` call over the last tokens. The random numbers of a chunk are
    those of its steps in the whole generation (step i draws `sampling.uniforms(seed, i, ...)`): one seed, one
    counter, no seed per chunk; a generation that fits in one chunk is `generate`'s. A stop token ends it early.

    Args:
        model, max_new_tokens: as `generate`'s (max_new_tokens not bounded by the context).
        prompt_ids: (P,) token ids.
        **sampling_kwargs: `generate`'s sampler, temperature, top_k, top_p, num_beams, seed, stop_token_id.

    Returns:
        numpy int32 (P + n,): the prompt then the n <= max_new_tokens new tokens.
    """
    tokens = list(np.asarray(prompt_ids, "int32"))
    for window, chunk, kwargs in _chunks(model, tokens, max_new_tokens, sampling_kwargs):
        out, ran = _run(model, np.asarray(tokens[window:], "int32"), chunk, **kwargs)
        tokens += out[len(tokens) - window:].tolist()
        if ran < chunk:  # a stop token ended it
            break
    return np.asarray(tokens, "int32")


def stream_long(model, prompt_ids, max_new_tokens, **sampling_kwargs):
    """`generate_long`, streamed: yields (n,) int32 numpy arrays of new tokens as they come, one token at a time
    (`generate_stream`), or all of them at once for beam search (whose best beam is known only at the end).
    Together they are `generate_long`'s new tokens."""
    if sampling_kwargs.get("sampler") == "beam":
        yield generate_long(model, prompt_ids, max_new_tokens, **sampling_kwargs)[len(prompt_ids):]
        return
    tokens = list(np.asarray(prompt_ids, "int32"))
    for window, chunk, kwargs in _chunks(model, tokens, max_new_tokens, sampling_kwargs):
        kwargs.pop("num_beams", None)
        produced = 0
        for token in generate_stream(model, np.asarray(tokens[window:], "int32"), chunk, **kwargs):
            tokens.append(token)
            produced += 1
            yield np.array([token], "int32")
        if produced < chunk:  # a stop token ended it
            return


def _chunks(model, tokens, max_new_tokens, sampling_kwargs):
    """(window start, chunk, keyword arguments) of each chunk; the caller appends each chunk to `tokens`."""
    validation.integer("`max_new_tokens`", max_new_tokens, 1, validation.MAX_NEW_TOKENS)
    seed = validation.seed(sampling_kwargs.get("seed"), "`seed`")
    seed = int(np.random.default_rng().integers(2**63)) if seed is None else seed  # one seed for all chunks
    done, context = 0, getattr(model, "max_length", None)
    while done < max_new_tokens:
        chunk, window = next_chunk(context, len(tokens), max_new_tokens - done)
        yield window, chunk, {**sampling_kwargs, "seed": seed, "first_step": done}
        done += chunk
