#!/usr/bin/env bash
# GPU check for one H100, under 8 minutes in all: (1) d2l vs nin_utils training throughput at
# 224 px (short alternating windows), (2) the full recipe (all 60,000 images at 224 px) for
# EPOCHS epochs with its final test accuracy. Run from anywhere: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-10}   # full mode's default; ~60k x 10 images at 224 px fits the budget on an H100
LOGS=$(mktemp -d)

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# (1) ~1.5 min: warm-up, then 6 windows of 5 s per contender (d2l's 4 loader workers feed it).
timeout 180 "$PY" benchmarks/bench.py --resolutions 224 --windows 6 --seconds 5 \
    2>&1 | tee "$LOGS/bench.txt"

# (2) the rest: the full recipe; a fresh checkpoint path so no earlier run is resumed or clobbered.
# Progress bars go to train.err; the epoch table and the final accuracy to the screen.
if ! timeout 270 "$PY" -m nin_utils.train --mode full --epochs "$EPOCHS" \
        --checkpoint "$LOGS/nin_full.pt" 2>"$LOGS/train.err" | tee "$LOGS/train.txt"; then
    tail -c 2000 "$LOGS/train.err"; exit 1
fi

echo
echo "== summary (logs in $LOGS) =="
grep -E '^ *224 +(d2l|nin_utils)|ratio' "$LOGS/bench.txt"
grep -E 'examples/s' "$LOGS/train.txt"; grep -E '^ +[0-9]+ ' "$LOGS/train.txt" | tail -n 1
grep 'Final test accuracy' "$LOGS/train.txt"
