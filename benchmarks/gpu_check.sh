#!/usr/bin/env bash
# GPU check, one script for a short lease: (1) d2l vs nin_utils training throughput at 224 px,
# (2) the full recipe (all 60,000 images at 224 px) with its per-epoch test accuracy and time,
# (3) nbval over every notebook in full mode (skipped with NBVAL=0: the GPU workflow runs its own).
# Logs go to ${OUT:-gpu_logs}. Run from anywhere: bash benchmarks/gpu_check.sh
# Any step that fails or times out (or an accuracy below --target) stops the script with its status.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_logs}
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

timeout 150 "$PY" benchmarks/throughput.py --resolutions 224 --rounds 4 --seconds 5 2>&1 | tee "$OUT/throughput.txt"
timeout 300 "$PY" benchmarks/accuracy.py --mode full --target 0.93 2>&1 | tee "$OUT/full_recipe.txt"
if [ "${NBVAL:-1}" != 0 ]; then
    NIN_MODE=full TQDM_MININTERVAL=10 timeout 400 "$PY" -m pytest --nbval-lax --nbval-current-env \
        -p no:cacheprovider notebooks 2>&1 | tee "$OUT/nbval.txt"
fi
echo "GPU check passed: every step succeeded (logs in $OUT)"
