#!/usr/bin/env bash
# Train one recipe on every fold of the k-fold scheme (issue 15), one model per fold, then
# score them with benchmarks/bench_kfold.py.  Resumable: re-run the same command and the
# finished folds are skipped, an interrupted fold resumes exactly from its .state.pt.
#
#   bash scripts/train_kfold.sh OUT_DIR NAME [train options...]
#   bash scripts/train_kfold.sh runs/kfold frozen-s8 --arch effnet-lite0 --colour-weight 2.0 \
#       --stride 8 --steps 400 --batch-pairs 4 --crop 256 --val-every 100 --val-max-frames 30
#   .venv/bin/python benchmarks/bench_kfold.py --recipe "frozen-s8=runs/kfold/fold{fold}-frozen-s8.pt"
#
# Environment: DAVIS_ROOT (default ../shared/data/davis2016), K (5), FOLD_SEED (0), FOLDS
# (which folds, default all).  Each fold writes OUT_DIR/fold<i>-NAME.pt, its .state.pt every
# 100 steps, its history and its log.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,15p "$0" >&2; exit 2; }
out=$1 name=$2
shift 2
root=${DAVIS_ROOT:-../shared/data/davis2016}
k=${K:-5}
mkdir -p "$out"
for i in ${FOLDS:-$(seq 0 $((k - 1)))}; do
  model=$out/fold$i-$name.pt
  state=${model%.pt}.state.pt
  if [ -f "$model" ] && [ ! -f "$model.running" ]; then echo "fold $i: done ($model)"; continue; fi
  touch "$model.running"
  resume=()
  [ -f "$state" ] && resume=(--resume "$state")
  echo "fold $i/$k: training $model ${resume[*]}"
  .venv/bin/python -m simwidgets train --davis-root "$root" --out "$model" --fold "$i/$k" \
    --fold-seed "${FOLD_SEED:-0}" --history "${model%.pt}.history.json" --checkpoint-every 100 \
    --no-progress "${resume[@]}" "$@" 2>&1 | tee -a "${model%.pt}.log"
  rm -f "$model.running"
done
