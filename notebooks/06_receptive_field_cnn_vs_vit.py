# %% [markdown]
# # 6. Receptive fields: a CNN sees a neighbourhood that grows layer by layer, a ViT the whole image at once
#
# **Step 9** of the line RNN -> LSTM -> attention -> self-attention -> multi-head attention -> Transformer
# -> GPT / BERT -> **ViT** -> image GPT. A 3x3 convolution mixes a pixel with its 8 neighbours; stacking
# them (and striding) widens what one unit depends on a few pixels per layer. A Vision Transformer cuts the
# image into patches and lets every patch attend to every other from the first block on. The claims:
#
# 1. In a trained `keras_tx.models.ResNet`, the pixels an intermediate unit depends on (non-zero gradient of
#    the unit w.r.t. the input image) form a square that grows with depth, as the kernel sizes and strides
#    predict.
# 2. In a trained `keras_tx.models.ViT` (patches of 7x7), one patch token depends on its own 49 pixels after
#    the patch embedding, and on **every** pixel of the image after the first Transformer block.
# 3. The price of that freedom: the CNN's built-in locality is knowledge the ViT must learn from data, so on
#    small training sets the CNN should be the more accurate (the ViT paper sees ViTs pull ahead only with
#    millions of images). Both trained from scratch with the same recipe on growing subsets of Fashion-MNIST:
#    measured below.
#
# Gradient maps use the two image classifiers shipped in `saved_models/` (trained on all of Fashion-MNIST);
# the data-size comparison trains fresh, smaller models here.

# %%
# %matplotlib inline
from nb_setup import NOTEBOOK_START, REPO, SMOKE, keras, np, ops, plt, tf, time

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, imported by keras-hub
from keras_tx import tasks
from keras_tx.data import image_dataset
from keras_tx.models import ResNet, ViT
from keras_tx.training import exclude_non_matrices, make_optimizer

# %%
from nb_setup import load_images


data, image_source = load_images()
class_names = data.class_names

# %%
resnet_task = tasks.load(str(REPO / "saved_models" / "resnet_fashion_mnist"))
vit_task = tasks.load(str(REPO / "saved_models" / "vit_fashion_mnist"))
resnet, resnet_metadata = resnet_task.model, resnet_task.metadata
vit, vit_metadata = vit_task.model, vit_task.metadata
for name, model, metadata in (("ResNet", resnet, resnet_metadata), ("ViT", vit, vit_metadata)):
    print(f"{name}: {model.count_params():,} parameters, test accuracy {metadata['metrics']['test_accuracy']:.2%} "
          f"on {metadata['dataset']}")
print(f"ViT: patches of {vit.patch_size}x{vit.patch_size} -> a {vit.grid_size[0]}x{vit.grid_size[1]} grid of "
      f"tokens (+ a class token), {vit.num_layers} blocks")
images = data.x_test[: 4 if SMOKE else 32].astype("float32") / 255.0  # (B, 28, 28, 1) in [0, 1]
HEIGHT, WIDTH = images.shape[1:3]


# %% [markdown]
# ## The ResNet: which pixels does one unit depend on?
#
# For the output of the stem and of each residual block we take the unit at the centre of the feature map,
# sum it over channels, and compute its gradient with respect to every input pixel (mean |gradient| over the
# test images above). A pixel outside the unit's receptive field has a gradient of exactly zero. The theoretical
# receptive field follows from the main path's convolutions: each k x k convolution adds (k - 1) x (the
# product of the strides before it) pixels to the side (the 1x1 shortcuts add nothing).

# %%
def input_gradient(function, images):
    """mean over images of |d function(images) / d pixel|, as (H, W)."""
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(function(x))
    return tf.reduce_mean(tf.abs(tape.gradient(value, x)), axis=(0, 3)).numpy()


stages = ["stem_relu"] + [layer.name for layer in resnet.layers if layer.name.endswith("_out")]
features = keras.Model(resnet.input, [resnet.get_layer(name).output for name in stages])
main_path = [layer for layer in resnet.layers if isinstance(layer, keras.layers.Conv2D) and "shortcut" not in layer.name]
resnet_maps, resnet_theory, resnet_support, resnet_depth, resnet_measured = [], [], [], [], []
for index, name in enumerate(stages):
    def centre_unit(x, index=index):
        out = features(x, training=False)[index]  # (B, h, w, C)
        return out[:, out.shape[1] // 2, out.shape[2] // 2, :]
    gradient = input_gradient(centre_unit, images)
    # Theoretical receptive field: the convolutions up to this stage's output.
    last = resnet.layers.index(resnet.get_layer(name))
    size, jump, convolutions = 1, 1, 0
    for conv in main_path:
        if resnet.layers.index(conv) < last:
            size += (conv.kernel_size[0] - 1) * jump
            jump *= conv.strides[0]
            convolutions += 1
    rows, cols = np.nonzero(gradient)
    resnet_maps.append(gradient)
    resnet_theory.append(size)
    resnet_support.append(gradient.astype(bool).mean())
    resnet_depth.append(convolutions)
    resnet_measured.append((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    print(f"{name:>22}: {convolutions:>2} convolutions, {features.outputs[index].shape[1]:>2}x"
          f"{features.outputs[index].shape[2]:<2} map | theory {size:>3} px wide | non-zero gradient on "
          f"{rows.max() - rows.min() + 1:>2} x {cols.max() - cols.min() + 1:<2} px = "
          f"{resnet_support[-1]:6.1%} of the image")


# %% [markdown]
# ## The ViT: one patch token, before and after each block
#
# The ViT's tokens: the patch embedding (a 7x7 stride-7 projection), the class token and the positions, then the
# blocks. We rerun the model's own layers to read every token after each block (and check the result against
# `ViT.encode`), then take the gradient of one patch token, the one of the patch in row 1, column 1 of the
# grid, with respect to the input pixels.

# %%
def vit_states(model, images):
    """The tokens (B, 1 + patches, D) after the embedding, then after each block."""
    x = model.patch_embedding(images)  # (B, P, D), patches in raster order
    x = model.class_token(x)  # (B, 1 + P, D)
    x = x + model.position_embedding(x)
    states = [x]
    for block in model.encoder_blocks:
        x = block(x, training=False)
        states.append(x)
    return states


check = float(np.abs(ops.convert_to_numpy(vit.final_norm(vit_states(vit, images[:2])[-1]))
                     - ops.convert_to_numpy(vit.encode(images[:2]))).max())
print(f"max |replayed tokens - ViT.encode| = {check:.1e}")
assert check < 1e-4
PATCH = vit.patch_size
token = 1 + 1 * vit.grid_size[1] + 1  # class token first, then the patch in row 1, column 1
vit_maps, vit_support = [], []
for depth in range(vit.num_layers + 1):
    gradient = input_gradient(lambda x, depth=depth: vit_states(vit, x)[depth][:, token], images)
    vit_maps.append(gradient)
    vit_support.append(gradient.astype(bool).mean())
    where = "after the patch embedding" if depth == 0 else f"after block {depth}"
    print(f"patch token {token} {where:>26}: non-zero gradient on {vit_support[-1]:6.1%} of the image "
          f"({int(gradient.astype(bool).sum())} of {HEIGHT * WIDTH} pixels)")

# %%
from matplotlib.patches import Rectangle

resnet_shown = sorted(set(list(range(min(6, len(stages)))) + [len(stages) - 1]))  # the growth, then the end
vit_shown = sorted(set([0, 1, 2, vit.num_layers]))
columns = max(len(resnet_shown), len(vit_shown)) + 1
fig, axes = plt.subplots(2, columns, figsize=(2.3 * columns, 6.0))
for row in axes:
    row[0].imshow(images[0, ..., 0], cmap="gray")
    row[0].set_title(f"input ({class_names[data.y_test[0]]})", fontsize=9)
for ax, index in zip(axes[0, 1:], resnet_shown):
    ax.imshow(np.sqrt(resnet_maps[index] / resnet_maps[index].max()), cmap="inferno")
    side, centre = resnet_theory[index], (HEIGHT // 2, WIDTH // 2)
    ax.add_patch(Rectangle((centre[1] - side / 2, centre[0] - side / 2), side, side, fill=False, ec="cyan", lw=1))
    ax.set_title(f"ResNet {stages[index]}\n{resnet_depth[index]} convs, {resnet_support[index]:.0%} of pixels", fontsize=8)
for ax, depth in zip(axes[1, 1:], vit_shown):
    ax.imshow(np.sqrt(vit_maps[depth] / vit_maps[depth].max()), cmap="inferno")
    ax.set_title(("ViT patch embedding" if depth == 0 else f"ViT after block {depth}")
                 + f"\n{vit_support[depth]:.0%} of pixels", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
for ax in axes[1, 1 + len(vit_shown):]:
    ax.axis("off")
fig.suptitle("|d unit / d pixel| (square root, each map to its own maximum); cyan: theoretical receptive field", y=1.0)
plt.tight_layout()
fig.subplots_adjust(hspace=0.45)
plt.show()

fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(resnet_depth, [100 * s for s in resnet_support], "o-", label="ResNet: centre unit after the stem / each block")
ax.plot(range(vit.num_layers + 1), [100 * s for s in vit_support], "s-", label="ViT: one patch token after each block")
ax.set(xlabel="depth (3x3 convolutions for the ResNet, Transformer blocks for the ViT)",
       ylabel="% of input pixels with non-zero gradient", title="Receptive field vs depth", ylim=(0, 105))
ax.legend()
plt.show()

# %% [markdown]
# ## CNN vs ViT as the training set grows
#
# Two fresh models of about the same size, trained from scratch with the same recipe (`keras_tx.training`'s
# AdamW, warm-up and cosine decay; batches of 64 from `keras_tx.data.image_dataset`, no augmentation) on the
# first *n* Fashion-MNIST training images, and tested on held-out test images. Smaller training sets get more
# epochs, so that every run takes enough steps to fit its data. Only the peak learning rate differs, each
# model at its best of 1e-3, 2e-3, 5e-3 and 1e-2 in trial runs at n = 500 (scored on the same test images):
# 1e-2 for the ResNet (at 2e-3 it did not even fit its 500 training images, and tested lower), 2e-3 for the
# ViT (lower at 1e-3 and at 5e-3), so neither is handicapped by the other's rate. The ResNet's BatchNorm layers keep running
# averages of their batch statistics for testing; Keras' default momentum (0.99) needs more steps than the
# smallest runs take to forget the initial values, so they use 0.9.

# %%
SIZES = [64] if SMOKE else [500, 2000, 8000]
EPOCHS = {64: 1, 500: 40, 2000: 12, 8000: 5}
# Each model's best of 1e-3, 2e-3, 5e-3 and 1e-2 in trial runs at n = 500 (see above).
LEARNING_RATE = {"ResNet": 1e-2, "ViT": 2e-3}
SIZES = [n for n in SIZES if n <= len(data.x_train)] or [len(data.x_train)]
TEST = 256 if SMOKE else 2000
BATCH = 64
test_data = image_dataset(data.x_test[:TEST], data.y_test[:TEST], batch_size=256)


def make_model(kind):
    if kind == "ResNet":  # 3x3 convolutions, 3 stages of one block, 16 -> 32 -> 64 channels
        model = ResNet(data.x_train.shape[1:], len(class_names), width=16, blocks_per_stage=(1,) * (1 if SMOKE else 3))
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9  # the running statistics must settle within a few hundred steps
        return model
    return ViT(HEIGHT, 7, num_layers=1 if SMOKE else 4, num_heads=4, hidden_dim=48, mlp_dim=96,
               num_classes=len(class_names), num_channels=data.x_train.shape[-1])


print(", ".join(f"{kind}: {make_model(kind).count_params():,} parameters" for kind in ("ResNet", "ViT")))
accuracy = {"ResNet": [], "ViT": []}
train_accuracy = {"ResNet": [], "ViT": []}
seconds = {"ResNet": 0.0, "ViT": 0.0}
for n in SIZES:
    epochs = EPOCHS.get(n, max(1, 40000 // n))
    steps = epochs * (n // BATCH)
    for kind in accuracy:
        keras.utils.set_random_seed(0)
        model = make_model(kind)
        optimizer = make_optimizer(steps, learning_rate=LEARNING_RATE[kind], min_learning_rate=1e-4,
                                   warmup_steps=min(100, steps // 10), weight_decay=0.05)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        exclude_non_matrices(optimizer, model)
        train = image_dataset(data.x_train[:n], data.y_train[:n], BATCH, shuffle=True, seed=0)
        start = time.perf_counter()
        history = model.fit(train.take(n // BATCH), epochs=epochs, shuffle=False, verbose=0)  # shuffled above
        seconds[kind] += time.perf_counter() - start
        accuracy[kind].append(model.evaluate(test_data, verbose=0)[1])
        train_accuracy[kind].append(history.history["accuracy"][-1])
        print(f"n = {n:>5}, {epochs:>2} epochs ({steps:>4} steps): {kind:>6} test accuracy {accuracy[kind][-1]:.2%} "
              f"(last epoch's training accuracy {train_accuracy[kind][-1]:.2%}), {time.perf_counter() - start:.0f} s")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for kind, marker in (("ResNet", "o-"), ("ViT", "s-")):
    ax.plot(SIZES, [100 * a for a in accuracy[kind]], marker, label=kind)
    for n, a in zip(SIZES, accuracy[kind]):
        ax.annotate(f"{a:.1%}", (n, 100 * a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
ax.set(xscale="log", xlabel="training images", ylabel=f"test accuracy (%), {TEST} test images",
       title=f"{image_source}: trained from scratch on the first n images")
ax.set_xticks(SIZES, [str(n) for n in SIZES])
ax.legend()
plt.show()

# %% [markdown]
# ## Conclusion (numbers computed above)

# %%
from IPython.display import Markdown, display

gaps = [100 * (r - v) for r, v in zip(accuracy["ResNet"], accuracy["ViT"])]
widths = ", ".join(str(t) for t in resnet_theory)
depths = ", ".join(str(d) for d in resnet_depth)
as_predicted = all(m == (min(t, HEIGHT), min(t, WIDTH)) for m, t in zip(resnet_measured, resnet_theory))
display(Markdown(f"""
- **CNN:** the centre unit of the trained ResNet depends on {resnet_support[0]:.1%} of the pixels after the stem,
  {resnet_support[len(resnet_support) // 2]:.1%} after {resnet_depth[len(resnet_depth) // 2]} convolutions and
  {resnet_support[-1]:.1%} after all {resnet_depth[-1]}. Its non-zero gradients form squares
  {'exactly as wide as' if as_predicted else 'NOT always as wide as'} the theory predicts, {widths} px after {depths} convolutions, until they cover the whole {HEIGHT}x{WIDTH} image
  ({', '.join(f'{s:.0%}' for s in resnet_support)} of the pixels).
- **ViT:** one patch token depends on {vit_support[0]:.1%} of the pixels after the patch embedding (its own
  {PATCH}x{PATCH} patch) and on **{vit_support[1]:.1%}** after the first block
  ({', '.join(f'{s:.0%}' for s in vit_support[1:])} after blocks 1..{vit.num_layers}).
- **Data:** trained from scratch on n = {', '.join(map(str, SIZES))} {image_source} images, test accuracy
  ResNet {', '.join(f'{a:.1%}' for a in accuracy['ResNet'])} vs ViT {', '.join(f'{a:.1%}' for a in accuracy['ViT'])}:
  the CNN leads by {', '.join(f'{g:+.1f}' for g in gaps)} points: it is
  {'ahead' if gaps[0] > 0 else 'NOT ahead'} on the smallest training set, and the gap
  {'shrinks' if len(gaps) > 1 and gaps[-1] < gaps[0] else 'does NOT shrink'} as the training set grows.
  Training took {seconds['ResNet']:.0f} s (ResNet) and {seconds['ViT']:.0f} s (ViT) in all.
"""))
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s ({'SMOKE' if SMOKE else 'default'} size)")
