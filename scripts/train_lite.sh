#!/usr/bin/env bash
# Retrain SparseTT-Lite (the shipped default weights) from scratch on CPU, then export the
# shippable fp16 checkpoint. Usage (from anywhere):
#
#   scripts/train_lite.sh [TRAIN_DIR] [OUT_CHECKPOINT]
#
#   TRAIN_DIR       the seven UAV123@10fps training sequences (default: ../shared/data/train)
#   OUT_CHECKPOINT  where the exported model goes (default: work_dir/train/sparsett-lite/lite_fp16.pt;
#                   copy it to sparsett_core/weights/default.pt to ship it). With the defaults the
#                   result is bit for bit the shipped file (training is deterministic on one thread).
#
# Duration (measured 2026-11-24 on the 2-core development VM, torch 2.13.0+cpu, shared with other
# jobs): see docs/lite.md. One torch thread is used: on a busy 2-core machine two OpenMP threads
# were 2.5x slower than one.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
TRAIN_DIR="${1:-../shared/data/train}"
OUT="${2:-work_dir/train/sparsett-lite/lite_fp16.pt}"
if [[ -f .venv/bin/activate ]]; then . .venv/bin/activate; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
start=$(date +%s)
sparsett-train --config config/train/lite.yaml --device cpu --no-progress \
  --set "data.datasets=[{kind: sequences, root: '$TRAIN_DIR', subset: '', ratio: 1.0, max_gap: 50}]"
# the shipped model is the average of the last three epochs' weights (LITE_EPOCHS overrides)
ckpts=()
for e in ${LITE_EPOCHS:-11 12 13}; do ckpts+=("work_dir/train/sparsett-lite/epoch-$e.pt"); done
python -m sparsett_core.model.lite export "${ckpts[@]}" "$OUT" --check-dir "$TRAIN_DIR"
echo "train_lite.sh: done in $(( ($(date +%s) - start) / 60 )) min -> $OUT"
