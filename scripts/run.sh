#!/usr/bin/env bash
# The project's entry points. Each sets up .venv first (fast when already done).
#
#   bash scripts/run.sh lab     # open the tutorial notebooks in JupyterLab (with all they import)
#   bash scripts/run.sh test    # the full test suite: unit, notebooks (smoke mode), real browser
#                               # (JupyterLab, Notebook 7, Voila)
#   bash scripts/run.sh bench   # the benchmarks under benchmarks/
set -euo pipefail
cd "$(dirname "$0")/.."
command=${1:-}
shift || true
case "$command" in
  lab)
    bash scripts/setup.sh
    exec .venv/bin/jupyter lab notebooks/00_quickstart.ipynb "$@"
    ;;
  test)
    bash scripts/setup.sh --test
    # smoke mode for the notebooks; pytest exit 5 (no tests) is a failure here too
    export CI=${CI:-true}
    .venv/bin/python -m pytest tests "$@"
    .venv/bin/python -m pytest --nbval-lax -p no:randomly notebooks "$@"
    ;;
  bench)
    bash scripts/setup.sh --test
    for bench in benchmarks/bench_*.py; do
      echo "== $bench"
      .venv/bin/python "$bench" "$@"
    done
    ;;
  *)
    echo "usage: bash scripts/run.sh {lab|test|bench}" >&2
    exit 2
    ;;
esac
