# %% [markdown]
# # 3. Multi-head attention: the heads of a trained model attend to different things
#
# **Step 5** of the line RNN -> LSTM -> attention -> self-attention -> **multi-head attention** ->
# Transformer -> GPT / BERT / ViT / image GPT. One attention head computes one weighted average per
# position, so it can follow one relation at a time. Multi-head attention runs `num_heads` of them side by
# side, each with its own (smaller) query/key/value projections, and concatenates their outputs
# (`keras_tx.layers.MultiHeadAttention`). The claims, on two trained models shipped in `saved_models/`:
#
# 1. In the character GPT `gpt_shakespeare` (4 blocks x 4 heads, trained on tiny_shakespeare) the 16 heads
#    attend to different things: measured on held-out text, heads differ several-fold in how much weight
#    they put on the previous character, on themselves, on earlier occurrences of their own character, on
#    spaces and punctuation, and in how far back they look.
# 2. They are not interchangeable: removing one head at a time (zeroing its slice of the output
#    projection) raises the validation loss by very different amounts.
# 3. In the BERT masked LM `bert_mlm` (trained on SST-2 sentences) heads look both
#    backward and forward, which no GPT head can (the causal mask), and differ from each other as well.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, REPO, SMOKE, np, ops, plt, time

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, imported by keras-hub
from keras_tx import tasks
from keras_tx.data import encode_texts

# %% [markdown]
# ## The trained GPT and its held-out text
#
# `keras_tx.tasks.load` gives the text-generation task: the model, its character tokenizer and its metadata. It was
# trained on the first 90% of tiny_shakespeare; everything below reads the last 10%.

# %%
gpt_task = tasks.load(str(REPO / "saved_models" / "gpt_shakespeare"))
gpt, char_tokenizer, gpt_metadata = gpt_task.model, gpt_task.tokenizer, gpt_task.metadata
NUM_LAYERS, NUM_HEADS, CONTEXT = gpt.num_layers, gpt.num_heads, gpt.max_length
print(f"gpt_shakespeare: {NUM_LAYERS} blocks x {NUM_HEADS} heads of width {gpt.hidden_dim // NUM_HEADS}, "
      f"context {CONTEXT}, {gpt.count_params():,} parameters; trained on {gpt_metadata['dataset']}, "
      f"validation loss {gpt_metadata['metrics']['val_loss']:.3f} nats/char")

# %%
from nb_setup import load_text, char_ids, windows


text, text_source = load_text()
vocabulary, char_to_id, train_ids, val_ids = char_ids(text)

# %%
known = set(char_tokenizer.vocabulary)
val_text = "".join(c for c in (vocabulary[i] for i in val_ids) if c in known)
if len(val_text) < len(val_ids):
    print(f"dropped {len(val_ids) - len(val_text):,} validation characters the model has never seen")
gpt_val_ids = np.asarray(char_tokenizer.encode(val_text), "int32")
print(f"{len(gpt_val_ids):,} held-out characters, e.g. {val_text[:60]!r}")


# %% [markdown]
# ## Reading the attention weights of every head
#
# `GPT.hidden_states` runs token + position embeddings through the blocks. The helper below runs the very same
# layers, asking each `TransformerDecoderBlock` for its `(batch, heads, T, T)` attention weights
# (`return_attention_scores=True`), and checks that its logits equal the model's own.

# %%
def gpt_attention(model, token_ids):
    """(list of num_layers numpy (B, heads, T, T) attention weights, logits (B, T, vocabulary))."""
    x = model.token_embedding(token_ids)  # (B, T, D)
    x = x + model.position_embedding(x)
    weights = []
    for block in model.blocks:
        x, w = block(x, return_attention_scores=True)  # pre-LN causal self-attention, then feed-forward
        weights.append(ops.convert_to_numpy(w))
    logits = model.token_embedding(model.layer_norm(x), reverse=True)  # tied output projection
    return weights, ops.convert_to_numpy(logits)


x_check = windows(gpt_val_ids, CONTEXT, count=2)[0]
check_weights, check_logits = gpt_attention(gpt, x_check)
replay_error = float(np.abs(check_logits - ops.convert_to_numpy(gpt(x_check))).max())
print(f"max |helper logits - model logits| = {replay_error:.1e}; weights per block: {check_weights[0].shape}")
assert replay_error < 1e-4
assert all(np.all(np.triu(w, k=1) == 0) for w in check_weights), "a GPT head attended to the future"

# %% [markdown]
# ## All 16 heads on one line of held-out text
#
# Row *t* of a map is where the character at position *t* looks (columns: the characters it may see, itself
# and the ones before it). A square-root colour scale, so that weak but wide patterns stay visible.

# %%
SNIPPET = 48
start = val_text.find("\n", len(val_text) // 3) + 1  # the start of a line, a third into the held-out text
snippet_ids = gpt_val_ids[None, start : start + SNIPPET]
snippet_chars = [repr(c)[1:-1] if c in "\n\t" else c for c in val_text[start : start + SNIPPET]]
snippet_weights, _ = gpt_attention(gpt, snippet_ids)
print(repr(val_text[start : start + SNIPPET]))

from matplotlib.colors import PowerNorm

fig, axes = plt.subplots(NUM_LAYERS, NUM_HEADS, figsize=(2.6 * NUM_HEADS, 2.6 * NUM_LAYERS))
axes = np.asarray(axes).reshape(NUM_LAYERS, NUM_HEADS)
for layer in range(NUM_LAYERS):
    for head in range(NUM_HEADS):
        ax = axes[layer, head]
        ax.imshow(snippet_weights[layer][0, head], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
        ax.set_title(f"block {layer} head {head}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
fig.suptitle(f"gpt_shakespeare: attention of each head over {SNIPPET} held-out characters "
             "(rows: query, columns: key)", y=1.0)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What each head attends to, measured over held-out text
#
# Over many windows of validation text, for queries at positions 16..63 (the first positions have so few
# keys that every head looks alike there), per head:
#
# - **itself**, **previous char**: the weight on key t and t - 1;
# - **same char**: the total weight on earlier occurrences of the query's own character (not itself);
# - **space/punct.**: the total weight on spaces, newlines and punctuation (compare with their share of the
#   keys, printed below);
# - **look-back**: the weighted mean distance t - j to the keys;
# - **entropy** of the row (ln of the number of keys if uniform; 0 if all on one key).

# %%
NUM_WINDOWS = 4 if SMOKE else 384
x_stats, _ = windows(gpt_val_ids, CONTEXT, count=NUM_WINDOWS)
queries = np.arange(16, CONTEXT)
distance = np.maximum(queries[:, None] - np.arange(CONTEXT)[None, :], 0)  # (Q, T): t - j, 0 for the future
separator_ids = np.array([i for i, c in enumerate(char_tokenizer.vocabulary) if not c.isalnum()])
STATS = ["itself", "previous char", "same char", "space/punct.", "look-back (chars)", "entropy (nats)"]
stats = np.zeros((NUM_LAYERS, NUM_HEADS, len(STATS)))
offset_profile = np.zeros((NUM_LAYERS, NUM_HEADS, 16))  # weight on keys t, t-1, ..., t-15
for chunk in range(0, NUM_WINDOWS, 64):
    x = x_stats[chunk : chunk + 64]
    is_separator = np.isin(x, separator_ids)[:, None, None, :]  # (B, 1, 1, T)
    # (B, 1, Q, T): key j holds the query's character and comes before it
    same_char = ((x[:, queries, None] == x[:, None, :]) & (distance > 0)[None])[:, None]
    for layer, w in enumerate(gpt_attention(gpt, x)[0]):
        w = w[:, :, queries, :].astype("float64")  # (B, N, Q, T)
        rows = {
            "itself": w[..., np.arange(len(queries)), queries],
            "previous char": w[..., np.arange(len(queries)), queries - 1],
            "same char": (w * same_char).sum(-1),
            "space/punct.": (w * is_separator).sum(-1),
            "look-back (chars)": (w * distance).sum(-1),
            "entropy (nats)": -(w * np.log(np.maximum(w, 1e-12))).sum(-1),
        }
        for s, name in enumerate(STATS):
            stats[layer, :, s] += rows[name].sum(axis=(0, 2))
        for k in range(16):
            offset_profile[layer, :, k] += w[..., np.arange(len(queries)), queries - k].sum(axis=(0, 2))
stats /= NUM_WINDOWS * len(queries)
offset_profile /= NUM_WINDOWS * len(queries)
separator_share = float(np.mean([np.isin(x_stats[:, : t + 1], separator_ids).mean() for t in queries]))
same_share = float(np.mean([((x_stats[:, :t] == x_stats[:, t : t + 1]).sum(1) / (t + 1)).mean() for t in queries]))
uniform_lookback = float(np.mean(queries / 2))
uniform_entropy = float(np.mean(np.log(queries + 1)))

head_names = [f"block {l} head {h}" for l in range(NUM_LAYERS) for h in range(NUM_HEADS)]
table = stats.reshape(-1, len(STATS))
print(f"{'':>14} | " + " | ".join(f"{name:>17}" for name in STATS))
for name, row in zip(head_names, table):
    print(f"{name:>14} | " + " | ".join(f"{v:17.3f}" for v in row))
print(f"{'uniform weights':>14} | {'':>17} | {'':>17} | {same_share:17.3f} | {separator_share:17.3f} | "
      f"{uniform_lookback:17.3f} | {uniform_entropy:17.3f}")
spread = {name: (table[:, s].min(), table[:, s].max()) for s, name in enumerate(STATS)}
for name, (low, high) in spread.items():
    print(f"{name:>18}: from {low:.3f} ({head_names[int(np.argmin(table[:, STATS.index(name)]))]}) "
          f"to {high:.3f} ({head_names[int(np.argmax(table[:, STATS.index(name)]))]})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
scaled = (table - table.min(0)) / np.maximum(table.max(0) - table.min(0), 1e-12)  # each column to 0..1
axes[0].imshow(scaled, cmap="magma", aspect="auto")
for i in range(table.shape[0]):
    for j in range(table.shape[1]):
        axes[0].text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=8,
                     color="black" if scaled[i, j] > 0.5 else "white")
axes[0].set_xticks(range(len(STATS)), STATS, rotation=20)
axes[0].set_yticks(range(len(head_names)), head_names)
axes[0].set_title("What each head attends to (colour: rank within the column)")
axes[0].grid(False)
for layer in range(NUM_LAYERS):
    for head in range(NUM_HEADS):
        axes[1].plot(range(16), offset_profile[layer, head], "o-" if layer == 0 else "-", ms=3,
                     color=plt.cm.tab20(4 * layer + head), label=f"block {layer} head {head}")
axes[1].set(xlabel="distance t - j of the key (0 = itself)", ylabel="mean attention weight", yscale="log",
            title="Attention by distance, one line per head")
axes[1].legend(fontsize=7, ncol=2)
plt.tight_layout()
plt.show()

# %% [markdown]
# Three of them up close on the same line of text, the heads that put the most weight on the previous
# character, on spaces and punctuation, and that look furthest back:

# %%
chosen = []
for name in ("previous char", "space/punct.", "look-back (chars)"):
    for index in np.argsort(-table[:, STATS.index(name)]):
        if index not in chosen:
            chosen.append(int(index))
            break
fig, axes = plt.subplots(1, 3, figsize=(18, 6))
for ax, index, why in zip(axes, chosen, ("most on the previous char", "most on space/punct.", "looks furthest back")):
    layer, head = divmod(index, NUM_HEADS)
    ax.imshow(snippet_weights[layer][0, head], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
    ax.set_xticks(range(SNIPPET), snippet_chars, fontsize=6)
    ax.set_yticks(range(SNIPPET), snippet_chars, fontsize=6)
    ax.set(title=f"block {layer} head {head}: {why}", xlabel="key", ylabel="query")
    ax.grid(False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Removing one head at a time
#
# Each block's output projection has a `(heads, head_dim, hidden)` kernel, one slice per head. Zeroing one
# slice removes that head's contribution and nothing else; we measure the validation loss of the model without
# it, then put the slice back.

# %%
x_eval, y_eval = windows(gpt_val_ids, CONTEXT, count=4 if SMOKE else 256)


def validation_loss():
    logits = gpt.predict(x_eval, batch_size=64, verbose=0).astype("float64")  # (B, T, V)
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    return float(np.mean(log_z - np.take_along_axis(logits, y_eval[..., None], -1)[..., 0]))


base_loss = validation_loss()
loss_increase = np.zeros((NUM_LAYERS, NUM_HEADS))
for layer, block in enumerate(gpt.blocks):
    kernel = block.self_attention.output_dense.kernel  # (heads, head_dim, hidden)
    original = ops.convert_to_numpy(kernel)
    for head in range(NUM_HEADS):
        ablated = original.copy()
        ablated[head] = 0.0
        kernel.assign(ablated)
        loss_increase[layer, head] = validation_loss() - base_loss
    kernel.assign(original)
assert abs(validation_loss() - base_loss) < 1e-6, "the weights were not restored"
print(f"validation loss of the whole model on {x_eval.size:,} characters: {base_loss:.4f} nats/char")
print("loss increase without one head (rows: blocks, columns: heads):")
print(np.array2string(loss_increase, precision=4, suppress_small=True))

fig, ax = plt.subplots(figsize=(6, 4.5))
image = ax.imshow(loss_increase, cmap="Reds")
for (layer, head), value in np.ndenumerate(loss_increase):
    ax.text(head, layer, f"{value:+.3f}", ha="center", va="center", fontsize=9)
ax.set(xticks=range(NUM_HEADS), yticks=range(NUM_LAYERS), xlabel="head", ylabel="block",
       title="Validation loss increase when one head is removed")
ax.grid(False)
fig.colorbar(image, ax=ax, label="nats / char")
plt.show()

# %% [markdown]
# ## BERT: heads that look both ways
#
# `bert_mlm` is a small BERT (its size is printed below) trained as a masked language model on SST-2 sentences
# (loaded with `keras_tx.tasks.load`). `BERT.attention_scores` returns every block's weights. Its
# encoder blocks have no causal mask, so a word can attend to the words after it.

# %%
from nb_setup import load_sentences

# %%
bert_task = tasks.load(str(REPO / "saved_models" / "bert_mlm"))
bert_mlm, bert_metadata = bert_task.model, bert_task.metadata
bert, wordpiece = bert_mlm.backbone, bert_mlm.tokenizer
print(f"bert_mlm: {bert.num_layers} blocks x {bert.num_heads} heads, hidden {bert.hidden_dim}, "
      f"{bert_mlm.count_params():,} parameters; masked-token accuracy "
      f"{bert_metadata['metrics']['val_masked_accuracy']:.3f} on {bert_metadata['dataset']}")
(_, _), (dev_sentences, _), sentence_source = load_sentences()
sentences = [s for s in dev_sentences if 6 <= len(s.split()) <= 30][: 8 if SMOKE else 512]
inputs = encode_texts(sentences, wordpiece, bert.max_length)
bert_weights = bert.attention_scores(inputs)  # num_layers x (B, heads, T, T)
real = inputs["padding_mask"].astype(bool)  # (B, T)
print(f"{len(sentences)} held-out sentences from {sentence_source}, {real.sum():,} tokens with [CLS] and [SEP]")

token_ids = inputs["token_ids"]
T = token_ids.shape[1]
cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
position = np.arange(T)
# Queries: the words (real tokens other than [CLS] and [SEP]), keys: everything real.
is_word = real & (token_ids != cls_id) & (token_ids != sep_id)
BERT_STATS = ["itself", "previous", "next", "[CLS]", "[SEP]", "all before", "all after", "entropy (nats)"]
bert_table = []
for layer, w in enumerate(bert_weights):
    w = w.astype("float64")  # (B, N, T, T)
    for head in range(bert.num_heads):
        wh = w[:, head]  # (B, T, T)
        offset = position[None, :] - position[:, None]  # (T, T): j - t
        values = {
            "itself": (wh * (offset == 0)).sum(-1),
            "previous": (wh * (offset == -1)).sum(-1),
            "next": (wh * (offset == 1)).sum(-1),
            "[CLS]": (wh * (token_ids == cls_id)[:, None, :]).sum(-1),
            "[SEP]": (wh * (token_ids == sep_id)[:, None, :]).sum(-1),
            "all before": (wh * (offset < 0)).sum(-1),
            "all after": (wh * (offset > 0)).sum(-1),
            "entropy (nats)": -(wh * np.log(np.maximum(wh, 1e-12))).sum(-1),
        }
        bert_table.append([values[name][is_word].mean() for name in BERT_STATS])
bert_table = np.array(bert_table)
bert_heads = [f"block {l} head {h}" for l in range(bert.num_layers) for h in range(bert.num_heads)]
print(f"{'':>14} | " + " | ".join(f"{name:>14}" for name in BERT_STATS))
for name, row in zip(bert_heads, bert_table):
    print(f"{name:>14} | " + " | ".join(f"{v:14.3f}" for v in row))
gpt_after = max(float(np.triu(w, k=1).sum(-1).max()) for w in check_weights)
print(f"for comparison, the largest weight any GPT head puts on later characters: {gpt_after}")

# %%
example = min(range(len(sentences)), key=lambda i: abs(int(real[i].sum()) - 16))  # a sentence of ~16 tokens
length = int(real[example].sum())
labels = [wordpiece.id_to_token(int(i)) for i in token_ids[example, :length]]
fig, axes = plt.subplots(bert.num_layers, bert.num_heads, figsize=(3.6 * bert.num_heads, 3.6 * bert.num_layers),
                         squeeze=False)
for ax, (index, name) in zip(axes.flat, enumerate(bert_heads)):
    layer, head = divmod(index, bert.num_heads)
    ax.imshow(bert_weights[layer][example, head, :length, :length], cmap="viridis", norm=PowerNorm(0.5, 0, 1))
    ax.set_xticks(range(length), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(length), labels, fontsize=7)
    ax.set(title=f"bert_mlm {name}", xlabel="key")
    ax.grid(False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display


def extreme(name, table=table, names=head_names, stat_names=STATS):
    column = table[:, stat_names.index(name)]
    low, high = int(np.argmin(column)), int(np.argmax(column))
    return f"{column[low]:.2f} ({names[low]}) to {column[high]:.2f} ({names[high]})"


most, least = np.unravel_index(np.argmax(loss_increase), loss_increase.shape), \
    np.unravel_index(np.argmin(loss_increase), loss_increase.shape)
display(Markdown(f"""
- **The GPT's {NUM_LAYERS * NUM_HEADS} heads attend to different things** (means over {NUM_WINDOWS} windows of
  held-out {text_source}, queries 16..{CONTEXT - 1}): weight on the previous character from
  {extreme('previous char')}; on itself from {extreme('itself')}; on earlier occurrences of its own
  character from {extreme('same char')} (uniform weights: {same_share:.2f}); on spaces and punctuation from {extreme('space/punct.')} (their share of the
  keys: {separator_share:.2f}); mean look-back from {extreme('look-back (chars)')} characters (uniform
  weights: {uniform_lookback:.1f}); entropy from {extreme('entropy (nats)')} nats (uniform: {uniform_entropy:.2f}).
- **They matter differently:** the validation loss ({base_loss:.3f} nats/char) rises by
  **{loss_increase[most]:+.3f}** without block {most[0]} head {most[1]} and by {loss_increase[least]:+.4f} without
  block {least[0]} head {least[1]}; the median head costs {np.median(loss_increase):+.4f}.
- **BERT's heads look both ways:** on {len(sentences)} held-out {sentence_source} sentences, the weight a word puts
  on the words after it ranges from {extreme('all after', bert_table, bert_heads, BERT_STATS)} (every GPT head:
  {gpt_after:.0f}, by the causal mask); on the next token from {extreme('next', bert_table, bert_heads, BERT_STATS)},
  on the previous one from {extreme('previous', bert_table, bert_heads, BERT_STATS)}, on [SEP] from
  {extreme('[SEP]', bert_table, bert_heads, BERT_STATS)}.
"""))
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
