#!/usr/bin/env bash
# The install paths of nvila_kernels, each checked from a scratch directory (`make
# install-check`; CI runs it). Needs the dev venv (.venv, made by `make build`).
#   1. sdist + wheel (`python -m build`), the wheel built from the sdist with the full
#      CUDA arch list, installed into a fresh target dir: `python -m nvila_kernels`
#      reports the cpu backend and the compiled archs.
#   2. NVILA_KERNELS_NO_BUILD=1: a pure-Python wheel; the package imports and says that
#      no compiled extension is present and that, without it, NVRTC cannot stand in for
#      the CUDA kernels (the launch planners are C++): reference and Triton only.
# The third path, CPU-only torch ($CPU_TORCH, its +cpu wheel) installed from the sdist, is
# checked by `make vllm-check` (.ci/vllm_check.sh), whose venv is exactly that.
# The version ($PYTHON) is pinned in the Makefile, which runs this script.
set -euo pipefail
: "${PYTHON:?run through make install-check (the Makefile pins PYTHON)}"
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d /tmp/nvila-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

# Run `python -m nvila_kernels` with $2 on PYTHONPATH=$1 (outside the checkout, without
# the checkout's editable-install finder), and require each further argument in its output.
probe() {
  local site=$1 python=$2
  shift 2
  local out
  out=$(cd "$WORK" && PYTHONPATH="$site" "$python" -c "
import sys
sys.meta_path = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]
import nvila_kernels as nk
assert nk.__file__.startswith('$site'), nk.__file__
print(nk.info())")
  echo "$out" | sed 's/^/    /'
  for want in "$@"; do
    grep -qF -- "$want" <<<"$out" || { echo "install-check: expected '$want' in the output above" >&2; exit 1; }
  done
}

echo "== 1. sdist + wheel (python -m build), wheel built from the sdist"
t0=$(date +%s)
NVILA_KERNELS_REQUIRE_BUILD=1 "$PY" -m build --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; exit 1; }
grep -h "nvila_kernels:" "$WORK/build.log" | sed 's/^/    /'
echo "    built in $(($(date +%s) - t0)) s: $(cd "$WORK/dist" && ls)"
"$PY" -m pip install -q --no-deps --target "$WORK/site-wheel" "$WORK"/dist/*.whl
ARCHS=$(grep -m1 '^[0-9]' csrc/cuda_archs.txt)  # the default arch list
probe "$WORK/site-wheel" "$PY" "backend cpu       available on cpu" "compiled CUDA archs: $ARCHS"

echo "== 2. NVILA_KERNELS_NO_BUILD=1: pure Python"
NVILA_KERNELS_NO_BUILD=1 "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/pure" . >/dev/null
"$PY" -m pip install -q --no-deps --target "$WORK/site-pure" "$WORK"/pure/*.whl
if compgen -G "$WORK/site-pure/nvila_kernels/_C*" >/dev/null; then
  echo "install-check: the NO_BUILD wheel contains a compiled extension" >&2
  exit 1
fi
probe "$WORK/site-pure" "$PY" "compiled extension: not available (this install has no compiled extension" "backend reference available on cpu" \
  "CUDA kernels through NVRTC: unavailable (it needs the compiled extension's launch planners"

echo "install-check: all install paths OK"
