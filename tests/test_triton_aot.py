"""Ahead-of-time compilation of the Triton FP8 kernels for real GPUs, without one.

triton.compile(ASTSource, target=GPUTarget("cuda", arch, 32)) runs the whole
pipeline (TTIR -> TTGIR -> LLVM IR -> PTX -> cubin with the ptxas shipped in the
triton wheel) with no GPU and no driver; the PTX is then read for the
instructions we rely on:
  - sm_90: the FP8 GEMM is wgmma on e4m3 operands (no fp16 upcast), pipelined with
    cp.async; sm_89: mma.sync on e4m3 operands;
  - quantize: the saturating FP8 conversion instruction where one exists (sm_89+),
    IEEE division (div.rn, as the reference), and on sm_80 the integer encoder.

The kernels must be defined with TRITON_INTERPRET unset, and tests/conftest.py sets
it, so the compilation runs in a subprocess with a clean environment; it reports
each kernel's PTX facts as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
pytestmark = pytest.mark.toolchain

ROOT = Path(__file__).resolve().parents[1]

# Runs in the subprocess: compile every case, print {case: facts} as JSON.
_COMPILE_SCRIPT = r"""
import json, re, sys
import triton
from triton.backends.compiler import GPUTarget
from nvila_kernels.triton import fp8

def facts(kernel, signature, constexprs, arch, num_warps, num_stages=3, aligned=()):
    # aligned: the arguments the JIT would specialize as divisible by 16 (pointers
    # of contiguous tensors, sizes that are multiples of 16)
    names = list(signature)
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    k = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                       options={"num_warps": num_warps, "num_stages": num_stages})
    ptx = k.asm["ptx"]
    pattern = r"((?:wgmma\.mma_async|mma\.sync|cvt|div|atom)\.[\w.:]+)"
    return {"instructions": sorted(set(re.findall(pattern, ptx))), "shared": k.metadata.shared,
            "cp_async": ptx.count("cp.async"), "cubin_bytes": len(k.asm["cubin"])}

out = {}
gemm_sig = {"a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv", "scale_a_ptr": "*fp32", "scale_b_ptr": "*fp32",
            "bias_ptr": "*fp32", "out_ptr": "*bf16", "M": "i32", "N": "i32", "K": "i32", "M_BUCKET": "i32",
            "HAS_BIAS": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr",
            "BLOCK_K": "constexpr", "GROUP_M": "constexpr"}
aligned = ("a_ptr", "b_ptr", "scale_a_ptr", "scale_b_ptr", "bias_ptr", "out_ptr", "M", "N", "K")
for arch in (90, 89):
    family = fp8.gemm_family(divmod(arch, 10))
    for regime, M in (("prefill", 4096), ("decode", 1)):  # prefill-sized and decode-sized problems
        aligned_here = aligned if M % 16 == 0 else tuple(n for n in aligned if n != "M")
        for i, (bm, bn, bk, warps, stages) in enumerate(fp8.GEMM_TILES[(regime, family)]):
            const = {"HAS_BIAS": True, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}
            out[f"gemm_sm{arch}_M{M}_{i}"] = facts(fp8._fp8_gemm_kernel, gemm_sig, const, arch,
                                                    warps, stages, aligned_here)
quant_sig = {"x_ptr": "*bf16", "scale_ptr": "*fp32", "q_ptr": "*u8", "scale_out_ptr": "*fp32", "n": "i32",
             **{c: "constexpr" for c in ("FP8_MAX", "AMAX_FLOOR", "MANT", "BIAS", "DYNAMIC", "HW_CVT", "BLOCK")}}
for name, (mant, bias, fmax) in (("e4m3", (3, 7, 448.0)), ("e5m2", (2, 15, 57344.0))):
    for arch, hw in ((90, True), (80, False)):
        const = dict(FP8_MAX=fmax, AMAX_FLOOR=1e-12, MANT=mant, BIAS=bias, DYNAMIC=True, HW_CVT=hw,
                     BLOCK=fp8._QUANT_BLOCK)
        out[f"quantize_{name}_sm{arch}"] = facts(fp8._quantize_kernel, quant_sig, const, arch, 8)
out["amax_sm90"] = facts(fp8._amax_kernel, {"x_ptr": "*bf16", "amax_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                         {"BLOCK": fp8._QUANT_BLOCK}, 90, 8)
print("AOT_JSON" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def aot(tmp_path_factory) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton_cache"))  # compile for real, every run
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU needed or used
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"AOT compilation failed:\n{proc.stderr[-4000:]}"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("AOT_JSON"))
    return json.loads(line[len("AOT_JSON") :])


def _has(facts: dict, pattern: str) -> bool:
    return any(re.fullmatch(pattern, ins) for ins in facts["instructions"])


def _gemm_cases(arch: int) -> list[str]:
    """Every autotune candidate of both regimes, compiled for the GPU family of `arch`."""
    from nvila_kernels.triton import fp8

    family = fp8.gemm_family(divmod(arch, 10))
    return [
        f"gemm_sm{arch}_M{M}_{i}"
        for regime, M in (("prefill", 4096), ("decode", 1))
        for i in range(len(fp8.GEMM_TILES[(regime, family)]))
    ]


@pytest.mark.parametrize("case", _gemm_cases(90))
def test_gemm_sm90_is_fp8_wgmma(aot, case):
    f = aot[case]
    assert _has(f, r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k32\.f32\.e4m3\.e4m3"), f["instructions"]
    assert not _has(f, r"mma\.sync.*"), "fell back to mma.sync"
    assert not _has(f, r"cvt\..*f16.*e4m3.*"), "fp8 operands upcast to fp16"
    assert f["cp_async"] > 0, "operand loads are not pipelined (cp.async)"
    assert f["shared"] <= 227 * 1024  # fits an H100 SM
    assert f["cubin_bytes"] > 0


@pytest.mark.parametrize("case", _gemm_cases(89))
def test_gemm_sm89_is_fp8_mma_sync(aot, case):
    f = aot[case]
    assert _has(f, r"mma\.sync\.aligned\.m16n8k32\.row\.col\.f32\.e4m3\.e4m3\.f32"), f["instructions"]
    assert not _has(f, r"cvt\..*f16.*e4m3.*"), "fp8 operands upcast to fp16"
    assert f["shared"] <= 99 * 1024  # fits an Ada SM


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_quantize_sm90_uses_satfinite_cvt(aot, fmt):
    f = aot[f"quantize_{fmt}_sm90"]
    assert _has(f, rf"cvt\.rn\.satfinite\.{fmt}x2\.f32"), f["instructions"]
    assert _has(f, r"div\.rn\.f32") and not _has(f, r"div\.(full|approx).*"), "x / scale must be IEEE division"


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_quantize_sm80_uses_integer_encoder(aot, fmt):
    f = aot[f"quantize_{fmt}_sm80"]
    assert not _has(f, r"cvt\..*(e4m3|e5m2).*"), f["instructions"]
    assert _has(f, r"div\.rn\.f32")


def test_amax_is_one_atomic_per_program(aot):
    f = aot["amax_sm90"]
    assert _has(f, r"atom\.global\..*max\.s32"), f["instructions"]
