#!/usr/bin/env bash
# `make gpu-check`: what to run the day an NVIDIA GPU is lent, in one command and one
# report (target: under 8 minutes from a fresh clone with pip's wheel cache warm).
#   1. build: the venv and the extension for this GPU's arch only
#   2. tests: every CUDA, Triton and NVRTC test on the GPU (no emulated backends)
#   3. compute-sanitizer memcheck + racecheck on a subset of the CUDA tests
#   4. bench: `python -m bench --device cuda --quick` over the kernel ops (GB/s, % of
#      HBM peak; fp8_gemm TFLOP/s at 8192^3 and the decode shapes beside torch._scaled_mm
#      and bf16 matmul)
#   5. report: $OUT/report.json and $OUT/report.md (python -m bench.gpu_report)
# Every step runs even when an earlier one fails (a failed build stops it); the exit
# status is non-zero when any step failed. Without a GPU it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-gpu-check}
PY=.venv/bin/python

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "make gpu-check: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to check, exiting 0"
  exit 0
fi
# compute capability -> TORCH_CUDA_ARCH_LIST entry; 9.0 and 10.0 need the "a" targets
# (wgmma, tcgen05) that csrc/cuda_archs.txt also lists
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
case $CC in 9.0 | 10.0) ARCH=${CC}a ;; *) ARCH=$CC ;; esac
echo "make gpu-check: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), compute capability $CC -> arch $ARCH"

rm -rf "$OUT"
mkdir -p "$OUT/logs"
STEPS=$OUT/steps.tsv
: >"$STEPS"
# step NAME TIMEOUT_S CMD...: runs CMD with its output in $OUT/logs/NAME.log, records the step
step() {
  local name=$1 limit=$2
  shift 2
  local log=$OUT/logs/$name.log t0 rc
  t0=$(date +%s)
  echo "== $name: $*"
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$log" >>"$STEPS"
  tail -3 "$log" | sed 's/^/    /'
  [ "$rc" = 0 ] || echo "   FAILED ($name: exit $rc; log $log)"
  return "$rc"
}

build() {
  make .venv/.deps &&
    TORCH_CUDA_ARCH_LIST=$ARCH NVILA_KERNELS_REQUIRE_BUILD=1 $PY -m pip install -q --no-build-isolation -e . &&
    touch .venv/.built && $PY -m nvila_kernels
}
step build 300 build || { $PY -m bench.gpu_report "$OUT" 2>/dev/null; exit 1; }

# TRITON_INTERPRET unset: Triton compiles for the GPU. The emu backend is the CPU's.
unset TRITON_INTERPRET
step tests 240 $PY -m pytest -q -n 4 -p no:cacheprovider tests -m "not toolchain" \
  -k "(cuda or triton or nvrtc or gpu) and not emu"
step sanitize 180 make sanitize \
  SANITIZE_TESTS="tests/test_spatial_compress.py tests/test_fp8.py tests/test_merge_compress.py"
step bench 240 $PY -m bench --device cuda --quick --out "$OUT/bench" \
  --ops spatial_compress,temporal_pool,merge_compress,multiscale_tile,fp8_gemm,fp8_quantize
$PY -m bench.gpu_report "$OUT"
