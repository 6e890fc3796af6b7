"""Where a GPT training step spends its time: each part compiled and timed on its own (TensorFlow backend, CPU).

    python benchmarks/profile_gpt.py [--config baby|shakespeare] [--jit on|off] [--repeats 7 --iterations 10]

With XLA a step is a handful of fused executables, so an op-level trace says little about which part of the
model costs what. Instead every part below is its own compiled function on inputs of the real shapes,
timed in alternation with the others (benchmarks/harness.py), and reported as a share of the full step:

    full step        forward, backward and the AdamW update (clip 1.0, decay on matrices), as `fit` runs it
    forward+backward the loss and its gradients, no update
    forward          the loss only
    update           AdamW applied to fixed gradients (every variable, the clip included)
    attention x L    one block's attention sublayer (LayerNorm, Q/K/V, causal softmax attention, output
                     projection), forward+backward with respect to its input and weights, times the block count
    mlp x L          one block's feed-forward sublayer (LayerNorm, Dense+GELU, Dense), likewise
    head             token + position embedding, final LayerNorm, tied logits and the cross-entropy, likewise

The parts overlap (forward+backward contains the sublayers), so they do not sum to the step; the three part
rows plus the update should come close to it. A parts sum far below the step points at what the isolated
pieces leave out (residual adds, the graph's glue, memory traffic between them).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.gpt import CONFIGS, VOCABULARY  # noqa: E402
from benchmarks.harness import alternate, environment, markdown_table  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="baby")
    parser.add_argument("--jit", choices=("on", "off"), default="on")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("profile_gpt.py times TensorFlow functions; run it with KERAS_BACKEND=tensorflow.")
    import tensorflow as tf

    from keras_tx import training
    from keras_tx.models import GPT

    config = CONFIGS[args.config]
    batch, context, width = config["batch"], config["context"], config["hidden_dim"]
    model = GPT(VOCABULARY, config["num_layers"], config["num_heads"], width, 4 * width, context)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, VOCABULARY, (batch, context)), "int32")
    y = tf.constant(rng.integers(0, VOCABULARY, (batch, context)), "int32")
    hidden = tf.constant(rng.normal(size=(batch, context, width)), "float32")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = training.make_optimizer(10_000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                                        weight_decay=0.1, beta_2=0.99, clip_norm=1.0)
    training.exclude_non_matrices(optimizer, model)
    model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=args.jit == "on")
    variables = model.trainable_variables
    optimizer.build(variables)
    compiled = lambda fn: tf.function(fn, jit_compile=args.jit == "on")

    def loss_of(inputs, targets):
        return loss_fn(targets, model(inputs))

    @compiled
    def forward():
        return loss_of(x, y)

    @compiled
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = loss_of(x, y)
        return tape.gradient(loss, variables)

    fixed_gradients = [tf.constant(g) for g in forward_backward()]

    @compiled
    def update():
        optimizer.apply(fixed_gradients, variables)
        return optimizer.iterations

    block = model.blocks[0]

    def sublayer_grad(fn, weights):
        @compiled
        def run():
            with tf.GradientTape() as tape:
                tape.watch(hidden)
                out = fn(hidden)
                loss = tf.reduce_sum(out * out)
            return tape.gradient(loss, [hidden] + weights)

        return run

    attention = sublayer_grad(
        lambda h: block.self_attention(*(2 * [block.self_attention_norm(h)]), use_causal_mask=True),
        block.self_attention.trainable_variables + block.self_attention_norm.trainable_variables,
    )
    mlp = sublayer_grad(
        lambda h: block.feedforward(block.feedforward_norm(h)),
        block.feedforward.trainable_variables + block.feedforward_norm.trainable_variables,
    )
    head_variables = (model.token_embedding.trainable_variables + model.position_embedding.trainable_variables
                      + model.layer_norm.trainable_variables)

    @compiled
    def head():
        with tf.GradientTape() as tape:
            h = model.token_embedding(x)
            h = h + model.position_embedding(h)
            logits = model.token_embedding(model.layer_norm(h), reverse=True)
            loss = loss_fn(y, logits)
        return tape.gradient(loss, head_variables)

    contenders = {
        "full step (train_on_batch)": lambda: model.train_on_batch(x, y),
        "forward+backward": lambda: [g.numpy() for g in forward_backward()][:0],
        "forward": lambda: forward().numpy(),
        "update (AdamW)": lambda: update().numpy(),
        "attention sublayer (one block)": lambda: [g.numpy() for g in attention()][:0],
        "mlp sublayer (one block)": lambda: [g.numpy() for g in mlp()][:0],
        "embeddings + logits + loss": lambda: [g.numpy() for g in head()][:0],
    }
    times = alternate(contenders, repeats=args.repeats, iterations=args.iterations, warmup=3)
    step = times["full step (train_on_batch)"]
    layers = config["num_layers"]
    rows = [[name, f"{t * 1e3:.2f}", f"{100 * t / step:.0f}%"] for name, t in times.items()]
    rows.insert(5, [f"attention x {layers}", f"{times['attention sublayer (one block)'] * layers * 1e3:.2f}",
                    f"{100 * times['attention sublayer (one block)'] * layers / step:.0f}%"])
    rows.insert(7, [f"mlp x {layers}", f"{times['mlp sublayer (one block)'] * layers * 1e3:.2f}",
                    f"{100 * times['mlp sublayer (one block)'] * layers / step:.0f}%"])
    parts = layers * (times["attention sublayer (one block)"] + times["mlp sublayer (one block)"]) + times[
        "embeddings + logits + loss"] + times["update (AdamW)"]
    rows.append(["sum: attention x L + mlp x L + embeddings/logits/loss + update", f"{parts * 1e3:.2f}",
                 f"{100 * parts / step:.0f}%"])
    print(f"\nGPT step profile, config {args.config} {config}, jit_compile {args.jit}; {environment()}; "
          f"median of {args.repeats} x {args.iterations} calls\n")
    print(markdown_table(["part", "ms", "share of the full step"], rows))


if __name__ == "__main__":
    main()
