#!/usr/bin/env bash
# One prepared run on a lent GPU machine (JAX + CUDA, no TensorFlow, no network): every GPU measurement of
# benchmarks/RESULTS.md in one command, within a ~10-minute slot.
#
# Before (TensorFlow side, this checkout):
#   bash ../shared/tools/jax-gpu-wheels.sh                       # keras / keras-hub wheels into .whl/
#   python benchmarks/translation.py prepare --data-dir ../shared/datasets/multi30k --out .data/multi30k
#   python benchmarks/sst2.py prepare --data-dir ../shared/datasets/sst2 --out .data/sst2
#   mkdir -p .data/tiny_shakespeare && cp ../shared/datasets/tiny_shakespeare/input.txt .data/tiny_shakespeare/
#   cp -r ../shared/datasets/fashion_mnist .data/               # .data/ and .whl/ are git-ignored; carry both
# On the machine:  OUT=<folder> bash benchmarks/gpu_session.sh [phase ...]
#   phases: speed, shakespeare, train (translation, sst2, baby seeds and vision together); default all three.
# After: python benchmarks/translation.py score ... and python benchmarks/sst2.py score ... on the returned shards.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT/runs"
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
LOG="$OUT/log.txt"
phases=${*:-speed shakespeare train}
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
say "$(nvidia-smi -L 2>&1 | head -1); $(python3 -c 'import jax, keras; print("jax", jax.__version__, "keras", keras.__version__, jax.devices())' 2>&1 | tail -1)"

for phase in $phases; do
  case $phase in
  speed)  # ours vs keras-hub, alternating in one process; alone on the GPU
    say "speed: GPT train/generate, ViT train (bf16 and float32)"
    timeout 150 python3 benchmarks/gpt.py train generate --config shakespeare --quick --dtype bfloat16 \
      >>"$OUT/speed.md" 2>>"$LOG"
    timeout 80 python3 benchmarks/gpt.py train --config shakespeare --quick --dtype float32 >>"$OUT/speed.md" 2>>"$LOG"
    timeout 60 python3 benchmarks/vit.py --quick --dtype bfloat16 >>"$OUT/speed.md" 2>>"$LOG"
    timeout 60 python3 benchmarks/vit.py --quick --dtype float32 >>"$OUT/speed.md" 2>>"$LOG"
    ;;
  shakespeare)  # nanoGPT's shakespeare_char recipe, alone on the GPU (its training time is the measurement)
    say "shakespeare_char GPT, 5000 steps, bf16"
    timeout 200 python3 benchmarks/shakespeare.py --config shakespeare --model gpt --mixed-precision mixed_bfloat16 \
      --steps-per-execution 50 --data-dir .data/tiny_shakespeare --out "$OUT/shakespeare.jsonl" >>"$LOG" 2>&1
    ;;
  train)  # quality runs side by side (each has its own time budget)
    say "translation, sst2, baby seeds, vision in parallel"
    timeout 330 python3 benchmarks/translation.py train --data .data/multi30k --out "$OUT/runs/translation" \
      --epochs 40 --time-budget 200 >"$OUT/runs/translation.log" 2>&1 &
    timeout 330 python3 benchmarks/sst2.py train --data .data/sst2 --out "$OUT/runs/sst2" --pretrain-epochs 60 \
      --pretrain-budget 150 --finetune-epochs 3 >"$OUT/runs/sst2.log" 2>&1 &
    timeout 330 python3 benchmarks/shakespeare.py --config baby --model gpt lstm rnn --seeds 1337 1338 1339 \
      --steps-per-execution 50 --data-dir .data/tiny_shakespeare --out "$OUT/baby.jsonl" >"$OUT/runs/baby.log" 2>&1 &
    timeout 330 python3 benchmarks/vision.py all --gpu --data-dir .data/fashion_mnist --out-dir "$OUT/runs/vision" \
      >"$OUT/runs/vision.log" 2>&1 &
    wait
    ;;
  esac
done
say "done"
# At most 8 files come back: weight shards over 8 MB go on their own, the rest in one archive.
cd "$OUT" && find runs -type f -name '*.npz' -size +4M | while read -r f; do mv "$f" "${f//\//__}"; done
ls -laR "$OUT" >>"$LOG"
tar -czf results.tar.gz --exclude='*.tar.gz' runs *.jsonl *.md log.txt 2>/dev/null && rm -rf runs *.jsonl *.md
