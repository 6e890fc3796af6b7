# %% [markdown]
# # 4. The decoder trains in parallel but decodes serially; the KV cache makes each serial step cheap
#
# **Step 6 -> 7** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
# **Transformer decoder -> GPT** (then BERT, ViT, image GPT). An RNN must run step by step even in training.
# A Transformer decoder with a causal mask does not: one call computes the outputs of *all* positions, each
# seeing only its past, so a training step on T tokens is one parallel pass with T next-token losses.
# Generation is still serial (token t+1 needs token t), and without care each step re-runs the whole prefix.
# The key/value cache stores every layer's keys and values of the past positions, so a step only computes
# the new token's query, key and value.
#
# The model: `keras_tx.layers.TokenEmbedding` + `PositionEmbedding` -> a stack of
# `TransformerDecoderBlock`s (pre-LN) -> layer norm -> logits through the *same* embedding matrix
# (`TokenEmbedding(..., reverse=True)`, tied weights), trained on characters of tiny_shakespeare.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, SMOKE, keras, np, ops, plt, tf, time

from keras_tx.layers import PositionEmbedding, TokenEmbedding, TransformerDecoderBlock, causal_mask

# %%
from nb_setup import load_text, char_ids, windows


text, text_source = load_text()
vocabulary, char_to_id, train_ids, val_ids = char_ids(text)

# %%
HIDDEN = 32 if SMOKE else 128
NUM_LAYERS = 1 if SMOKE else 2
NUM_HEADS = 2 if SMOKE else 4
MAX_LENGTH = 48 if SMOKE else 512


class TinyDecoder(keras.Model):
    """A GPT-style character model from our layers: embeddings, decoder blocks, tied output logits."""

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = TokenEmbedding(vocabulary_size, HIDDEN, name="token_embedding")
        self.position_embedding = PositionEmbedding(MAX_LENGTH, name="position_embedding")
        self.blocks = [TransformerDecoderBlock(NUM_HEADS, 4 * HIDDEN, norm_first=True, name=f"block_{i}")
                       for i in range(NUM_LAYERS)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")

    def embed(self, tokens, start_index=0):
        x = self.token_embedding(tokens)  # (B, T, HIDDEN)
        return x + self.position_embedding(x, start_index=start_index)

    def logits(self, x):
        return self.token_embedding(self.final_norm(x), reverse=True)  # (B, T, vocabulary)

    def call(self, tokens):
        """All positions in one pass; the blocks' causal masks keep each position to its past."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.logits(x)

    def call_with_cache(self, tokens, caches, index):
        """Only the new `tokens` (at absolute position `index`), attending to the cached keys/values."""
        x, new_caches = self.embed(tokens, start_index=index), []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(x, self_attention_cache=cache, self_attention_cache_update_index=index)
            new_caches.append(cache)
        return self.logits(x), new_caches


keras.utils.set_random_seed(0)
model = TinyDecoder(len(vocabulary))
model(np.zeros((1, 8), "int32"))
print(f"{NUM_LAYERS} decoder blocks, hidden {HIDDEN}, {NUM_HEADS} heads, context {MAX_LENGTH}: "
      f"{model.count_params():,} parameters (output projection tied to the token embedding)")

# %% [markdown]
# ## Training: one call, every position
#
# The causal mask (True = may attend) lets position t see positions 0..t only. With it, one forward call on
# a (batch, T) window returns logits for all T positions, and the loss averages T next-character losses per
# window. We check that (a) changing the future does not change the past's logits and (b) the logits of
# the one parallel call equal the logits of T separate calls on the growing prefixes.

# %%
mask = ops.convert_to_numpy(causal_mask(12, 12)).astype(int)
print(mask)
CHECK = 32 if SMOKE else 96
tokens = windows(val_ids, CHECK, count=1)[0]  # (1, CHECK)
parallel = ops.convert_to_numpy(model(tokens))  # (1, CHECK, vocabulary): one call, every position
serial = np.stack([ops.convert_to_numpy(model(tokens[:, : t + 1]))[0, -1] for t in range(CHECK)])
parallel_vs_serial = float(np.abs(parallel[0] - serial).max())
changed = tokens.copy()
changed[:, CHECK // 2 :] = (changed[:, CHECK // 2 :] + 1) % len(vocabulary)  # rewrite the second half
after = ops.convert_to_numpy(model(changed))
past_change = float(np.abs(after[0, : CHECK // 2] - parallel[0, : CHECK // 2]).max())
future_change = float(np.abs(after[0, CHECK // 2 :] - parallel[0, CHECK // 2 :]).max())
print(f"one call on {tokens.shape} -> logits {parallel.shape}")
print(f"max |parallel - serial prefix calls| over {CHECK} positions: {parallel_vs_serial:.2e}")
print(f"rewriting tokens {CHECK // 2}.. changes the logits before them by {past_change:.2e}, after by {future_change:.2f}")
assert parallel_vs_serial < 1e-4 and past_change < 1e-4 and future_change > 1e-3

# %%
SEQ = 32 if SMOKE else 128
BATCH = 4 if SMOKE else 32
STEPS = 3 if SMOKE else 150
x_train, y_train = windows(train_ids, SEQ, STEPS * BATCH, np.random.default_rng(0))
x_val, y_val = windows(val_ids, SEQ, count=8 if SMOKE else 256)
model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
loss_before = model.evaluate(x_val, y_val, batch_size=64, verbose=0)
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
train_time = time.perf_counter() - start
loss_after = model.evaluate(x_val, y_val, batch_size=64, verbose=0)
print(f"{STEPS} training steps, each one parallel pass over {BATCH} x {SEQ} = {BATCH * SEQ:,} next-character "
      f"predictions: {train_time:.1f} s ({1e3 * train_time / STEPS:.0f} ms/step, compilation included)")
print(f"validation loss (last 10% of {text_source}): {loss_before:.3f} before -> {loss_after:.3f} after training")

# %%
snippet = windows(val_ids, 24, count=1)[0]
x = model.embed(snippet)
_, attention = model.blocks[0](x, return_attention_scores=True)
attention = ops.convert_to_numpy(attention)[0].mean(axis=0)  # (T, T), averaged over heads
labels = [repr(vocabulary[i])[1:-1] or " " for i in snippet[0]]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
axes[0].imshow(mask, cmap="Greys", vmin=0, vmax=1.5)
axes[0].set(title="causal_mask(12, 12): 1 = may attend", xlabel="key position", ylabel="query position")
axes[1].imshow(attention, cmap="viridis")
axes[1].set_xticks(range(len(labels)), labels)
axes[1].set_yticks(range(len(labels)), labels)
axes[1].set(title="trained block 0, mean over heads: nothing above the diagonal",
            xlabel="key (attended to)", ylabel="query")
for ax in axes:
    ax.grid(False)
plt.show()
assert np.all(np.triu(attention, k=1) < 1e-6)

# %% [markdown]
# ## Decoding: serial, with and without the KV cache
#
# Greedy decoding from a prompt, up to the context length, in two ways:
#
# - **without a cache**: each step calls the model on the whole prefix (length t) and keeps the last
#   position's logits. A `tf.function` with a `(batch, None)` input signature, traced once for all lengths.
#   (XLA would recompile it for every new length, so it is plain graph mode.)
# - **with the cache**: one call on the prompt fills every block's `(batch, 2, max_length, heads, key_dim)`
#   key/value cache (prefill); each further step feeds only the newest token and its position. Fixed
#   shapes, one `tf.function` trace, also plain graph mode so that the two are compared like for like.
#
# What is timed: the wall clock of one step's compiled call, including fetching the chosen token to
# Python (which waits for the computation), after a warm-up that excludes tracing. Other processes share
# these CPU cores, so each generation is run several times and the fastest time at each position is kept.

# %%
REPEATS = 1 if SMOKE else 3
prompt_text = "ROMEO:\n" if text_source == "tiny_shakespeare" else "The "
prompt = np.array([[char_to_id[c] for c in prompt_text]], "int32")
head_dim = HIDDEN // NUM_HEADS


@tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
def next_token_uncached(tokens):
    return tf.argmax(model(tokens)[:, -1], axis=-1, output_type=tf.int32)


@tf.function
def prefill(tokens, caches):
    logits, caches = model.call_with_cache(tokens, caches, 0)
    return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32), caches


@tf.function
def next_token_cached(token, caches, index):
    logits, caches = model.call_with_cache(token[:, None], caches, index)
    return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32), caches


def greedy_uncached(prompt, steps):
    tokens, times = tf.constant(prompt), []
    for _ in range(steps):
        start = time.perf_counter()
        token = next_token_uncached(tokens).numpy()
        times.append(time.perf_counter() - start)
        tokens = tf.concat([tokens, token[:, None]], axis=1)
    return tokens.numpy(), np.array(times)


def greedy_cached(prompt, steps):
    caches = [tf.zeros((prompt.shape[0], 2, MAX_LENGTH, NUM_HEADS, head_dim)) for _ in model.blocks]
    start = time.perf_counter()
    token, caches = prefill(tf.constant(prompt), caches)
    token = token.numpy()
    times, generated = [time.perf_counter() - start], [token]
    for i in range(steps - 1):
        start = time.perf_counter()
        token, caches = next_token_cached(tf.constant(token), caches, tf.constant(prompt.shape[1] + i))
        token = token.numpy()
        times.append(time.perf_counter() - start)
        generated.append(token)
    return np.concatenate([prompt, np.stack(generated, axis=1)], axis=1), np.array(times)


STEPS_TO_GENERATE = MAX_LENGTH - prompt.shape[1]
greedy_uncached(prompt, 3), greedy_cached(prompt, 3)  # warm-up: trace the three functions
runs = {"without cache": [], "with KV cache": []}
for _ in range(REPEATS):
    tokens_uncached, times = greedy_uncached(prompt, STEPS_TO_GENERATE)
    runs["without cache"].append(times)
    tokens_cached, times = greedy_cached(prompt, STEPS_TO_GENERATE)
    runs["with KV cache"].append(times)
assert np.array_equal(tokens_cached, tokens_uncached), "cached and uncached greedy decoding disagree"
per_token = {name: np.min(times, axis=0) for name, times in runs.items()}  # fastest of the repeats
total = {name: float(np.sum(times)) for name, times in per_token.items()}
print(f"cached and uncached greedy decoding give the same {STEPS_TO_GENERATE} tokens: "
      f"{np.array_equal(tokens_cached, tokens_uncached)}")
print("greedy continuation (the model is tiny and briefly trained):")
print(repr("".join(vocabulary[i] for i in tokens_cached[0][:240])))

# %%
context = prompt.shape[1] + np.arange(STEPS_TO_GENERATE)  # tokens the step conditions on
bins = np.array_split(np.arange(STEPS_TO_GENERATE), min(8, STEPS_TO_GENERATE))
print(f"{'context length':>16} | {'ms/token, no cache':>18} | {'ms/token, KV cache':>18} | speed-up")
for b in bins:
    u, c = (1e3 * np.median(per_token[name][b]) for name in ("without cache", "with KV cache"))
    print(f"{context[b[0]]:>7} - {context[b[-1]]:<6} | {u:18.2f} | {c:18.2f} | {u / c:6.1f}x")
last = bins[-1]
ms_last = {name: 1e3 * float(np.median(t[last])) for name, t in per_token.items()}
ms_first = {name: 1e3 * float(np.median(t[bins[0][1:]] if len(bins[0]) > 1 else t[bins[0]]))
            for name, t in per_token.items()}

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for (name, times), color in zip(per_token.items(), ("tab:red", "tab:blue")):
    axes[0].plot(context[1:], 1e3 * times[1:], ".", ms=3, alpha=0.35, color=color)
    centres = [context[b].mean() for b in bins]
    axes[0].plot(centres, [1e3 * np.median(times[b]) for b in bins], "o-", color=color, label=name)
    axes[1].plot(context, np.cumsum(times), color=color, label=f"{name}: {np.sum(times):.2f} s")
axes[0].set(xlabel="context length (tokens already there)", ylabel="ms per generated token",
            title="Time of one greedy step (dots: each step; line: median per bin)")
axes[1].set(xlabel="context length", ylabel="seconds", title=f"Total time to generate {STEPS_TO_GENERATE} tokens")
for ax in axes:
    ax.legend()
plt.show()

# %% [markdown]
# Without the cache a step at context length t re-computes t positions (projections and feed-forward
# O(t), attention O(t^2) in total), so its time grows with t and the whole generation is quadratic. With
# the cache a step computes one position; its attention reads the fixed-size cache, so the time per
# token stays nearly flat. A single parallel call over the whole sequence, for comparison:

# %%
full = tf.constant(tokens_cached[:, :MAX_LENGTH])
next_token_uncached(full)  # same traced function, whole sequence at once
parallel_times = []
for _ in range(5):
    start = time.perf_counter()
    ops.convert_to_numpy(next_token_uncached(full))
    parallel_times.append(time.perf_counter() - start)
parallel_ms = 1e3 * min(parallel_times)
print(f"one parallel forward pass over all {full.shape[1]} positions: {parallel_ms:.1f} ms; "
      f"generating them one by one with the cache: {1e3 * total['with KV cache']:.0f} ms, "
      f"without: {1e3 * total['without cache']:.0f} ms")

# %% [markdown]
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display

display(Markdown(f"""
- **Parallel training:** one call on a (1, {CHECK}) window gives logits for all {CHECK} positions, equal to
  {CHECK} separate prefix calls (max difference {parallel_vs_serial:.1e}); rewriting the second half changes the
  first half's logits by {past_change:.1e}. {STEPS} training steps of {BATCH} x {SEQ} positions took
  {train_time:.1f} s and took the validation loss from {loss_before:.2f} to {loss_after:.2f} nats/char.
- **Serial decoding:** one parallel pass over {MAX_LENGTH} positions takes {parallel_ms:.1f} ms; generating
  {STEPS_TO_GENERATE} tokens greedily takes **{total['without cache']:.2f} s** without the cache and
  **{total['with KV cache']:.2f} s** with it ({total['without cache'] / total['with KV cache']:.1f}x).
- **Per token:** at context {context[bins[0][0]]}-{context[bins[0][-1]]}: {ms_first['without cache']:.1f} ms
  without vs {ms_first['with KV cache']:.1f} ms with the cache; at context {context[last[0]]}-{context[last[-1]]}:
  **{ms_last['without cache']:.1f} ms** without vs **{ms_last['with KV cache']:.1f} ms** with it
  ({ms_last['without cache'] / ms_last['with KV cache']:.1f}x).
- **Same output:** cached and uncached greedy decoding produced identical tokens (asserted).
"""))
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
