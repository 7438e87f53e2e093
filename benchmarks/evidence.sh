#!/usr/bin/env bash
# The multi-seed comparisons for the course's move to the paper authors' MNIST NiN (mnist_nin(),
# a 7x7 map before GAP at Fashion-MNIST's native 28 px), as benchmarks/accuracy.py runs writing
# <EVIDENCE_DIR>/<name>.json (each JSON records its command, machine and date).
#   bash benchmarks/evidence.sh                     # all of them, one after another
#   JOBS=2 OMP_NUM_THREADS=1 bash benchmarks/evidence.sh    # 2 at a time, one thread each
#   EVIDENCE_DIR=/tmp/ev EXTRA="--train-subset 256 --test-subset 128 --epochs 1 --seeds 0" \
#       bash benchmarks/evidence.sh                 # a quick check that every run works
#   ONLY="d2l_224 ablation" bash benchmarks/evidence.sh     # only these comparisons
# EXTRA is appended to every command (a later option wins).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DIR=${EVIDENCE_DIR:-benchmarks/results/mnist_nin}
JOBS=${JOBS:-1}
EXTRA=${EXTRA:-}
ONLY=${ONLY:-}
mkdir -p "$DIR"
SHORT="--train-subset 10000 --epochs 3 --resolution 28"  # 10,000 images, 3 epochs, native 28 px
FIVE="--seeds 0 1 2 3 4"
THREE="--seeds 0 1 2"
D2L_FAST="recipe=d2l, autocast=True, channels_last=True"  # d2l's optimisation at the course's speed
HEADS=(--variant "GAP: net=mnist" --variant "FC: net=mnist, net.head='fc'"
       --variant "FC + dropout: net=mnist, net.head='fc', net.head_dropout=0.5")
run() {  # name, then accuracy.py's arguments
    local name=$1; shift
    [[ -z $ONLY || " $ONLY " == *" $name "* ]] || return 0
    printf '%q ' "$PY" benchmarks/accuracy.py --mode quick --budget short "$@" $EXTRA --out "$DIR/$name.json"
    printf '> %q 2>&1\n' "$DIR/$name.log"
}
{
run gap_vs_fc $SHORT $FIVE --test-subset 5000 --shifts 0 1 2 3 4 "${HEADS[@]}"
run gap_vs_fc_small_data --train-subset 2000 --epochs 20 --resolution 28 $FIVE --test-subset 2000 "${HEADS[@]}"
run one_vs_two_1x1 $SHORT $THREE --test-subset 5000 \
    --variant "two 1x1 per block: net=mnist" --variant "one 1x1 per block: net=mnist, net.num_1x1=1"
run d2l_224 --seeds 0 --resolution 224 --epochs 1 --train-subset 2000 --test-subset 500 \
    --variant "d2l's network and recipe: net=d2l, recipe=d2l" --variant "d2l's network, course recipe:"
run ablation --train-subset 5000 --epochs 3 --resolution 28 $THREE --test-subset 5000 \
    --variant "course: net=mnist" \
    --variant "- BatchNorm: net=mnist, net.batch_norm=False" \
    --variant "+ ReLU before GAP: net=mnist, net.final_relu=True, net.zero_init_last=False" \
    --variant "SGD 0.1 (d2l's optimiser): net=mnist, $D2L_FAST" \
    --variant "SGD 0.1 + clipping: net=mnist, $D2L_FAST, grad_clip=2.0" \
    --variant "SGD 0.1 + smoothing: net=mnist, $D2L_FAST, label_smoothing=0.1"
run ablation_more --train-subset 5000 --epochs 3 --resolution 28 $THREE --test-subset 5000 \
    --variant "course: net=mnist" \
    --variant "- clipping: net=mnist, grad_clip=None" \
    --variant "- label smoothing: net=mnist, label_smoothing=0.0" \
    --variant "- momentum cycling: net=mnist, cycle_momentum=False" \
    --variant "- input normalisation: net=mnist, net.input_norm=None" \
    --variant "- BatchNorm: net=mnist, net.batch_norm=False" \
    --variant "- BatchNorm, Xavier init: net=mnist, net.batch_norm=False, net.init='xavier'"
} | xargs -d '\n' -P "$JOBS" -I{} bash -c '{}'
echo "evidence written to $DIR (a log beside each JSON)"
