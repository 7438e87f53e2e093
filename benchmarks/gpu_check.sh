#!/usr/bin/env bash
# GPU check, one script for a short lease. STEPS picks the steps (default all four, in this order):
#   throughput  d2l's code vs the course's train_step, d2l's NiN at 224 px (benchmarks/throughput.py)
#   full        the full recipe (full mode's main budget, course recipe) with its test accuracy
#               after every epoch on all 10,000 test images; below TARGET (default 0.93) fails
#   evidence    the multi-seed comparisons of benchmarks/evidence.sh, JOBS at a time
#   nbval       every instructor notebook and every student notebook of its own, in full mode,
#               the longest (by its stamped run time) last
# Logs go to ${OUT:-gpu_logs}. Any step that fails or times out stops the script with its status.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_logs}
STEPS=${STEPS:-throughput full evidence nbval}
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for step in $STEPS; do
    echo "== $step ($(date -u +%H:%M:%S))"
    case $step in
    throughput)
        timeout 200 "$PY" benchmarks/throughput.py --resolutions 224 --rounds 3 --seconds 4 2>&1 \
            | tee "$OUT/throughput.txt" ;;
    full)
        timeout 400 "$PY" benchmarks/accuracy.py --mode full --target "${TARGET:-0.93}" 2>&1 \
            | tee "$OUT/full_recipe.txt" ;;
    evidence)
        # Into $OUT, beside the other logs: never over the CPU evidence in benchmarks/results/.
        PYTHON="$PY" JOBS=${JOBS:-4} EVIDENCE_DIR="$OUT/evidence" timeout 600 bash benchmarks/evidence.sh 2>&1 \
            | tee "$OUT/evidence.txt" ;;
    nbval)
        notebooks=$("$PY" tools/execute_notebooks.py --by-run-time notebooks/[0-9]*.ipynb \
            $("$PY" tools/make_student.py --list-own))
        NIN_MODE=full TQDM_MININTERVAL=10 timeout 500 "$PY" -m pytest --nbval-lax --nbval-current-env \
            -p no:cacheprovider -v $notebooks 2>&1 | tee "$OUT/nbval.txt" ;;
    *)
        echo "unknown step $step: use throughput, full, evidence or nbval" >&2
        exit 2 ;;
    esac
done
echo "GPU check passed: every step succeeded (logs in $OUT)"
