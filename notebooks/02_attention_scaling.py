# %% [markdown]
# # 2. Scaled dot-product attention, and why it divides by sqrt(d_k)
#
# **Step 3** of the line RNN -> LSTM -> **attention** -> self-attention -> multi-head attention ->
# Transformer -> GPT / BERT / ViT / image GPT. An RNN squeezes the past into one state vector; attention
# lets every position read every other position directly:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V$$
#
# The claims (see `keras_tx/layers/attention.py`):
#
# 1. What it computes: each output row is an average of the value rows, weighted by how well that position's
#    query matches each key. Shown on a real sentence with `keras_tx.layers.scaled_dot_product_attention`
#    and `keras_tx.layers.SelfAttention`.
# 2. Without the 1/sqrt(d_k), the dot products of d_k-dimensional vectors grow like sqrt(d_k), the softmax
#    saturates (one weight near 1, the rest near 0: entropy -> 0) and the gradient reaching the logits
#    vanishes. With it, both stay put as d_k grows.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, SMOKE, keras, np, ops, plt, tf, time

from keras_tx.layers import SelfAttention, masked_softmax, scaled_dot_product_attention

# %% [markdown]
# ## What softmax(QK^T / sqrt(d_k)) V computes, on a real sentence
#
# Each distinct word gets a random but fixed vector (seeded); the sentence is the sequence of its words'
# vectors X. First the bare operation with Q = K = V = X: a word's query matches its own key best, and
# equally well the key of another occurrence of the same word.

# %%
SENTENCE = "to be or not to be that is the question"
words = SENTENCE.split()
distinct = sorted(set(words))
D_MODEL = 16
table = np.random.default_rng(0).normal(size=(len(distinct), D_MODEL)).astype("float32")
X = table[[distinct.index(w) for w in words]]  # (T, d): one row per word of the sentence

output, weights = scaled_dot_product_attention(X[None], X[None], X[None])  # batch of one
output, weights = ops.convert_to_numpy(output)[0], ops.convert_to_numpy(weights)[0]

# The same thing by hand, in numpy: scores, row-wise softmax, weighted average of the values.
scores = X @ X.T / np.sqrt(D_MODEL)
by_hand = np.exp(scores - scores.max(axis=1, keepdims=True))
by_hand /= by_hand.sum(axis=1, keepdims=True)
np.testing.assert_allclose(weights, by_hand, rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(output, by_hand @ X, rtol=1e-4, atol=1e-5)
print("weights and output equal the numpy computation; every row sums to", weights.sum(axis=1).round(6)[:3], "...")
print("output of 'to' (position 0) vs 'to' (position 4): max |difference| =",
      float(np.abs(output[0] - output[4]).max()), "(no positions: the same word gives the same output)")


def heat_map(ax, matrix, title, labels=words):
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
    ax.grid(False)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if matrix[i, j] > 0.5 else "white")
    return image


fig, ax = plt.subplots(figsize=(6.5, 5.5))
fig.colorbar(heat_map(ax, weights, "softmax(X X^T / sqrt(d)), Q = K = V = X"), ax=ax)
plt.show()

# %% [markdown]
# Now `SelfAttention`, one head with learned query/key/value projections (here at their random
# initialisation), bidirectional and with the causal mask that a decoder uses (notebook 4).

# %%
keras.utils.set_random_seed(0)
attention = SelfAttention(D_MODEL)
_, bidirectional = attention(X[None], return_attention_scores=True)
causal_attention = SelfAttention(D_MODEL, use_causal_mask=True)
causal_attention(X[None])
causal_attention.set_weights(attention.get_weights())  # the same projections, only the mask differs
_, causal = causal_attention(X[None], return_attention_scores=True)
bidirectional, causal = ops.convert_to_numpy(bidirectional)[0], ops.convert_to_numpy(causal)[0]
assert np.all(np.triu(causal, k=1) == 0), "a causal row must give zero weight to later words"

fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
heat_map(axes[0], bidirectional, "SelfAttention (random projections)")
heat_map(axes[1], causal, "SelfAttention(use_causal_mask=True)")
plt.show()

# %% [markdown]
# ## Without the scale the softmax saturates as d_k grows
#
# Queries and keys with independent unit-variance entries, as a layer's projections produce at
# initialisation: `q . k` is a sum of d_k products of unit variance, so its standard deviation is sqrt(d_k).
# We compute the attention with the scale (1/sqrt(d_k)) and without it (scale = 1), with our
# `masked_softmax`, check the output equals `scaled_dot_product_attention(..., scale=...)`, and measure:
#
# - the entropy of each attention row (ln S = uniform over the S keys; 0 = all weight on one key),
# - the largest weight of each row,
# - the norm of the gradient reaching the logits, for a loss `sum(output * g)` with a fixed random `g`.

# %%
D_KS = [4, 64] if SMOKE else [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
BATCH, T, S, D_V = (4, 8, 8, 8) if SMOKE else (64, 16, 16, 16)
rng = np.random.default_rng(0)
STATS = ("logit_std", "entropy", "max_weight", "grad_median", "grad_mean")
stats = {scaled: {k: [] for k in STATS} for scaled in (True, False)}
examples = {}
for d_k in D_KS:
    q = tf.constant(rng.normal(size=(BATCH, T, d_k)).astype("float32"))
    k = tf.constant(rng.normal(size=(BATCH, S, d_k)).astype("float32"))
    v = tf.constant(rng.normal(size=(BATCH, S, D_V)).astype("float32"))
    g = tf.constant(rng.normal(size=(BATCH, T, D_V)).astype("float32"))  # a fixed upstream gradient
    for scaled in (True, False):
        scale = 1 / np.sqrt(d_k) if scaled else 1.0
        with tf.GradientTape() as tape:
            logits = tf.matmul(q, k, transpose_b=True) * scale  # (B, T, S)
            tape.watch(logits)
            w = masked_softmax(logits)
            out = tf.matmul(w, v)
            loss = tf.reduce_sum(out * g)
        grad_logits = tape.gradient(loss, logits)
        reference, _ = scaled_dot_product_attention(q, k, v, scale=scale)
        np.testing.assert_allclose(out.numpy(), ops.convert_to_numpy(reference), rtol=1e-4, atol=1e-4)
        w = w.numpy()
        entropy = -np.sum(w * np.log(np.maximum(w, 1e-30)), axis=-1)
        s = stats[scaled]
        s["logit_std"].append(float(np.std(logits.numpy())))
        s["entropy"].append(float(entropy.mean()))
        s["max_weight"].append(float(w.max(axis=-1).mean()))
        row_grads = np.linalg.norm(grad_logits.numpy(), axis=-1)  # one norm per attention row
        s["grad_median"].append(float(np.median(row_grads)))
        s["grad_mean"].append(float(row_grads.mean()))
        examples[(d_k, scaled)] = w[0]

print(f"{'d_k':>5} | {'logit std':>17} | {'row entropy (nats)':>19} | {'max weight':>13} | "
      f"{'|dL/dlogits| of a row: median':>29} | {'mean':>19}")
print(f"{'':>5} | {'scaled':>8} {'raw':>8} | {'scaled':>9} {'raw':>9} | {'scaled':>6} {'raw':>6} | "
      f"{'scaled':>14} {'raw':>14} | {'scaled':>9} {'raw':>9}")
for i, d_k in enumerate(D_KS):
    a, b = stats[True], stats[False]
    print(f"{d_k:>5} | {a['logit_std'][i]:8.2f} {b['logit_std'][i]:8.2f} | {a['entropy'][i]:9.3f} "
          f"{b['entropy'][i]:9.3f} | {a['max_weight'][i]:6.3f} {b['max_weight'][i]:6.3f} | "
          f"{a['grad_median'][i]:14.2e} {b['grad_median'][i]:14.2e} | {a['grad_mean'][i]:9.2e} {b['grad_mean'][i]:9.2e}")
print(f"uniform attention over S = {S} keys has entropy ln S = {np.log(S):.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for scaled, color, label in ((True, "tab:blue", "softmax(QK^T / sqrt(d_k))"), (False, "tab:red", "softmax(QK^T)")):
    axes[0].semilogx(D_KS, stats[scaled]["entropy"], "o-", color=color, label=label, base=2)
    axes[1].semilogx(D_KS, stats[scaled]["max_weight"], "o-", color=color, label=label, base=2)
    axes[2].semilogx(D_KS, stats[scaled]["grad_median"], "o-", color=color, label=label + ", median row", base=2)
    axes[2].semilogx(D_KS, stats[scaled]["grad_mean"], "s--", color=color, label=label + ", mean", base=2,
                     alpha=0.6)
axes[0].axhline(np.log(S), color="gray", ls=":", label=f"uniform: ln {S}")
axes[0].set(xlabel="d_k", ylabel="mean entropy of an attention row (nats)", title="Entropy of the attention rows")
axes[1].set(xlabel="d_k", ylabel="mean largest weight of a row", title="How peaked the rows are")
axes[2].set(xlabel="d_k", ylabel="||dL/dlogits|| of an attention row", title="Gradient reaching the logits",
            yscale="log")
for ax in axes:
    ax.legend(fontsize=8)
plt.show()

largest = D_KS[-1]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, scaled in zip(axes, (True, False)):
    image = ax.imshow(examples[(largest, scaled)], cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"softmax(QK^T{' / sqrt(d_k)' if scaled else ''})", xlabel="key", ylabel="query")
    ax.grid(False)
fig.colorbar(image, ax=axes)
fig.suptitle(f"Attention weights of {T} random queries over {S} random keys at d_k = {largest}", y=1.03)
plt.show()

# %% [markdown]
# The softmax's Jacobian is `diag(w) - w w^T`: when one weight is near 1 and the rest near 0 it is near
# zero everywhere, so almost no gradient reaches the logits, and through them the query and key projections.
# The scale keeps the logits at unit standard deviation whatever d_k, so the rows stay soft and trainable.
#
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display

a, b, i = stats[True], stats[False], len(D_KS) - 1
display(Markdown(f"""
- **What it computes:** on "{SENTENCE}", `scaled_dot_product_attention` equals the numpy computation
  softmax(X X^T / sqrt(d)) X; the two occurrences of "to" get the same weight from each other's query
  ({weights[0, 4]:.2f} vs {weights[0, 0]:.2f} on itself) and identical outputs.
- **Logit scale:** at d_k = {D_KS[i]} the logits' standard deviation is **{b['logit_std'][i]:.1f}** without the
  scale (~sqrt(d_k) = {np.sqrt(D_KS[i]):.1f}) and **{a['logit_std'][i]:.2f}** with it.
- **Saturation:** mean row entropy at d_k = {D_KS[0]} -> {D_KS[i]}: scaled **{a['entropy'][0]:.2f} -> {a['entropy'][i]:.2f}**
  nats, unscaled **{b['entropy'][0]:.2f} -> {b['entropy'][i]:.2f}** nats (uniform: ln {S} = {np.log(S):.2f});
  the largest weight of a row is {a['max_weight'][i]:.2f} scaled vs **{b['max_weight'][i]:.2f}** unscaled.
- **Gradient reaching the logits** (norm per attention row) at d_k = {D_KS[i]}: median row
  **{a['grad_median'][i]:.2e}** scaled vs **{b['grad_median'][i]:.2e}** unscaled
  ({a['grad_median'][i] / b['grad_median'][i]:,.0f}x smaller without the scale; at d_k = {D_KS[0]}:
  {a['grad_median'][0] / b['grad_median'][0]:.1f}x). The mean over rows falls less,
  {a['grad_mean'][i]:.2f} vs {b['grad_mean'][i]:.2f} ({a['grad_mean'][i] / b['grad_mean'][i]:.1f}x), because the few
  rows that happen not to saturate carry most of the remaining gradient.
"""))
if not SMOKE:
    assert b["entropy"][i] < 0.5 * a["entropy"][i] and b["grad_median"][i] < 0.01 * a["grad_median"][i]
    assert b["grad_mean"][i] < b["grad_mean"][0] and abs(np.log(a["grad_mean"][i] / a["grad_mean"][0])) < 1
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
