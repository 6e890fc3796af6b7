"""Our ViT vs keras-hub's ViT (same configuration, same weights): training images/s.

Commands:
    python benchmarks/vit.py [--batch 64] [--repeats 5] [--jit both]
    KERAS_BACKEND=jax python benchmarks/vit.py --dtype bfloat16 --batch 256 --quick

The configuration is the small CIFAR-sized ViT whose H100 speed was measured for this project: 32x32x3 images,
4x4 patches (64 patches + the class token), 6 encoder blocks, 256 wide. Heads and MLP width follow the proportions of keras-hub's ViT presets
(ViT-B/L/H: 64-wide heads, MLP 4x the width): 4 heads, MLP 1024 (4.8M parameters). `--mlp-dim 512` gives the
3.2M-parameter model of the project's H100 reference figures (keras-hub on the same machine).

keras-hub's side is `keras_hub.models.ViTImageClassifier` (its class-token head, logits out) on a `ViTBackbone`;
ours is `ViT.from_keras_hub` of that backbone with the head's weights copied, so both start from the same
weights. One optimizer step (AdamW, global-norm clip 1.0, sparse cross-entropy) of each model, `train_on_batch`
alternating in one process (benchmarks/harness.py), jit_compile off and on. Random images and labels: the time
of a step does not depend on the pixels.

Runs under the TensorFlow and the JAX backend (under JAX nothing here imports tensorflow). `--dtype bfloat16`
sets the mixed_bfloat16 policy for both models. `--quick`: jit_compile on only, 3 repeats of 5 steps.
Prints a markdown table for benchmarks/RESULTS.md; a ratio > 1 means ours is faster.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import alternate, environment, markdown_table  # noqa: E402

NUM_CLASSES = 10


def build(args):
    """(keras-hub classifier, our ViT) with the same weights."""
    import keras_hub

    from keras_tx.models import ViT

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(args.image_size, args.image_size, 3),
        patch_size=args.patch_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        mlp_dim=args.mlp_dim,
    )
    theirs = keras_hub.models.ViTImageClassifier(backbone, NUM_CLASSES, preprocessor=None, activation=None)
    ours = ViT.from_keras_hub(backbone, num_classes=NUM_CLASSES)
    ours.head.set_weights(theirs.output_dense.get_weights())
    # Own copies of every weight: under JAX, `Variable.assign(other_variable)` (ViT.from_keras_hub's class token
    # and positions) can leave both variables on one buffer, which the first model's training step donates
    # (deletes), and the second model then fails with "Array has been deleted".
    ours.set_weights([np.array(w) for w in ours.get_weights()])
    return theirs, ours


def _compile(model, jit):
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=None,  # keras-hub's classifier would add an accuracy metric by default; ours has none
        jit_compile=jit,
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=6)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--mlp-dim", type=int, default=1024)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the mixed_bfloat16 policy (float32 variables) for both models")
    parser.add_argument("--jit", choices=("off", "on", "both"), default=None,
                        help="jit_compile settings (default both; on with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run: jit on, 3 repeats of 5 steps")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--iterations", type=int, default=None, help="default 5")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    iterations = args.iterations or 5
    jit_settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.jit or ("on" if args.quick else "both")]
    if args.dtype == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, (args.batch,)).astype("int32")
    rows = []
    for jit in jit_settings:
        theirs, ours = build(args)
        if args.dtype == "float32":  # same weights, same function (loose: GPUs may run float32 matmuls in TF32)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(ours(x[:4])), keras.ops.convert_to_numpy(theirs(x[:4])), atol=1e-2
            )
        assert ours.count_params() == theirs.count_params(), (ours.count_params(), theirs.count_params())
        _compile(theirs, jit)
        _compile(ours, jit)
        times = alternate(
            {"keras-hub": lambda: theirs.train_on_batch(x, y), "keras-tx": lambda: ours.train_on_batch(x, y)},
            repeats=repeats,
            iterations=iterations,
            warmup=3,
        )
        rows.append([
            "on" if jit else "off", f"{times['keras-hub'] * 1e3:.1f}", f"{times['keras-tx'] * 1e3:.1f}",
            f"{args.batch / times['keras-hub']:,.0f}", f"{args.batch / times['keras-tx']:,.0f}",
            f"{times['keras-hub'] / times['keras-tx']:.2f}",
        ])
        print(rows[-1], flush=True)
    print(f"\nViT training step, {args.image_size}x{args.image_size}x3 images, patch {args.patch_size}, "
          f"{args.num_layers} layers, {args.num_heads} heads, width {args.hidden_dim}, MLP {args.mlp_dim}, "
          f"{ours.count_params():,} parameters, batch {args.batch}, {args.dtype}; {environment()}; "
          f"median of {repeats} x {iterations} steps\n")
    print(markdown_table(["jit_compile", "keras-hub ms/step", "keras-tx ms/step", "keras-hub images/s",
                          "keras-tx images/s", "keras-hub / keras-tx time"], rows))


if __name__ == "__main__":
    main()
