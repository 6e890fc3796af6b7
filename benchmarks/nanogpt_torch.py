"""nanoGPT's model and training recipe in PyTorch, written from its description, to run side by side with keras-tx.

Not part of keras-tx and not run by its tests: it needs PyTorch, which keras-tx does not depend on. Install it in
a venv of its own (never the project's):

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-*.whl numpy
    /tmp/torchenv/bin/python benchmarks/nanogpt_torch.py --data-dir ../shared/datasets/tiny_shakespeare

The model is GPT-2 as nanoGPT publishes it: pre-LN blocks, causal self-attention, a GELU MLP 4x wide, learned
positions, the output projection tied to the token embedding, N(0, 0.02) weights with each block's two residual
output projections scaled down by 1/sqrt(2 * n_layer), no biases in linear and LayerNorm layers (nanoGPT's
training default, bias=False). The recipe: AdamW (beta2 0.99, weight decay 0.1 on 2-D weights only), linear
warm-up then cosine decay to the minimum learning rate, global gradient-norm clip 1.0. The defaults are nanoGPT's
CPU "baby" configuration (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 steps, lr 1e-3 -> 1e-4,
100 warm-up steps, dropout 0), the same as `keras-tx train gpt`'s.

Data: input.txt of --data-dir, characters as tokens (vocabulary: the sorted distinct characters of the whole
text), first 90% for training, last 10% for validation. Validation loss: the mean over --eval-batches (200,
nanoGPT's eval_iters) fixed random batches of the validation split; the training loss likewise on the training
split.

Prints one line per evaluation and, at the end, one JSON line: parameters, median ms per training step (the
optimizer steps only: batch sampling, forward, backward, clip, update; evaluations excluded), final losses.
`--steps 300 --eval-interval 0` is a timing-only run.

Side by side with keras-tx, alternating on the same machine (benchmarks/harness.py's idea, across two processes
and two frameworks):

    /tmp/torchenv/bin/python benchmarks/nanogpt_torch.py --data-dir ../shared/datasets/tiny_shakespeare \
        --alternate-with .venv/bin/python --rounds 15 --round-steps 20

starts `benchmarks/gpt.py nanogpt` (our GPT, the keras-tx recipe, jit_compile on, `model.fit` on the tf.data
pipeline of `keras-tx train gpt`; `--keras-loop train_on_batch` for numpy batches instead) under the given Python
as a child, then takes turns: --round-steps steps here, then as many there, --rounds times; only one of the two
computes at any moment. The first round of each is dropped (compilation, warm-up). Both are limited to --threads
threads (torch.set_num_threads; TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS for the child). Prints the
median ms per step of each and the ratio.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t; one matmul makes Q, K and V."""

    def __init__(self, width, num_heads, bias, dropout):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.output = nn.Linear(width, width, bias=bias)
        self.output.is_residual_projection = True
        self.dropout = dropout
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x):
        batch, length, width = x.shape
        # (B, T, 3D) -> three (B, N, T, H)
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).split(width, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(batch, length, width)  # (B, N, T, H) -> (B, T, D)
        return self.output_dropout(self.output(y))


class FeedForward(nn.Module):
    def __init__(self, width, bias, dropout):
        super().__init__()
        self.expand = nn.Linear(width, 4 * width, bias=bias)
        self.contract = nn.Linear(4 * width, width, bias=bias)
        self.contract.is_residual_projection = True
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.contract(F.gelu(self.expand(x))))


class Block(nn.Module):
    """Pre-LN: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width, num_heads, bias, dropout):
        super().__init__()
        self.attention_norm = nn.LayerNorm(width, bias=bias)
        self.attention = CausalSelfAttention(width, num_heads, bias, dropout)
        self.mlp_norm = nn.LayerNorm(width, bias=bias)
        self.mlp = FeedForward(width, bias, dropout)

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, vocabulary_size, context, num_layers, num_heads, width, bias=False, dropout=0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary_size, width)
        self.position_embedding = nn.Embedding(context, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, num_heads, bias, dropout) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(width, bias=bias)
        residual_std = 0.02 / math.sqrt(2 * num_layers)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if getattr(module, "is_residual_projection", False) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, token_ids):
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        x = self.dropout(self.token_embedding(token_ids) + self.position_embedding(positions))  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.weight.T  # tied: logits = h @ E^T, (B, T, V)


def learning_rate(step, args):
    """Linear warm-up over `warmup_steps`, then a half cosine from the peak to `min_lr` at `steps`."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps))
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (args.lr - args.min_lr)


def load(data_dir):
    with open(os.path.join(data_dir, "input.txt"), encoding="utf-8") as f:
        text = f.read()
    symbols = sorted(set(text))
    lookup = np.zeros(max(map(ord, symbols)) + 1, dtype=np.int64)
    lookup[[ord(c) for c in symbols]] = np.arange(len(symbols))
    ids = torch.from_numpy(lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)])
    split = int(0.9 * len(ids))
    return ids[:split], ids[split:], len(symbols)


def batch(data, args, generator):
    starts = torch.randint(len(data) - args.context, (args.batch_size,), generator=generator)
    x = torch.stack([data[s:s + args.context] for s in starts])
    y = torch.stack([data[s + 1:s + 1 + args.context] for s in starts])
    return x, y


@torch.no_grad()
def evaluate(model, batches):
    model.eval()
    losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches]
    model.train()
    return sum(losses) / len(losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a folder with input.txt")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--beta2", type=float, default=0.99)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--bias", action="store_true", help="biases in linear and LayerNorm layers (GPT-2's)")
    parser.add_argument("--eval-interval", type=int, default=250, help="0: evaluate never (a timing run)")
    parser.add_argument("--eval-batches", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--alternate-with", metavar="PYTHON",
                        help="a Python with keras-tx installed: time against benchmarks/gpt.py nanogpt, taking turns")
    parser.add_argument("--rounds", type=int, default=15, help="turns of each with --alternate-with")
    parser.add_argument("--round-steps", type=int, default=20, help="steps per turn with --alternate-with")
    parser.add_argument("--keras-loop", choices=("fit", "train_on_batch"), default="fit",
                        help="with --alternate-with: how keras-tx trains (benchmarks/gpt.py nanogpt --loop)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_ids, val_ids, vocabulary_size = load(args.data_dir)
    model = GPT(vocabulary_size, args.context, args.num_layers, args.num_heads, args.width, args.bias, args.dropout)
    parameters = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, args.beta2),
    )
    train_generator = torch.Generator().manual_seed(args.seed)
    eval_generator = torch.Generator().manual_seed(args.seed + 1)
    evaluations = args.eval_batches if args.eval_interval and not args.alternate_with else 0
    val_batches = [batch(val_ids, args, eval_generator) for _ in range(evaluations)]
    train_batches = [batch(train_ids, args, eval_generator) for _ in range(evaluations)]
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
          f"{parameters:,} parameters ({parameters - args.context * args.width:,} without positions); "
          f"vocabulary {vocabulary_size}; train {len(train_ids):,} / val {len(val_ids):,} tokens", flush=True)

    def train_step(step):
        """One optimizer step; returns its wall-clock seconds."""
        tick = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        x, y = batch(train_ids, args, train_generator)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        optimizer.step()
        losses.append(loss.item())
        return time.perf_counter() - tick

    losses = []
    if args.alternate_with:
        return alternate(train_step, args)
    step_times, history, train_history = [], {}, {}
    start = time.perf_counter()
    for step in range(args.steps):
        step_times.append(train_step(step))
        done = step + 1
        if args.eval_interval and (done % args.eval_interval == 0 or done == args.steps):
            history[done] = evaluate(model, val_batches)
            train_history[done] = evaluate(model, train_batches)
            recent = statistics.median(step_times[-args.eval_interval:]) * 1e3
            print(f"step {done}: val loss {history[done]:.4f}, train loss {train_history[done]:.4f} "
                  f"({args.eval_batches} batches of each split; mean of the last 250 training steps "
                  f"{statistics.fmean(losses[-250:]):.4f}), {recent:.1f} ms/step", flush=True)
    steady = step_times[10:] or step_times  # the first steps warm up allocators and thread pools
    print(json.dumps({
        "framework": f"torch {torch.__version__}", "threads": torch.get_num_threads(), "parameters": parameters,
        "steps": args.steps, "ms_per_step_median": round(statistics.median(steady) * 1e3, 2),
        "ms_per_step_mean": round(statistics.fmean(steady) * 1e3, 2),
        "wall_s": round(time.perf_counter() - start, 1), "val_loss": history, "train_loss": train_history,
        "train_loss_last_250": round(statistics.fmean(losses[-250:]), 4),
    }), flush=True)


def alternate(train_step, args):
    """Take turns with keras-tx's GPT in a child process; print both medians and their ratio."""
    here = os.path.dirname(os.path.abspath(__file__))
    threads = str(args.threads)
    child = subprocess.Popen(
        [args.alternate_with, os.path.join(here, "gpt.py"), "nanogpt", "--data-dir", os.path.abspath(args.data_dir),
         "--threads", threads, "--seed", str(args.seed), "--loop", args.keras_loop],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(here),
        env={**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads},
    )

    def theirs(steps):  # the child answers each step count with one JSON line: the steps' seconds
        child.stdin.write(f"{steps}\n")
        child.stdin.flush()
        while True:
            line = child.stdout.readline()
            if not line:
                raise SystemExit("the keras-tx child exited early")
            if line.startswith("["):
                return json.loads(line)

    times = {"torch": [], "keras-tx": []}
    step = 0
    for round_ in range(args.rounds):
        ours = [train_step(step + i) for i in range(args.round_steps)]
        step += args.round_steps
        other = theirs(args.round_steps)
        if round_:  # the first round compiles (keras-tx) and warms up (both)
            times["torch"] += ours
            times["keras-tx"] += other
        print(f"round {round_ + 1}: torch {statistics.median(ours) * 1e3:.1f} ms/step, keras-tx "
              f"{statistics.median(other) * 1e3:.1f} ms/step", flush=True)
    child.stdin.close()
    child.wait()
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(json.dumps({
        "threads": args.threads, "keras_loop": args.keras_loop, "rounds_timed": args.rounds - 1,
        "round_steps": args.round_steps,
        "torch_ms_per_step_median": round(medians["torch"], 2),
        "keras_tx_ms_per_step_median": round(medians["keras-tx"], 2),
        "torch_over_keras_tx": round(medians["torch"] / medians["keras-tx"], 3),
    }), flush=True)


if __name__ == "__main__":
    main()
