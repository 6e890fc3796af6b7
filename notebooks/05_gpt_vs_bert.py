# %% [markdown]
# # 5. GPT vs BERT on the same text: one direction or both
#
# **Step 7 and 8** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
# Transformer -> **GPT / BERT** -> ViT -> image GPT. Both are stacks of the same Transformer block; they
# differ in the attention mask and the training task:
#
# - **GPT** (`keras_tx.models.GPT`): a causal mask, position t sees positions <= t; trained to predict the
#   next token. It can generate text left to right, but never uses what comes after a position.
# - **BERT** (`keras_tx.models.BERT` + `BERTMaskedLM`): no causal mask, every position sees the whole
#   sequence; trained to fill in masked tokens (15% of them: 80% `[MASK]`, 10% random, 10% unchanged).
#
# We train one of each, the same size, on the same characters (SST-2 movie-review sentences, in windows of
# 16 characters), with the same batches, optimizer and number of steps, and measure the claims:
#
# 1. Filling a blank with the text on **both sides** (BERT) is more accurate than predicting the same
#    character from the **left side only** (GPT), most of all where the left side says least: the first
#    letter of a word.
# 2. But BERT is no generator: given only the left side, as generation needs, it is far worse than GPT, and
#    its left-to-right samples show it.
# 3. For a whole-sentence task (SST-2 sentiment, a logistic regression on the frozen features of each
#    model), bidirectional features are expected to do better: measured below.
#
# A cost shows on the way: BERT learns from the 15% of positions it masks, and a `[MASK]` carries no
# information of its own, so it gains little until its heads learn to look at the neighbours. It starts slower
# than GPT, whose input at position t is the character before its target, so that it learns bigrams at once;
# the learning curves below show BERT catching up.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, SMOKE, keras, np, ops, plt, time

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, imported by keras-hub
from keras_tx.data import CharTokenizer
from keras_tx.layers import causal_mask
from keras_tx.models import BERT, GPT, BERTMaskedLM
from keras_tx.training import exclude_non_matrices, make_optimizer

# %%
from nb_setup import load_sentences

# %%
(train_sentences, train_labels), (dev_sentences, dev_labels), text_source = load_sentences()
# One character stream per split, sentences separated by newlines.
train_text, dev_text = "\n".join(train_sentences), "\n".join(dev_sentences)
tokenizer = CharTokenizer.from_text(train_text)
known = set(tokenizer.vocabulary)
clean = lambda s: "".join(c for c in s if c in known)  # the few characters never seen in training go
train_ids = np.asarray(tokenizer.encode(train_text), "int32")
dev_ids = np.asarray(tokenizer.encode(clean(dev_text)), "int32")
VOCABULARY = tokenizer.vocabulary_size
MASK_ID = VOCABULARY  # BERT's one extra token
print(f"{VOCABULARY} distinct characters; {len(train_ids):,} training characters, {len(dev_ids):,} held-out")
print(repr(train_text[:150]))

# %%
from nb_setup import windows

# %% [markdown]
# ## Two models, the same size, the same blocks
#
# Both: 2 blocks, 4 heads, width 128, feed-forward 512, no dropout, output layer tied to the token embedding,
# trained with the project's recipe (`keras_tx.training.make_optimizer`: AdamW, warm-up, cosine decay).
# GPT's blocks are pre-LN `TransformerDecoderBlock`s (causal); BERT's are post-LN `TransformerEncoderBlock`s
# (a padding mask only), plus BERT's segment embedding, pooler and masked-LM head (a dense layer and a layer
# norm before the tied output), hence its few more parameters.

# %%
SEQ = 8 if SMOKE else 16
BATCH = 8 if SMOKE else 32
STEPS = 4 if SMOKE else 2400
EVAL_EVERY = STEPS if SMOKE else 400
NUM_PREDICTIONS = max(1, round(0.15 * SEQ))  # masked positions per BERT window
size = dict(num_layers=2 if not SMOKE else 1, num_heads=4, hidden_dim=128 if not SMOKE else 32)
size["intermediate_dim"] = 4 * size["hidden_dim"]

keras.utils.set_random_seed(0)
gpt = GPT(vocabulary_size=VOCABULARY, max_length=SEQ, **size)
bert_mlm = BERTMaskedLM(BERT(vocabulary_size=VOCABULARY + 1, max_length=SEQ, dropout=0.0, **size))
bert = bert_mlm.backbone
for model in (gpt, bert_mlm):
    optimizer = make_optimizer(STEPS, learning_rate=1e-3, min_learning_rate=1e-4,
                               warmup_steps=min(100, STEPS // 10), weight_decay=0.01)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    exclude_non_matrices(optimizer, model)
print(f"GPT:  {gpt.count_params():,} parameters")
print(f"BERT: {bert_mlm.count_params():,} parameters (backbone {bert.count_params():,})")


# %% [markdown]
# ## Training on the same windows
#
# The same random windows of the training stream for both. GPT learns from every position (the next
# character); BERT from the 15% it masks, with BERT's 80/10/10 corruption.
#
# Every 400 steps both are scored on the same task, on held-out text: for each window one position *k* is
# drawn (at least a quarter of the window from either end) and its character predicted, by GPT from the
# characters before *k* (its logits at *k* - 1, all it can ever use), by BERT from the whole window with
# `[MASK]` at *k*.

# %%
def mask_for_bert(tokens, rng, num_predictions=NUM_PREDICTIONS):
    """BERT's masking: `num_predictions` distinct positions per window; 80% -> [MASK], 10% -> a random
    character, 10% unchanged. Returns (corrupted tokens, positions, original characters there)."""
    positions = np.sort(np.argsort(rng.random(tokens.shape), axis=1)[:, :num_predictions], axis=1)
    labels = np.take_along_axis(tokens, positions, axis=1)
    draw = rng.random(positions.shape)
    random_chars = rng.integers(0, VOCABULARY, positions.shape)
    replacement = np.where(draw < 0.8, MASK_ID, np.where(draw < 0.9, random_chars, labels))
    corrupted = tokens.copy()
    np.put_along_axis(corrupted, positions, replacement, axis=1)
    return corrupted, positions, labels


def bert_inputs(tokens, positions=None, padding_mask=None):
    tokens = np.asarray(tokens, "int32")
    inputs = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
              "padding_mask": np.ones_like(tokens) if padding_mask is None else padding_mask.astype("int32")}
    if positions is not None:
        inputs["mask_positions"] = np.asarray(positions, "int32")
    return inputs


# BERT's pooler reads the [CLS] position for sentence tasks; masked-LM training leaves it untouched.
warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
rng = np.random.default_rng(0)
x_train, y_train = windows(train_ids, SEQ, STEPS * BATCH, rng)
masked_train, positions_train, labels_train = mask_for_bert(x_train, rng)
x_val, y_val = windows(dev_ids, SEQ, count=16 if SMOKE else 1024)
masked_val, positions_val, labels_val = mask_for_bert(x_val, np.random.default_rng(1))
# The blanks: every held-out window, one position k each.
x_blank, _ = windows(dev_ids, SEQ, count=16 if SMOKE else None)
k = np.random.default_rng(2).integers(SEQ // 4, SEQ - SEQ // 4, size=len(x_blank))
rows_blank = np.arange(len(x_blank))
truth = x_blank[rows_blank, k]
blanked = x_blank.copy()
blanked[rows_blank, k] = MASK_ID
QUICK = slice(0, 1024)  # the learning curves use the first 1024 blanks


def gpt_blank_logits(count=None):
    return gpt.predict(x_blank[:count], batch_size=256, verbose=0)[rows_blank[:count], k[:count] - 1]


def bert_blank_logits(count=None, left_only=False):
    padding = (np.arange(SEQ)[None] <= k[:count, None]) if left_only else None  # left_only: nothing after k
    inputs = bert_inputs(blanked[:count], k[:count, None], padding)
    return bert_mlm.predict(inputs, batch_size=256, verbose=0)[:, 0, :VOCABULARY]


curves = {"GPT": [], "BERT": []}
blank_curves = {"GPT": [], "BERT": []}
train_seconds = {"GPT": 0.0, "BERT": 0.0}
for chunk in range(STEPS // EVAL_EVERY):
    rows = slice(chunk * EVAL_EVERY * BATCH, (chunk + 1) * EVAL_EVERY * BATCH)
    start = time.perf_counter()
    gpt.fit(x_train[rows], y_train[rows], batch_size=BATCH, shuffle=False, verbose=0)
    train_seconds["GPT"] += time.perf_counter() - start
    start = time.perf_counter()
    bert_mlm.fit(bert_inputs(masked_train[rows], positions_train[rows]), labels_train[rows],
                 batch_size=BATCH, shuffle=False, verbose=0)
    train_seconds["BERT"] += time.perf_counter() - start
    step = (chunk + 1) * EVAL_EVERY
    curves["GPT"].append((step, gpt.evaluate(x_val, y_val, batch_size=128, verbose=0)))
    curves["BERT"].append((step, bert_mlm.evaluate(bert_inputs(masked_val, positions_val), labels_val,
                                                   batch_size=128, verbose=0)))
    blank_curves["GPT"].append(np.mean(gpt_blank_logits(1024).argmax(-1) == truth[QUICK]))
    blank_curves["BERT"].append(np.mean(bert_blank_logits(1024).argmax(-1) == truth[QUICK]))
    print(f"step {step:>4}: held-out GPT next-char loss {curves['GPT'][-1][1]:.3f}, BERT masked-char loss "
          f"{curves['BERT'][-1][1]:.3f}; blanks right: GPT {blank_curves['GPT'][-1]:.1%}, "
          f"BERT {blank_curves['BERT'][-1]:.1%}")
print(f"training time: GPT {train_seconds['GPT']:.0f} s, BERT {train_seconds['BERT']:.0f} s "
      f"for {STEPS} steps of {BATCH} x {SEQ} characters each")

frequencies = np.bincount(train_ids, minlength=VOCABULARY) / len(train_ids)
unigram = float(-np.sum(frequencies * np.log(np.maximum(frequencies, 1e-12))))
steps = [step for step, _ in curves["GPT"]]
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
for name, color in (("GPT", "tab:red"), ("BERT", "tab:blue")):
    axes[0].plot(steps, [loss for _, loss in curves[name]], "o-", color=color,
                 label="GPT: next character" if name == "GPT" else "BERT: masked characters")
    axes[1].plot(steps, [100 * a for a in blank_curves[name]], "o-", color=color,
                 label="GPT, left side" if name == "GPT" else "BERT, both sides")
axes[0].axhline(unigram, color="gray", ls=":", label=f"character frequencies only ({unigram:.2f})")
axes[0].set(xlabel="training step", ylabel="held-out loss (nats / char)", title="What each model is trained on")
axes[1].set(xlabel="training step", ylabel="% of blanks right", title="The same blanks, held out")
for ax in axes:
    ax.legend()
plt.show()


# %% [markdown]
# ## The masks, and what the trained models do with them
#
# GPT's blocks apply `causal_mask` (1 = may attend): a lower triangle. BERT's apply only the padding mask,
# the same for every query: all real positions, left and right. Below each mask, the first block's
# attention weights (mean over heads) on a held-out sentence.

# %%
def gpt_attention(model, token_ids):
    """Each block's (B, heads, T, T) attention weights, running GPT's own layers (see notebook 3)."""
    x = model.token_embedding(token_ids)
    x = x + model.position_embedding(x)
    weights = []
    for block in model.blocks:
        x, w = block(x, return_attention_scores=True)
        weights.append(ops.convert_to_numpy(w))
    return weights


SHOW = SEQ
sentence = next((s for s in dev_sentences if len(clean(s)) >= SHOW), dev_sentences[0])
shown = np.asarray(tokenizer.encode(clean(sentence)[:SHOW]), "int32")[None]
labels = [c if c != " " else "_" for c in tokenizer.decode(shown[0])]
REAL = SHOW - 4  # for BERT's mask: a sentence of REAL characters padded to SHOW
padding = (np.arange(SHOW) < REAL)[None]
gpt_map = gpt_attention(gpt, shown)[0][0].mean(0)
bert_map = bert.attention_scores(bert_inputs(shown))[0][0].mean(0)
masks = {"GPT: causal_mask (1 = may attend)": ops.convert_to_numpy(causal_mask(SHOW, SHOW)).astype(float),
         f"BERT: padding mask ({REAL} real + {SHOW - REAL} padding)": np.repeat(padding, SHOW, 0).astype(float)}
fig, axes = plt.subplots(2, 2, figsize=(12, 11.5))
for ax, (title, mask) in zip(axes[0], masks.items()):
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.4)
    ax.set(title=title, xlabel="key position", ylabel="query position")
for ax, (title, weights) in zip(axes[1], (("GPT block 0, trained: mean over heads", gpt_map),
                                           ("BERT block 0, trained: mean over heads", bert_map))):
    ax.imshow(weights, cmap="viridis")
    ax.set_xticks(range(SHOW), labels), ax.set_yticks(range(SHOW), labels)
    ax.set(title=title, xlabel="key", ylabel="query")
for ax in axes.flat:
    ax.grid(False)
plt.tight_layout()
plt.show()
gpt_future = float(np.triu(gpt_map, k=1).sum(1).mean())
bert_future = float(np.triu(bert_map, k=1).sum(1).mean())
print(f"mean weight on later positions: GPT {gpt_future:.3f}, BERT {bert_future:.3f}")


# %% [markdown]
# ## Filling a blank: left side only vs both sides
#
# All the held-out blanks, after training, predicted three ways:
#
# - **GPT**: from the characters before *k*: all it can ever use;
# - **BERT, left side only**: the characters before *k*, then `[MASK]` at *k*, nothing after (padding):
#   what BERT gets when asked to generate;
# - **BERT, both sides**: the whole window with `[MASK]` at *k*: what it was trained for.
#
# Separately for the blanks that are the first letter of a word (after a space), where the left side says
# least about the answer.

# %%
def log_softmax(logits):
    logits = np.asarray(logits, "float64")
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


word_start = np.isin(x_blank[rows_blank, k - 1], tokenizer.encode(" \n")) & \
    np.array([tokenizer.vocabulary[c].isalpha() for c in truth])
all_logits = {"GPT, left side": gpt_blank_logits(),
              "BERT, left side only": bert_blank_logits(left_only=True),
              "BERT, both sides": bert_blank_logits()}
blank, blank_word_start = {}, {}
for name, logits in all_logits.items():
    log_p = log_softmax(logits)
    right = log_p.argmax(-1) == truth
    blank[name] = {"accuracy": float(np.mean(right)), "loss": float(-np.mean(log_p[rows_blank, truth]))}
    blank_word_start[name] = float(np.mean(right[word_start]))
blank["character frequencies"] = {"accuracy": float(np.mean(truth == frequencies.argmax())),
                                  "loss": float(-np.mean(np.log(frequencies[truth])))}
blank_word_start["character frequencies"] = float(np.mean(truth[word_start] == frequencies.argmax()))
print(f"{len(x_blank)} blanks in held-out {text_source}, {word_start.sum()} of them the first letter of a word:")
for name, result in blank.items():
    print(f"{name:>22}: accuracy {result['accuracy']:6.1%}, loss {result['loss']:.3f} nats/char; "
          f"first letters of words: {blank_word_start[name]:6.1%}")

fig, axes = plt.subplots(1, 2, figsize=(14, 3.5), sharey=True)
names = list(blank)
for ax, values, title in ((axes[0], [blank[n]["accuracy"] for n in names], "all blanks"),
                          (axes[1], [blank_word_start[n] for n in names], "blanks that begin a word")):
    ax.barh(names, values, color=["tab:red", "tab:orange", "tab:blue", "gray"])
    for i, value in enumerate(values):
        ax.text(value + 0.01, i, f"{value:.1%}", va="center")
    ax.set(xlabel="accuracy on the blank character", xlim=(0, 1), title=f"Filling one character: {title}")
axes[0].invert_yaxis()
plt.show()

# %% [markdown]
# A few blanks of one held-out sentence, with each model's three best guesses:

# %%
demo = clean(dev_sentences[0])[:SEQ]
demo_ids = np.asarray(tokenizer.encode(demo), "int32")
blanks = [i for i in range(1, len(demo) - 1) if demo[i].isalpha() and not demo[i - 1].isalpha()][:3]
blanks = blanks or [len(demo) // 2]
print("sentence:", repr(demo))
print("blanked: ", repr("".join("_" if i in blanks else c for i, c in enumerate(demo))))
gpt_guess = log_softmax(ops.convert_to_numpy(gpt(demo_ids[None]))[0])
bert_tokens = demo_ids.copy()
bert_tokens[blanks] = MASK_ID
bert_guess = log_softmax(ops.convert_to_numpy(bert_mlm(bert_inputs(bert_tokens[None], [blanks])))[0, :, :VOCABULARY])
top3 = lambda log_p: " ".join(f"{tokenizer.vocabulary[i]!r}:{np.exp(log_p[i]):.2f}" for i in np.argsort(-log_p)[:3])
for j, i in enumerate(blanks):
    print(f"position {i:>2}, truth {demo[i]!r}:  GPT {top3(gpt_guess[i - 1])}   |   BERT {top3(bert_guess[j])}")

# %% [markdown]
# ## Generating: GPT samples left to right, BERT cannot really
#
# The same sampling loop for both: ask the model for the distribution of the next character given the text so
# far, draw from its 5 most likely characters (same seed), append, repeat. For GPT that is its logits at the
# last position (`GPT.generate` does the same with a key/value cache, see notebook 4); for BERT, the text so
# far followed by `[MASK]`.

# %%
NEW = 20 if SMOKE else 200


def sample(next_logits, prompt_ids, steps, seed=0, top_k=5):
    rng = np.random.default_rng(seed)
    tokens = list(prompt_ids)
    for _ in range(steps):
        logits = next_logits(tokens[-(SEQ - 1):])  # the last SEQ - 1 characters fit both models
        best = np.argsort(-logits)[:top_k]
        p = np.exp(logits[best] - logits[best].max())
        tokens.append(int(rng.choice(best, p=p / p.sum())))
    return tokenizer.decode(tokens)


def gpt_next(context):
    return ops.convert_to_numpy(gpt(np.array([context], "int32"), training=False))[0, -1]


def bert_next(context):
    context = context + [MASK_ID]
    padded = np.array([context + [0] * (SEQ - len(context))])
    inputs = bert_inputs(padded, [[len(context) - 1]], np.arange(SEQ)[None] < len(context))
    return ops.convert_to_numpy(bert_mlm(inputs, training=False))[0, 0, :VOCABULARY]


prompt = clean(dev_sentences[1])[: SEQ // 2]
prompt_ids = np.asarray(tokenizer.encode(prompt), "int32")
gpt_sample, bert_sample = sample(gpt_next, prompt_ids, NEW), sample(bert_next, prompt_ids, NEW)
print(f"prompt: {prompt!r}\n")
print(f"GPT:\n{gpt_sample}\n")
print(f"BERT, [MASK] appended left to right:\n{bert_sample}")


def word_share(generated):
    """Share of the generated words that occur in the training text: a crude measure of well-formed text."""
    words = generated[len(prompt):].split()[1:-1]  # the first and last may be cut
    return float(np.mean([w in training_words for w in words])) if words else 0.0


training_words = set(train_text.split())
generated_words = {"GPT": word_share(gpt_sample), "BERT": word_share(bert_sample)}
print(f"\nshare of generated words that are words of the training text: GPT {generated_words['GPT']:.0%}, "
      f"BERT {generated_words['BERT']:.0%}")


# %% [markdown]
# ## Classifying whole sentences: linear probes on frozen features
#
# SST-2's task: is a movie-review sentence positive or negative? Neither model saw a label. We take each
# model's features of a sentence, train a logistic regression (scikit-learn) on labelled training sentences
# and test it on the 872 held-out ones. Sentences longer than the context are read in chunks. Features:
#
# - GPT: the hidden state of the last character (what `GPTClassifier` reads: the only position that has read
#   the whole sentence), and the mean of all positions' states;
# - BERT: the mean of all positions' states (every one of them has read the whole chunk);
# - a baseline without any model: the counts of each character.

# %%
def chunks_of(sentences):
    """Each sentence as chunks of at most SEQ characters: (ids (C, SEQ), padding mask (C, SEQ), owner (C,))."""
    ids, owner = [], []
    for n, s in enumerate(sentences):
        encoded = tokenizer.encode(clean(s) or " ")
        for start in range(0, len(encoded), SEQ):
            ids.append(encoded[start : start + SEQ])
            owner.append(n)
    mask = np.array([[i < len(c) for i in range(SEQ)] for c in ids])
    padded = np.array([np.pad(c, (0, SEQ - len(c))) for c in ids], "int32")
    return padded, mask, np.array(owner)


def sentence_features(sentences):
    ids, mask, owner = chunks_of(sentences)
    hidden_gpt = np.concatenate([ops.convert_to_numpy(gpt.hidden_states(ids[i : i + 256]))
                                 for i in range(0, len(ids), 256)])  # (C, SEQ, D); causal: padding is harmless
    hidden_bert = np.concatenate([ops.convert_to_numpy(bert(bert_inputs(ids[i : i + 256], padding_mask=mask[i : i + 256]))["sequence_output"])
                                  for i in range(0, len(ids), 256)])
    last = mask.sum(1) - 1
    features = {"GPT, last character": np.zeros((len(sentences), hidden_gpt.shape[-1])),
                "GPT, mean of positions": np.zeros((len(sentences), hidden_gpt.shape[-1])),
                "BERT, mean of positions": np.zeros((len(sentences), hidden_bert.shape[-1]))}
    weight = mask[..., None].astype("float64")
    gpt_mean = (hidden_gpt * weight).sum(1) / weight.sum(1)
    bert_mean = (hidden_bert * weight).sum(1) / weight.sum(1)
    counts = np.bincount(owner, minlength=len(sentences))[:, None]
    np.add.at(features["GPT, mean of positions"], owner, gpt_mean / counts[owner])
    np.add.at(features["BERT, mean of positions"], owner, bert_mean / counts[owner])
    features["GPT, last character"][owner] = hidden_gpt[np.arange(len(ids)), last]  # the last chunk wins
    features["character counts"] = np.stack([np.bincount(tokenizer.encode(clean(s)), minlength=VOCABULARY)
                                             for s in sentences]).astype("float64")
    return features


probe = {}
if train_labels is None:
    print(f"no labels in {text_source}: the classification probe is skipped")
else:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    PROBE_TRAIN = 64 if SMOKE else 3000
    # SST-2's training set holds sentences and their sub-phrases; the probe trains on sentences of 6+ words.
    pool = np.array([i for i, s in enumerate(train_sentences) if len(s.split()) >= 6])
    chosen = np.random.default_rng(3).choice(pool, size=min(PROBE_TRAIN, len(pool)), replace=False)
    probe_test = dev_sentences[: 64 if SMOKE else None]
    start = time.perf_counter()
    features_train = sentence_features([train_sentences[i] for i in chosen])
    features_test = sentence_features(probe_test)
    for name in features_train:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        classifier.fit(features_train[name], train_labels[chosen])
        probe[name] = float(classifier.score(features_test[name], dev_labels[: len(probe_test)]))
    print(f"linear probes: {len(chosen):,} training sentences, {len(probe_test)} held-out "
          f"({time.perf_counter() - start:.0f} s)")
    for name, accuracy in probe.items():
        print(f"{name:>24}: accuracy {accuracy:.1%}")
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh(list(probe), list(probe.values()), color=["tab:red", "tab:orange", "tab:blue", "gray"])
    for i, value in enumerate(probe.values()):
        ax.text(value + 0.005, i, f"{value:.1%}", va="center")
    ax.axvline(0.5, color="k", ls=":", lw=1)
    ax.set(xlim=(0.4, 1), xlabel="held-out accuracy", title="SST-2 sentiment from frozen features (logistic regression)")
    ax.invert_yaxis()
    plt.show()

# %% [markdown]
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display

g, bl, bb = blank["GPT, left side"], blank["BERT, left side only"], blank["BERT, both sides"]
if probe:
    best_gpt = max(probe["GPT, last character"], probe["GPT, mean of positions"])
    probe_line = (f"BERT's mean features **{probe['BERT, mean of positions']:.1%}**, GPT's last-character state "
                  f"{probe['GPT, last character']:.1%}, GPT's mean {probe['GPT, mean of positions']:.1%}, "
                  f"character counts alone {probe['character counts']:.1%}: BERT is "
                  f"{'better than' if probe['BERT, mean of positions'] > best_gpt else 'NOT better than'} the "
                  f"better GPT probe by {100 * (probe['BERT, mean of positions'] - best_gpt):+.1f} points.")
else:
    probe_line = f"skipped: {text_source} has no labels."
display(Markdown(f"""
- **Same size, same data, same steps:** GPT {gpt.count_params():,} and BERT {bert_mlm.count_params():,} parameters,
  {STEPS} steps of {BATCH} x {SEQ} characters of {text_source} ({train_seconds['GPT']:.0f} s and
  {train_seconds['BERT']:.0f} s). Held-out losses at the end: GPT next character {curves['GPT'][-1][1]:.3f},
  BERT masked character {curves['BERT'][-1][1]:.3f} nats/char.
- **The masks:** GPT's trained first block puts {gpt_future:.3f} of its weight on later positions (the causal
  mask), BERT's {bert_future:.2f}.
- **Filling a blank** ({len(x_blank)} held-out positions): BERT with both sides **{bb['accuracy']:.1%}**
  ({bb['loss']:.2f} nats), GPT from the left **{g['accuracy']:.1%}** ({g['loss']:.2f} nats), BERT from the left
  only {bl['accuracy']:.1%} ({bl['loss']:.2f} nats); character frequencies alone {blank['character frequencies']['accuracy']:.1%}.
  Both sides {'beat' if bb['accuracy'] > g['accuracy'] else 'did NOT beat'} the left side by
  {100 * (bb['accuracy'] - g['accuracy']):+.1f} points; on the {word_start.sum()} first letters of words by
  **{100 * (blank_word_start['BERT, both sides'] - blank_word_start['GPT, left side']):+.1f}** points
  ({blank_word_start['BERT, both sides']:.1%} vs {blank_word_start['GPT, left side']:.1%}).
- **The cost:** after {curves['BERT'][0][0]} steps BERT got {blank_curves['BERT'][0]:.1%} of the blanks right and GPT
  {blank_curves['GPT'][0]:.1%}; BERT {'overtook GPT after ' + str(steps[int(np.argmax(np.array(blank_curves['BERT']) > np.array(blank_curves['GPT'])))]) + ' steps' if any(b > g_ for b, g_ in zip(blank_curves['BERT'], blank_curves['GPT'])) else 'had NOT overtaken GPT by the end'}.
- **Generating:** from the left side only, which is all a generator has, GPT is
  {'better' if g['accuracy'] > bl['accuracy'] else 'NOT better'} than BERT by
  {100 * (g['accuracy'] - bl['accuracy']):+.1f} points; {generated_words['GPT']:.0%} of GPT's sampled words are words
  of the training text, {generated_words['BERT']:.0%} of BERT's.
- **Classifying** (SST-2 sentiment, logistic regression on frozen features): {probe_line}
"""))
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
