#!/usr/bin/env bash
# Every multi-seed comparison the chapters draw a conclusion from, as benchmarks/accuracy.py runs
# writing nin_utils/evidence/<name>.json (the JSON records the command, machine and date).
#   bash benchmarks/evidence.sh                     # all of them, one after another
#   JOBS=4 bash benchmarks/evidence.sh              # 4 at a time (a GPU has room for several)
#   EVIDENCE_DIR=/tmp/ev EXTRA="--train-subset 256 --test-subset 128 --epochs 1 --seeds 0" bash benchmarks/evidence.sh
# EXTRA is appended to every command (a later option wins): a quick check that every run works.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DIR=${EVIDENCE_DIR:-nin_utils/evidence}
JOBS=${JOBS:-1}
EXTRA=${EXTRA:-}
mkdir -p "$DIR"
FIVE="--seeds 0 1 2 3 4"
THREE="--seeds 0 1 2"
D2L_FAST="recipe=d2l, autocast=True, channels_last=True"  # d2l's optimisation at the course's speed
HEADS=(--variant "GAP:" --variant "FC: net.head='fc'" --variant "FC + dropout: net.head='fc', net.head_dropout=0.5")
run() {  # name, then accuracy.py's arguments
    local name=$1; shift
    printf '%q ' "$PY" benchmarks/accuracy.py --mode quick --budget short "$@" $EXTRA --out "$DIR/$name.json"
    printf '> %q 2>&1\n' "$DIR/$name.log"
}
{
run gap_vs_fc $FIVE --shifts 0 1 2 3 4 "${HEADS[@]}"
run gap_vs_fc_small_data $FIVE --train-subset 2000 --epochs 30 "${HEADS[@]}"
run one_vs_two_1x1 $FIVE --variant "two 1x1 per block:" --variant "one 1x1 per block: net.num_1x1=1"
run d2l_224 --seeds 0 1 2 --resolution 224 --epochs 1 \
    --variant "d2l's network and recipe: net=d2l, recipe=d2l" \
    --variant "d2l's network, course recipe: net.arch='d2l', net.batch_norm=False, net.dropout=0.5"
run ablation $THREE \
    --variant "course (Recipe(), mnist_nin()):" \
    --variant "- BatchNorm: net.batch_norm=False" \
    --variant "- label smoothing: label_smoothing=0.0" \
    --variant "- clipping: grad_clip=None" \
    --variant "- momentum cycling: cycle_momentum=False" \
    --variant "- weight decay: weight_decay=0.0" \
    --variant "- one-cycle (constant 1e-3): schedule='constant', lr=1e-3" \
    --variant "- input normalisation: net.input_norm=None" \
    --variant "- Kaiming (Xavier): net.init='xavier'" \
    --variant "+ ReLU before GAP: net.final_relu=True, net.zero_init_last=False" \
    --variant "SGD 0.1 (d2l's optimiser): $D2L_FAST" \
    --variant "SGD 0.1 + clipping: $D2L_FAST, grad_clip=2.0" \
    --variant "SGD 0.1 + smoothing: $D2L_FAST, label_smoothing=0.1" \
    --variant "SGD 0.1 + both: $D2L_FAST, grad_clip=2.0, label_smoothing=0.1" \
    --variant "as released, course recipe: net=released" \
    --variant "as released, d2l's recipe: net=released, net.init='xavier', net.input_norm=None, $D2L_FAST"
} | xargs -d '\n' -P "$JOBS" -I{} bash -c '{}'
echo "evidence written to $DIR (a log beside each JSON)"
