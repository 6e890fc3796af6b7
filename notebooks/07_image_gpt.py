# %% [markdown]
# # 7. Image GPT: pixels as a sequence of palette colours, and completions of half images
#
# **The last step** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention ->
# Transformer -> GPT / BERT -> ViT -> **image GPT**. ViT reads an image as patches; image GPT asks whether
# GPT's recipe needs language at all. `keras_tx.models.ImageGPT`:
#
# 1. **Palette:** k-means on the training pixels (`keras_tx.models.Palette`) gives a small set of colours,
#    16 grey levels here; every pixel becomes the index of its nearest colour, a token.
# 2. **Pixels as a sequence:** images are downsampled to 14x14 and read row by row, a start token first:
#    197 tokens. The model is an unchanged GPT (causal mask, next-token loss); it is never told that the
#    image is 2-D, so it has to learn that the pixel above is 14 tokens back.
# 3. **Completion:** given the top half of an image, `ImageGPT.complete` samples the bottom half pixel by
#    pixel (GPT's cached `generate`).
#
# Measured below on Fashion-MNIST: the palette's quantization error, the model's bits per pixel against
# a model that knows only colour frequencies, how much attention the trained heads put on the pixel above
# the one being predicted, and whether completions fit the given half better than the bottom halves of other
# images do.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, SMOKE, keras, np, ops, plt, time

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, imported by keras-hub
from keras_tx.models import ImageGPT, Palette
from keras_tx.validation import MAX_BATCH

# %%
from nb_setup import load_images


data, image_source = load_images()
class_names = data.class_names

# %% [markdown]
# ## The palette
#
# Images are first downsampled to the 14x14 token grid (the mean of each 2x2 block, as
# `ImageGPT.downsample` does); k-means then clusters a sample of those pixels. More colours quantize more
# faithfully but make a larger vocabulary: the error by palette size, and the 16-colour palette used below.

# %%
GRID = 7 if SMOKE else 14
NUM_COLORS = 16
FIT_IMAGES = 256 if SMOKE else 10000
factor = data.x_train.shape[1] // GRID


def block_mean(images):
    """(N, H, W, C) uint8 -> (N, GRID, GRID, C) floats in [0, 1]: the mean of each factor x factor block."""
    x = images.astype("float32") / 255.0
    n, h, w, c = x.shape
    return x.reshape(n, GRID, h // GRID, GRID, w // GRID, c).mean(axis=(2, 4))


small_train = block_mean(data.x_train[:FIT_IMAGES])
small_test = block_mean(data.x_test[: 64 if SMOKE else 1000])
quantization_mse = {}
for k in (2, 16) if SMOKE else (2, 4, 8, 16, 32):
    palette_k = Palette.fit(small_train, num_colors=k, seed=0)
    restored = palette_k.dequantize(palette_k.quantize(small_test), GRID, GRID)
    quantization_mse[k] = float(np.mean((restored - small_test) ** 2))
palette = Palette.fit(small_train, num_colors=NUM_COLORS, seed=0)
test_tokens = palette.quantize(small_test)  # (N, GRID * GRID)
usage = np.bincount(test_tokens.ravel(), minlength=palette.num_colors) / test_tokens.size
print(f"mean squared error of the quantized {GRID}x{GRID} test images, by palette size:",
      ", ".join(f"{k}: {mse:.5f}" for k, mse in quantization_mse.items()))
print(f"the {palette.num_colors} grey levels: {[round(float(c), 3) for c in palette.centres[:, 0]]}")

fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1.3, 1]})
axes[0].bar(range(palette.num_colors), usage, color=[str(float(c)) for c in palette.centres[:, 0]], edgecolor="k")
axes[0].set(xlabel="palette index (sorted by brightness)", ylabel="share of test pixels", yscale="log",
            title=f"The {palette.num_colors}-colour k-means palette and how often each colour occurs")
axes[1].plot(list(quantization_mse), list(quantization_mse.values()), "o-")
axes[1].set(yscale="log", xlabel="palette size (colours)", ylabel="mean squared error",
            title=f"Quantization error of {GRID}x{GRID} test images")
axes[1].set_xscale("log", base=2)
axes[1].set_xticks(list(quantization_mse), [str(k) for k in quantization_mse])
axes[1].minorticks_off()
plt.tight_layout()
plt.show()

fig, axes = plt.subplots(3, 8, figsize=(12, 4.8))
for j in range(8):
    for i, (image, title) in enumerate(((data.x_test[j, ..., 0] / 255.0, "original 28x28"),
                                       (small_test[j, ..., 0], f"downsampled {GRID}x{GRID}"),
                                       (palette.dequantize(test_tokens[j : j + 1], GRID, GRID)[0, ..., 0],
                                        f"{palette.num_colors} colours"))):
        axes[i, j].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[i, j].axis("off")
        if j == 0:
            axes[i, j].set_title(title, fontsize=9, loc="left")
plt.show()

# %% [markdown]
# ## Pixels as a sequence
#
# `ImageGPT.sequences` turns an image into `[start] p_1 ... p_196`, row after row. In that sequence the pixel
# to the left is 1 token back and the pixel above is 14 tokens back; the causal mask lets the pixel at
# (row, column) see every pixel of the rows above and the ones to its left in its own row.

# %%
keras.utils.set_random_seed(0)
LAYERS, HIDDEN = (1, 32) if SMOKE else (2, 64)
igpt = ImageGPT(palette, image_size=GRID, num_layers=LAYERS, num_heads=4, hidden_dim=HIDDEN,
                intermediate_dim=4 * HIDDEN)
assert np.allclose(igpt.downsample(data.x_test[:8]), small_test[:8], atol=1e-6)  # the same downsampling
tokens = igpt.sequences(data.x_test[:1])[0]  # (1 + GRID * GRID,)
print(f"ImageGPT: {LAYERS} blocks, width {HIDDEN}, vocabulary {igpt.vocabulary_size} "
      f"({palette.num_colors} colours + start token {igpt.start_token_id}), sequences of {igpt.max_length} "
      f"tokens, {igpt.count_params():,} parameters")
middle = GRID // 2
print(f"row {middle} of that test image as tokens (positions {1 + middle * GRID}..{(middle + 1) * GRID}):",
      tokens[1 + middle * GRID : 1 + (middle + 1) * GRID].tolist())

row, column = GRID // 2, GRID // 2
visible = (np.arange(GRID * GRID) < row * GRID + column).reshape(GRID, GRID)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 1, 2.4]})
axes[0].imshow(palette.dequantize(tokens[None, 1:], GRID, GRID)[0, ..., 0], cmap="gray")
order = np.arange(GRID * GRID).reshape(GRID, GRID)
for (r, c), i in np.ndenumerate(order):
    if GRID <= 8 or (r % 3 == 0 and c % 3 == 0):
        axes[0].text(c, r, str(i + 1), ha="center", va="center", fontsize=6, color="tab:red")
axes[0].set_title("raster order: token index of a pixel")
axes[1].imshow(visible, cmap="Blues", vmin=0, vmax=1.5)
axes[1].plot(column, row, "r*", ms=12)
axes[1].set_title(f"what pixel ({row}, {column}) may see")
axes[2].imshow(tokens[None, :], aspect="auto", cmap="gray")
axes[2].set(title="the same image as one sequence of tokens (start token first)", yticks=[],
            xlabel="position in the sequence")
for ax in axes[:2]:
    ax.set_xticks([]), ax.set_yticks([])
for ax in axes:
    ax.grid(False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Training: next-pixel prediction
#
# `ImageGPT.training_pairs` gives inputs and targets shifted by one. Adam, batches of 32 images, one pass
# over the training images used. Loss in bits per pixel on held-out test images, against a model that only
# knows how often each colour occurs.

# %%
STEPS = 4 if SMOKE else 700
BATCH = 32
x_train, y_train = igpt.training_pairs(data.x_train[: STEPS * BATCH])
x_test, y_test = igpt.training_pairs(data.x_test[: 64 if SMOKE else 1000])
igpt.compile(keras.optimizers.Adam(2e-3, clipnorm=1.0),
             keras.losses.SparseCategoricalCrossentropy(from_logits=True))
bits = lambda nats: nats / np.log(2)
loss_before = bits(igpt.evaluate(x_test, y_test, batch_size=128, verbose=0))
curve, start = [(0, loss_before)], time.perf_counter()
CHUNK = STEPS if SMOKE else 100
for chunk in range(STEPS // CHUNK):
    rows = slice(chunk * CHUNK * BATCH, (chunk + 1) * CHUNK * BATCH)
    igpt.fit(x_train[rows], y_train[rows], batch_size=BATCH, shuffle=False, verbose=0)
    curve.append(((chunk + 1) * CHUNK, bits(igpt.evaluate(x_test, y_test, batch_size=128, verbose=0))))
    print(f"step {curve[-1][0]:>4}: {curve[-1][1]:.3f} bits/pixel on held-out images")
train_time = time.perf_counter() - start
frequencies = np.bincount(y_train.ravel(), minlength=palette.num_colors) / y_train.size
unigram = float(-np.mean(np.log2(frequencies[y_test])))
loss_after = curve[-1][1]
print(f"{STEPS} steps in {train_time:.0f} s; held-out: {loss_before:.3f} -> {loss_after:.3f} bits/pixel "
      f"(colour frequencies alone: {unigram:.3f}; a raw 16-level pixel: 4 bits)")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(*zip(*curve), "o-", label="ImageGPT")
ax.axhline(unigram, color="gray", ls=":", label=f"colour frequencies only ({unigram:.2f})")
ax.set(xlabel="training step", ylabel="bits per pixel (held-out)", title="Next-pixel loss")
ax.legend()
plt.show()


# %% [markdown]
# ## Did it learn that the pixel above is 14 tokens back?
#
# The attention weights of each block (running the model's own layers, as in notebook 3), averaged over
# held-out images, heads and query positions, by how far back the key is. Mind the shift by one: the query at
# position t holds pixel t - 1 and predicts pixel t, so the pixel above the one being predicted is
# 14 - 1 = 13 tokens before the query, and the one two rows up 27. Nothing but training could put structure
# there.

# %%
def attention_by_distance(model, token_ids, max_distance):
    x = model.token_embedding(token_ids)
    x = x + model.position_embedding(x)
    profiles = []
    T = token_ids.shape[1]
    queries = np.arange(max_distance, T)  # positions with at least max_distance tokens before them
    for block in model.blocks:
        x, w = block(x, return_attention_scores=True)
        w = ops.convert_to_numpy(w).mean(axis=(0, 1))  # (T, T), mean over images and heads
        profiles.append([w[queries, queries - d].mean() for d in range(max_distance + 1)])
    return np.array(profiles)  # (blocks, distance)


MAX_DISTANCE = 3 * GRID
profile = attention_by_distance(igpt, x_test[: 8 if SMOKE else 256], MAX_DISTANCE)
ABOVE = GRID - 1  # distance from the query to the pixel above the predicted one
near = np.r_[GRID // 2 : ABOVE - 1, ABOVE + 2 : ABOVE + GRID // 2 + 1]  # distances around it, for comparison
for layer, p in enumerate(profile):
    print(f"block {layer}: weight on the query's own token (the pixel left of the predicted one) {p[0]:.3f}; "
          f"on the pixel above the predicted one ({ABOVE} back) {p[ABOVE]:.3f}, vs {p[near].mean():.3f} on "
          f"distances {near.min()}..{ABOVE - 2} and {ABOVE + 2}..{near.max()}; two rows up ({2 * GRID - 1} back) "
          f"{p[2 * GRID - 1]:.3f}")
above_ratio = max(p[ABOVE] / p[near].mean() for p in profile)
above_block = int(np.argmax([p[ABOVE] / p[near].mean() for p in profile]))

fig, ax = plt.subplots(figsize=(9, 3.5))
for layer, p in enumerate(profile):
    ax.plot(range(MAX_DISTANCE + 1), p, "o-", ms=3, label=f"block {layer}")
for d in (ABOVE, 2 * GRID - 1):
    ax.axvline(d, color="gray", ls=":")
ax.set(xlabel="distance back in the sequence (tokens)", ylabel="mean attention weight", yscale="log",
       title=f"Attention by distance from the query: dotted, one and two rows above the predicted pixel "
             f"({ABOVE} and {2 * GRID - 1})")
ax.legend()
plt.show()

# %% [markdown]
# ## Completing half images
#
# Each held-out image is downsampled and quantized; `ImageGPT.complete(images, keep_rows=7)` keeps its top 7
# rows and samples the other 7, pixel by pixel, several times with different random draws. How good is a
# completion? Its bottom half is compared (mean squared error) with the true bottom half, and so are two
# references that ignore the top half: the bottom half of another test image, and the mean bottom half of
# the training images.

# %%
KEEP = GRID // 2
SHOW, SAMPLES = (2, 2) if SMOKE else (8, 4)
EVAL = 4 if SMOKE else 128
CHUNK = MAX_BATCH // SAMPLES  # images per call: `generate` takes at most MAX_BATCH (64) prompts at once
start = time.perf_counter()
completions = np.concatenate([igpt.complete(data.x_test[i:min(i + CHUNK, EVAL)], keep_rows=KEEP,
                                            num_samples=SAMPLES, seed=i)
                              for i in range(0, EVAL, CHUNK)])  # (N, S, h, w, 1)
complete_time = time.perf_counter() - start
truth = palette.dequantize(igpt.quantize_images(data.x_test[:EVAL]), GRID, GRID)  # (N, h, w, 1)
assert np.allclose(completions[:, :, :KEEP], truth[:, None, :KEEP]), "the given rows must be kept"
print(f"{EVAL} images x {SAMPLES} completions of {(GRID - KEEP) * GRID} pixels each in {complete_time:.0f} s")

fig, axes = plt.subplots(SHOW, 2 + SAMPLES, figsize=(1.6 * (2 + SAMPLES), 1.6 * SHOW))
for i in range(SHOW):
    given = truth[i].copy()
    given[KEEP:] = 0.5
    row = [(truth[i], "truth (quantized)"), (given, "given: top half")]
    row += [(completions[i, s], f"sample {s + 1}") for s in range(SAMPLES)]
    for ax, (image, title) in zip(axes[i], row):
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.axhline(KEEP - 0.5, color="tab:red", lw=0.8)
        ax.set_xticks([]), ax.set_yticks([])
        if i == 0:
            ax.set_title(title, fontsize=8)
plt.suptitle(f"ImageGPT completions of held-out {image_source} images (below the red line: sampled)", y=1.0)
plt.tight_layout()
plt.show()

bottom = lambda images: images[..., KEEP:, :, :]
completion_mse = float(np.mean((bottom(completions) - bottom(truth)[:, None]) ** 2))
other_mse = float(np.mean((bottom(np.roll(truth, 1, axis=0)) - bottom(truth)) ** 2))  # another test image's
# Averages are not samples: the mean of the samples (an estimate of the expected completion given the top) is
# compared with the mean bottom half of the training images (the best guess that ignores the top).
average_mse = float(np.mean((bottom(completions).mean(1) - bottom(truth)) ** 2))
mean_bottom = bottom(palette.dequantize(y_train, GRID, GRID)).mean(0)
mean_mse = float(np.mean((mean_bottom[None] - bottom(truth)) ** 2))
print(f"mean squared error of the bottom half vs the truth:\n"
      f"  samples:  a completion {completion_mse:.4f} vs another test image's bottom half {other_mse:.4f}\n"
      f"  averages: the mean of the {SAMPLES} completions {average_mse:.4f} vs the mean training bottom half {mean_mse:.4f}")

# %% [markdown]
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display

display(Markdown(f"""
- **Palette:** k-means on {FIT_IMAGES:,} downsampled {image_source} training images; the mean squared error of
  quantized {GRID}x{GRID} test images falls from {quantization_mse[2]:.4f} with 2 colours to
  **{quantization_mse[16]:.5f}** with 16 (the palette used){f" and {quantization_mse[32]:.5f} with 32" if 32 in quantization_mse else ""}.
- **Pixels as a sequence:** a GPT ({LAYERS} blocks, width {HIDDEN}, {igpt.count_params():,} parameters) on
  sequences of {igpt.max_length} tokens, trained {STEPS} steps of {BATCH} images ({train_time:.0f} s): held-out loss
  **{loss_after:.3f} bits/pixel**, vs {loss_before:.3f} untrained and {unigram:.3f} for colour frequencies alone.
- **{'It found the second dimension' if above_ratio > 1.5 else 'No clear sign of the second dimension'}:** the mean
  attention weight on the pixel above the one being predicted ({ABOVE} tokens before the query) is
  **{above_ratio:.1f}x** the mean weight on the neighbouring distances in block {above_block}, in a model that was
  only ever given a 1-D sequence.
- **Completions:** {EVAL} held-out images x {SAMPLES} samples. Mean squared error of a sampled bottom half vs the
  true one **{completion_mse:.4f}**, vs {other_mse:.4f} for another test image's bottom half (a sample that ignores
  the top: {'the completions are closer' if completion_mse < other_mse else 'the completions are NOT closer'});
  the mean of the {SAMPLES} samples {average_mse:.4f} vs {mean_mse:.4f} for the mean training bottom half
  ({'closer' if average_mse < mean_mse else 'NOT closer'}).
"""))
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
