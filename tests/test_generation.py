"""The decoding loops: cached == uncached, every sampler, seeds, stop tokens, beam scoring, generation past the
context, and one compilation per shape."""

import time

import keras
import numpy as np
import pytest

from keras_tx import generation, sampling
from keras_tx.generation import generate, generate_stream, generate_uncached, trace_count
from keras_tx.models import GPT

VOCABULARY_SIZE = 50
PROMPTS = np.random.default_rng(0).integers(0, VOCABULARY_SIZE, size=(2, 5)).astype("int32")
NEW = 6


@pytest.fixture(scope="module")
def gpt():
    keras.utils.set_random_seed(7)
    # Larger-than-default weights, so that the next-token distributions are far from uniform and greedy
    # choices are not near-ties (a near-tie could flip between two mathematically equal computations).
    model = GPT(VOCABULARY_SIZE, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=16)
    model.set_weights([w * 5 if w.ndim > 1 else w for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def greedy(gpt):
    return generate(gpt, PROMPTS, NEW)


def test_cached_greedy_equals_uncached_greedy(gpt, greedy):
    assert greedy.shape == (2, 5 + NEW) and greedy.dtype == np.int32
    np.testing.assert_array_equal(greedy[:, :5], PROMPTS)
    np.testing.assert_array_equal(greedy, generate_uncached(gpt, PROMPTS, NEW))


def test_one_prompt_in_one_prompt_out(gpt, greedy):
    out = gpt.generate(PROMPTS[0].tolist(), NEW)
    assert out.shape == (5 + NEW,)
    np.testing.assert_array_equal(out, greedy[0])


@pytest.mark.parametrize("sampler", ["random", "top_k", "top_p"])
def test_sampler_shapes_ranges_and_seeds(gpt, sampler):
    kwargs = dict(sampler=sampler, top_k=5, top_p=0.8)
    first = generate(gpt, PROMPTS, NEW, seed=1, **kwargs)
    assert first.shape == (2, 5 + NEW) and first.dtype == np.int32
    np.testing.assert_array_equal(first[:, :5], PROMPTS)
    assert first.min() >= 0 and first.max() < VOCABULARY_SIZE
    np.testing.assert_array_equal(generate(gpt, PROMPTS, NEW, seed=1, **kwargs), first)  # same seed, same text
    # The random numbers are a function of (seed, step, row): the uncompiled reference draws the same tokens.
    np.testing.assert_array_equal(generate_uncached(gpt, PROMPTS, NEW, seed=1, **kwargs), first)
    others = [generate(gpt, PROMPTS, NEW, seed=seed, **kwargs) for seed in (2, 3)]
    assert any((other != first).any() for other in others)


def test_top_k_keeps_only_the_k_most_likely_tokens():
    logits = keras.ops.convert_to_tensor(np.array([[0.0, 5.0, 1.0, 3.0, 2.0]] * 400, "float32"))
    uniforms = keras.ops.convert_to_tensor(np.linspace(1e-3, 1.0, 400).astype("float32"))
    tokens = keras.ops.convert_to_numpy(generation.next_token(logits, uniforms, "top_k", top_k=2))
    assert set(tokens.tolist()) == {1, 3}
    tokens = keras.ops.convert_to_numpy(generation.next_token(logits, uniforms, "top_p", top_p=0.9))
    probabilities = np.exp([5.0, 3.0, 2.0, 1.0, 0.0]) / np.exp([5.0, 3.0, 2.0, 1.0, 0.0]).sum()
    assert probabilities[0] < 0.9 < probabilities[:2].sum()  # so the nucleus is tokens 1 and 3
    assert set(tokens.tolist()) == {1, 3}


def test_sampling_follows_the_distribution():
    probabilities = np.array([0.1, 0.0, 0.6, 0.3], "float32")
    uniforms = 1.0 - np.random.default_rng(0).random(20000).astype("float32")
    tokens = keras.ops.convert_to_numpy(
        generation.sample_from_probabilities(keras.ops.convert_to_tensor(np.tile(probabilities, (20000, 1))), uniforms)
    )
    np.testing.assert_allclose(np.bincount(tokens, minlength=4) / 20000, probabilities, atol=0.01)
    assert (tokens != 1).all()  # a zero-probability token is never drawn


def test_top_k_1_and_cold_random_and_one_beam_are_greedy(gpt, greedy):
    np.testing.assert_array_equal(generate(gpt, PROMPTS, NEW, sampler="top_k", top_k=1, seed=3), greedy)
    np.testing.assert_array_equal(generate(gpt, PROMPTS, NEW, sampler="random", temperature=1e-4, seed=3), greedy)
    np.testing.assert_array_equal(generate(gpt, PROMPTS, NEW, sampler="beam", num_beams=1), greedy)
    stop = int(greedy[0, 7])
    np.testing.assert_array_equal(
        generate(gpt, PROMPTS, NEW, sampler="beam", num_beams=1, stop_token_id=stop),
        generate(gpt, PROMPTS, NEW, stop_token_id=stop),
    )


def test_beam_search_with_every_token_as_a_beam_is_exhaustive():
    """With num_beams = vocabulary size, two steps of beam search try every pair of tokens: brute force agrees.
    (A vocabulary of 16: beams are bounded by keras_tx.validation.MAX_NUM_BEAMS.)"""
    size = 16
    gpt = GPT(size, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=16)
    prompts = PROMPTS % size
    gpt(prompts)
    gpt.set_weights([w * 5 if w.ndim > 1 else w for w in gpt.get_weights()])  # far from near-ties, as `gpt` above
    out = generate(gpt, prompts, 2, sampler="beam", num_beams=size)
    assert out.shape == (2, 7)
    for prompt, found in zip(prompts, out):
        first = keras.ops.convert_to_numpy(keras.ops.log_softmax(gpt(prompt[None])[:, -1]))[0]  # (V,)
        extended = np.concatenate([np.repeat(prompt[None], size, 0), np.arange(size)[:, None]], 1)
        second = keras.ops.convert_to_numpy(keras.ops.log_softmax(gpt(extended.astype("int32"))[:, -1]))  # (V, V)
        best = np.unravel_index(np.argmax(first[:, None] + second), second.shape)
        assert found[-2:].tolist() == [int(i) for i in best]


def test_random_numbers_are_a_function_of_seed_step_and_row():
    draw = lambda seed, step, batch=4: keras.ops.convert_to_numpy(sampling.uniforms(sampling.seed_words(seed), step,
                                                                                    batch))
    first = draw(5, 3)
    assert first.dtype == np.float32 and first.shape == (4,)
    np.testing.assert_array_equal(draw(5, 3), first)
    np.testing.assert_array_equal(draw(5, 3, batch=2), first[:2])  # row r's number does not depend on the batch
    others = [draw(6, 3), draw(5, 4), draw(5 + 2**32, 3)]  # another seed (low or high bits), another step
    assert all(len(set(first) & set(other)) == 0 for other in others)
    # Uniform in (0, 1]: over many steps the numbers fill the interval evenly.
    many = np.concatenate([draw(0, step, batch=64) for step in range(200)])
    assert many.min() > 0 and many.max() <= 1
    np.testing.assert_allclose(np.histogram(many, bins=10, range=(0, 1))[0] / many.size, 0.1, atol=0.01)
    # The same numbers inside a compiled function (a TensorFlow graph here; tests below check JAX).
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        graph = tf.function(lambda seed, step: sampling.uniforms(seed, step, 4), jit_compile=True)
        np.testing.assert_array_equal(graph(sampling.seed_words(5), np.int32(3)).numpy(), first)


def test_beam_scoring_divides_by_length_to_the_length_penalty():
    """A step function whose next-token log-probabilities depend on the last token only. From [START] (3): "a" (1)
    has 0.5, the stop token (2) 0.3; after "a", the stop token 0.5. [stop] sums log 0.3 = -1.20, [a, stop] sums
    2 log 0.5 = -1.39: the plain sum (penalty 0) keeps [stop], the mean (penalty 1: -0.69) prefers [a, stop]."""
    table = np.log(np.array([[0.25, 0.25, 0.25, 0.25], [1e-4, 0.3, 0.5, 0.2 - 1e-4],
                             [0.25, 0.25, 0.25, 0.25], [1e-4, 0.5, 0.3, 0.2 - 1e-4]], "float32"))

    def next(token_ids, cache, index):
        logits = keras.ops.take(keras.ops.convert_to_tensor(table), token_ids[:, -1:], axis=0)  # (B, 1, V)
        return logits, logits, cache

    prompt = np.array([[3], [3]], "int32")
    cache = keras.ops.zeros((2, 1))
    for penalty, expected in ((0.0, [3, 2, 0]), (1.0, [3, 1, 2])):
        tokens, ran = generation.beam_loop(next, prompt, cache, 2, 2, stop_token_id=2, pad_token_id=0,
                                           length_penalty=penalty)
        assert keras.ops.convert_to_numpy(tokens).tolist() == [expected] * 2 and int(ran) == 2


def test_generation_past_the_context(gpt, greedy):
    """generate_long continues in chunks of at most half the context (16), each reading the last tokens; step i of
    the whole generation draws the random numbers of step i, so one chunk is exactly `generate`."""
    assert generation.next_chunk(16, 5, 30) == (8, 0) and generation.next_chunk(16, 13, 22) == (8, 5)
    assert generation.next_chunk(16, 40, 3) == (3, 27) and generation.next_chunk(None, 40, 300) == (300, 0)
    prompt = PROMPTS[0]
    np.testing.assert_array_equal(generation.generate_long(gpt, prompt, NEW), greedy[0])  # NEW <= 8: one chunk
    long = generation.generate_long(gpt, prompt, 30)
    tokens = list(prompt)
    while len(tokens) < 35:  # the chunks by hand
        chunk, start = generation.next_chunk(16, len(tokens), 35 - len(tokens))
        tokens += generate(gpt, tokens[start:], chunk)[len(tokens) - start:].tolist()
    np.testing.assert_array_equal(long, tokens)
    stop = int(long[5 + 12])  # produced in the second chunk: a stop token ends the generation there
    first_stop = 5 + list(long[5:]).index(stop)
    np.testing.assert_array_equal(generation.generate_long(gpt, prompt, 30, stop_token_id=stop), long[: first_stop + 1])
    for kwargs in (dict(sampler="top_p", top_p=0.8, seed=2), dict(sampler="random", temperature=0.7, seed=9)):
        np.testing.assert_array_equal(generation.generate_long(gpt, prompt, 8, **kwargs),
                                      generate(gpt, prompt, 8, **kwargs))
        long = generation.generate_long(gpt, prompt, 30, **kwargs)
        assert long.shape == (35,)
        np.testing.assert_array_equal(generation.generate_long(gpt, prompt, 30, **kwargs), long)
        streamed = list(generation.stream_long(gpt, prompt, 30, **kwargs))
        assert all(piece.shape == (1,) for piece in streamed)
        np.testing.assert_array_equal(np.concatenate(streamed), long[5:])
    beam = dict(sampler="beam", num_beams=2)
    long = generation.generate_long(gpt, prompt, 20, **beam)
    [streamed] = generation.stream_long(gpt, prompt, 20, **beam)  # all at once
    np.testing.assert_array_equal(streamed, long[5:])


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def test_no_recompilation_for_the_same_shapes(gpt):
    # Python traces are counted; XLA could still recompile without a new trace (an argument it treats as a
    # compile-time constant), so calls are also timed: a compilation takes seconds, a compiled call milliseconds.
    _, first = _timed(lambda: generate(gpt, PROMPTS, NEW, sampler="random", seed=0, temperature=0.9))
    traced = trace_count(gpt)
    # New prompts, seeds, temperature, top_k, top_p, stop token, and the choice among the random samplers are
    # data of one program: no new trace.
    generate(gpt, PROMPTS[::-1], NEW, sampler="random", seed=5, temperature=0.7)
    generate(gpt, PROMPTS + 1, NEW, sampler="top_p", seed=6, temperature=1.3, top_p=0.5, stop_token_id=3)
    _, later = _timed(lambda: generate(gpt, PROMPTS, NEW, sampler="top_k", seed=7, top_k=3))
    assert trace_count(gpt) == traced
    if first > 1.0:  # the first call compiled here (not in an earlier test): compare
        assert later < 0.25 * first, (first, later)


def test_stop_token_ends_generation_and_pads(gpt, greedy):
    stop = int(greedy[0, 5 + 2])  # the third new token of the first sequence
    first_stop = 5 + list(greedy[0, 5:]).index(stop)
    out = generate(gpt, PROMPTS[:1], NEW, stop_token_id=stop)
    np.testing.assert_array_equal(out[0], greedy[0, : first_stop + 1])  # stops right after emitting it
    # In a batch, a finished sequence is padded with the stop token until all are done.
    both = generate(gpt, PROMPTS, NEW, stop_token_id=stop)
    np.testing.assert_array_equal(both[0, : first_stop + 1], greedy[0, : first_stop + 1])
    assert (both[0, first_stop:] == stop).all()
    second_stops = [i for i, t in enumerate(greedy[1, 5:]) if t == stop]
    assert both.shape[1] == (5 + second_stops[0] + 1 if second_stops else 5 + NEW)
    np.testing.assert_array_equal(both, generate_uncached(gpt, PROMPTS, NEW, stop_token_id=stop))


def test_streaming_yields_the_same_tokens(gpt, greedy):
    traced = trace_count(gpt)
    stream = generate_stream(gpt, PROMPTS[0], NEW)  # one prompt: the tokens come as ints
    timed = [_timed(lambda: next(stream)) for _ in range(NEW)]
    assert [token for token, _ in timed] == greedy[0, 5:].tolist()
    # The prefill and the step are each compiled once, on the first token; every later step is a compiled call
    # (a step position compiled in as a constant would recompile at every step, each as slow as the first).
    assert trace_count(gpt) == traced + 2
    assert max(seconds for _, seconds in timed[1:]) < 0.25 * timed[0][1], [seconds for _, seconds in timed]
    with pytest.raises(StopIteration):
        next(stream)
    kwargs = dict(sampler="top_p", top_p=0.8, seed=4)
    streamed = list(gpt.generate_stream(PROMPTS[0], NEW, **kwargs))
    assert streamed == generate_uncached(gpt, PROMPTS[0], NEW, **kwargs)[5:].tolist()


def test_user_errors_are_value_errors(gpt):
    with pytest.raises(ValueError, match=r"max_length=16.*at most its last 10 tokens"):
        generate(gpt, np.zeros((1, 12), "int32"), 6)
    with pytest.raises(ValueError, match="Unknown sampler 'nucleus'"):
        generate(gpt, PROMPTS, 2, sampler="nucleus")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(gpt, PROMPTS, 0)
    with pytest.raises(ValueError, match="equal-length"):
        generate(gpt, [[1, 2, 3], [4, 5]], 2)
    with pytest.raises(ValueError, match="temperature"):
        generate(gpt, PROMPTS, 2, sampler="random", temperature=-1.0)
    with pytest.raises(ValueError, match="num_beams"):
        generate(gpt, PROMPTS, 2, sampler="beam", num_beams=17)  # keras_tx.validation.MAX_NUM_BEAMS
    with pytest.raises(ValueError, match="Token ids"):
        generate(gpt, PROMPTS + VOCABULARY_SIZE, 2)
    # Temperature 0 decodes greedily with any sampler, as the exported `generate` does.
    np.testing.assert_array_equal(generate(gpt, PROMPTS, 3, sampler="top_k", temperature=0.0, seed=1),
                                  generate(gpt, PROMPTS, 3))
    with pytest.raises(ValueError, match="streamed"):
        next(generate_stream(gpt, PROMPTS, 2, sampler="beam"))


JAX_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
from keras_tx.generation import generate, trace_count
from keras_tx.models import GPT

weights = list(np.load(sys.argv[1]).values())
prompts = np.array(json.loads(sys.argv[2]), "int32")
gpt = GPT(50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=16)
generate(gpt, prompts, 6)  # compiled with the initial weights...
traced = trace_count(gpt)
gpt.set_weights(weights)  # ...which are arguments of the program, not constants: new weights, new tokens
result = {
    "greedy": generate(gpt, prompts, 6).tolist(),
    "top_p": generate(gpt, prompts, 6, sampler="top_p", top_p=0.8, seed=1).tolist(),
}
assert trace_count(gpt) == traced + 1, trace_count(gpt)  # the random samplers' program
generate(gpt, prompts[::-1], 6, sampler="top_k", top_k=3, seed=2, temperature=0.5)
assert trace_count(gpt) == traced + 1, "recompiled"
assert "tensorflow" not in sys.modules, "generation imported tensorflow under JAX"
print("RESULT", json.dumps(result))
"""


def test_generation_under_jax_agrees_with_tensorflow(gpt, greedy, tmp_path):
    """The GPU machines run JAX: the jax.jit path gives TensorFlow's tokens and sees weight updates."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax")
    np.savez(tmp_path / "weights.npz", *gpt.get_weights())
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "weights.npz"), json.dumps(PROMPTS.tolist())],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    tokens = json.loads(lines[0][len("RESULT ") :])
    np.testing.assert_array_equal(tokens["greedy"], greedy)
    np.testing.assert_array_equal(tokens["top_p"], generate(gpt, PROMPTS, NEW, sampler="top_p", top_p=0.8, seed=1))
