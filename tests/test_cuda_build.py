"""Resource and SASS checks of the CUDA kernels, without a GPU.

Builds the `cubins` target of CMakeLists.txt (nvcc -cubin -Xptxas -v for every
csrc/cuda/*.cu and arch) and then:
  - fails if any kernel spills registers (stack frames are only reported);
  - writes build/cuda_resources.md: registers / static shared memory / spills per
    kernel and arch (printed too: run pytest with -s);
  - reads the SASS with the cuobjdump shipped in the triton wheel: each cubin is for
    the arch it is named after, and the 16-byte PTX wrappers of csrc/cuda/ptx.cuh
    become 128-bit SASS with their cache hints.
Needs nvcc and cmake; skipped (with the reason) when either is missing.
"""

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the shipped archs, as CMakeLists.txt reads them: "8.0;8.6;8.9;9.0a" -> ["80", "86", "89", "90a"]
_ARCH_LINE = next(ln for ln in (REPO / "csrc" / "cuda_archs.txt").read_text().splitlines() if ln[:1].isdigit())
ARCHS = _ARCH_LINE.replace(".", "").split(";")
CUDA_SOURCES = sorted((REPO / "csrc" / "cuda").glob("*.cu"))


def find_nvcc():
    """$CUDA_HOME/bin/nvcc, else the standard location (the nvcc on PATH may be a wrapper)."""
    home = os.environ.get("CUDA_HOME")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return Path(home) / "bin" / "nvcc"
    return Path("/usr/local/cuda/bin/nvcc")


NVCC = find_nvcc()

pytestmark = [
    pytest.mark.toolchain,
    pytest.mark.skipif(not NVCC.exists(), reason=f"nvcc not found at {NVCC} (set CUDA_HOME)"),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found"),
]


def cuobjdump_path():
    try:
        import triton
    except ImportError:
        return None
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return path if path.exists() else None


def run(cmd, **kwargs):
    """Runs cmd; fails the test with its output when it exits non-zero."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res.stdout


@pytest.fixture(scope="module")
def cubin_dir(tmp_path_factory):
    build = tmp_path_factory.mktemp("cmake_cubins")
    run(["cmake", "-S", REPO, "-B", build, f"-DNVCC={NVCC}"])  # its default archs: ARCHS
    run(["cmake", "--build", build, "--target", "cubins", "-j", "2"])
    return build / "cubins"


# --- ptxas -v reports ----------------------------------------------------------


@dataclass
class Resources:
    registers: int = 0
    smem: int = 0  # static shared memory; dynamic shared memory is set at launch
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0


def parse_ptxas(text):
    """{mangled function: Resources} from one `-Xptxas -v` report."""
    funcs, current = {}, None
    for line in text.splitlines():
        if m := re.search(r"Compiling entry function '(\S+)'", line):
            current = funcs.setdefault(m.group(1), Resources())
        elif m := re.search(r"Function properties for (\S+)", line):
            current = funcs.setdefault(m.group(1), Resources())
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        elif m := re.search(r"Used (\d+) registers", line):
            current.registers = int(m.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                current.smem = int(s.group(1))
    return funcs


def demangle(names):
    """Readable names, namespaces and parameter lists dropped (c++filt when present)."""
    names = list(names)
    if not names or shutil.which("c++filt") is None:
        return dict(zip(names, names, strict=True))
    out = subprocess.run(["c++filt", "-p"], input="\n".join(names), capture_output=True, text=True).stdout
    short = [re.sub(r"\(anonymous namespace\)::|\b[A-Za-z_]\w*::", "", n) for n in out.splitlines()]
    return dict(zip(names, short, strict=True))


@pytest.fixture(scope="module")
def resources(cubin_dir):
    """{(source name, arch): {mangled function: Resources}}."""
    return {
        (src.stem, arch): parse_ptxas((cubin_dir / f"{src.stem}.sm_{arch}.ptxas.txt").read_text())
        for src in CUDA_SOURCES
        for arch in ARCHS
    }


def test_every_source_has_a_cubin_per_arch(cubin_dir):
    assert CUDA_SOURCES, "no csrc/cuda/*.cu found"
    missing = [
        f"{src.stem}.sm_{arch}.{ext}"
        for src in CUDA_SOURCES
        for arch in ARCHS
        for ext in ("cubin", "ptxas.txt")
        if not (cubin_dir / f"{src.stem}.sm_{arch}.{ext}").is_file()
    ]
    assert not missing, f"missing from {cubin_dir}: {missing}"


def test_no_register_spills(resources):
    names = demangle({f for funcs in resources.values() for f in funcs})
    spills = [
        f"{names[f]} on sm_{arch} ({src}.cu): {r.spill_stores} bytes spill stores, {r.spill_loads} bytes spill loads"
        for (src, arch), funcs in resources.items()
        for f, r in funcs.items()
        if r.spill_stores or r.spill_loads
    ]
    if spills:
        pytest.fail("register spills:\n  " + "\n  ".join(spills), pytrace=False)


def test_resource_table(resources):
    """Writes build/cuda_resources.md; stack frames are reported here, not failed."""
    names = demangle({f for funcs in resources.values() for f in funcs})
    by_kernel = {}  # (source, function) -> {arch: Resources}
    for (src, arch), funcs in resources.items():
        for f, r in funcs.items():
            by_kernel.setdefault((src, f), {})[arch] = r
    assert by_kernel, "ptxas reported no kernels"

    def cell(per_arch, field):
        return " / ".join(str(getattr(per_arch[a], field)) if a in per_arch else "-" for a in ARCHS)

    archs = " / ".join(f"sm_{a}" for a in ARCHS)
    lines = [
        f"# CUDA kernel resources ({archs})",
        "",
        f"From `nvcc -Xptxas -v` ({NVCC}); each cell lists {archs}. smem is static shared",
        "memory in bytes (dynamic shared memory is set at launch); spill and stack in bytes.",
        "",
        "| file | kernel | registers | smem | spill stores | spill loads | stack frame |",
        "|---|---|---|---|---|---|---|",
    ]
    for (src, f), per_arch in sorted(by_kernel.items(), key=lambda kv: (kv[0][0], names[kv[0][1]])):
        fields = ("registers", "smem", "spill_stores", "spill_loads", "stack")
        lines.append(f"| {src}.cu | `{names[f]}` | " + " | ".join(cell(per_arch, c) for c in fields) + " |")
    stacks = [
        f"- `{names[f]}` on sm_{a}: {r.stack} bytes stack frame"
        for (src, f), per_arch in by_kernel.items()
        for a, r in per_arch.items()
        if r.stack
    ]
    if stacks:
        lines += ["", "Stack frames (local memory; reported, not failed):", *stacks]
    table = "\n".join(lines) + "\n"
    out = REPO / "build" / "cuda_resources.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table)
    print(f"\n{table}\n(written to {out})")


# --- SASS ----------------------------------------------------------------------


@functools.cache
def sass(cubin):
    """`cuobjdump -sass` of a cubin, once per cubin for all the tests that read it."""
    tool = cuobjdump_path()
    if tool is None:
        pytest.skip("cuobjdump not found (it ships in the triton wheel: pip install triton)")
    return run([tool, "-sass", cubin])


def sass_functions(text):
    """{mangled function: its SASS} from `cuobjdump -sass`."""
    parts = re.split(r"^\s*Function : (\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_cubin_arch_matches_name(cubin_dir, arch):
    for src in CUDA_SOURCES:
        text = sass(cubin_dir / f"{src.stem}.sm_{arch}.cubin")
        assert set(re.findall(r"code for (sm_\w+)", text)) == {f"sm_{arch}"}, f"{src.stem}.sm_{arch}.cubin"
        # arch-specific targets (sm_90a, sm_100a) carry the EF_CUDA_ACCELERATORS flag
        for flags in re.findall(r"\.headerflags\s+@\"([^\"]*)\"", text):
            assert f"EF_CUDA_SM{arch.rstrip('a')} " in flags + " ", f"{src.stem}.sm_{arch}.cubin: {flags}"
            assert ("EF_CUDA_ACCELERATORS" in flags) == arch.endswith("a"), f"{src.stem}.sm_{arch}.cubin: {flags}"


@pytest.mark.parametrize("op", ["spatial_compress", "merge_compress"])
@pytest.mark.parametrize("arch", ARCHS)
def test_gather_kernels_use_128bit_cache_hinted_memory_ops(cubin_dir, arch, op):
    """ptx::st_global_cs_v4 / _v2 (st.global.cs.v4.b32 / .v2.b32) are `STG.E.EF.128` /
    `STG.E.EF.64` (evict-first) and ptx::ld_global_nc_na_v4
    (ld.global.nc.L1::no_allocate.v4.b32) is `LDG.E.NA.128.CONSTANT`; every kernel with
    128-bit global accesses (the vectorized instantiations) gathers with the latter and
    stores its output with the former only (the bf16/fp16 LayerNorm of a staged row
    stores 4 elements, 8 bytes, a lane: layernorm_row.cuh)."""
    funcs = sass_functions(sass(cubin_dir / f"{op}.sm_{arch}.cubin"))
    load = re.compile(r"\bLDG\.E\.NA\.128\.CONSTANT\b")
    vectorized = {f: code for f, code in funcs.items() if re.search(r"\b(LDG|STG)\.[\w.]*\b128\b", code)}
    assert vectorized, f"no 128-bit global loads/stores in any of {len(funcs)} kernels"
    names = demangle(vectorized)
    for f, code in vectorized.items():
        wide = re.findall(r"\bSTG\.E[\w.]*\.(?:64|128)\b", code)
        assert wide, f"{names[f]} on sm_{arch}: no 8- or 16-byte stores"
        assert all(".EF." in s for s in wide), f"{names[f]} on sm_{arch}: not streaming (STG.E.EF): {set(wide)}"
        assert load.search(code), f"{names[f]} on sm_{arch}: no LDG.E.NA.128.CONSTANT (no-allocate 16-byte load)"


def fp8_gemm_kernels(cubin):
    """{mangled function: SASS} of the mma.sync and the wgmma kernels of fp8_gemm."""
    funcs = sass_functions(sass(cubin))
    wgmma = {f: code for f, code in funcs.items() if "fp8_gemm_wgmma_kernel" in f}
    mma = {f: code for f, code in funcs.items() if "fp8_gemm_kernel" in f}
    assert len(mma) == len(wgmma) == 6, f"expected 3 out dtypes x (aligned, unaligned) of each: {list(funcs)}"
    return mma, wgmma


def assert_fp8_gemm_qmma(cubin):
    """ptx::mma_m16n8k32_e4m3 is the native `QMMA.16832.F32.E4M3.E4M3` on sm_89, in
    every mma.sync fp8_gemm kernel, together with the cp.async tile loads (LDGSTS)."""
    mma, _ = fp8_gemm_kernels(cubin)
    names = demangle(mma)
    for f, code in mma.items():
        assert re.search(r"\bQMMA\.16832\.F32\.E4M3\.E4M3\b", code), f"{names[f]}: no QMMA E4M3"
    assert any(re.search(r"\bLDGSTS\b", code) for code in mma.values()), "no cp.async (LDGSTS) in any kernel"


def assert_fp8_gemm_qgmma(cubin):
    """On sm_90a (where mma.sync e4m3 has no FP8 tensor cores and becomes fp16 HMMA) the
    launcher runs fp8_gemm_wgmma_kernel: ptx::wgmma_m64n128k32_e4m3 is the native
    `QGMMA.64x128x32.F32.E4M3.E4M3` with shared-memory descriptor operands (gdesc), inside
    WARPGROUP.ARRIVE ... WARPGROUP.DEPBAR, after fence.proxy.async (FENCE.VIEW.ASYNC.S);
    the aligned instantiations load their tiles with cp.async (LDGSTS)."""
    _, wgmma = fp8_gemm_kernels(cubin)
    names = demangle(wgmma)
    for f, code in wgmma.items():
        for pattern in (
            r"\bQGMMA\.64x128x32\.F32\.E4M3\.E4M3 R\d+, gdesc\[UR\d+\], R\d+",
            r"\bWARPGROUP\.ARRIVE\b",
            r"\bWARPGROUP\.DEPBAR\.LE gsb0, 0x0\b",
            r"\bFENCE\.VIEW\.ASYNC\.S\b",
        ):
            assert re.search(pattern, code), f"{names[f]} on sm_90a: no {pattern}"
        assert "HMMA" not in code and "QMMA" not in code, f"{names[f]} on sm_90a: mma.sync fallback"
        if "Lb1E" in f:  # ALIGNED = true
            assert re.search(r"\bLDGSTS\.E\.BYPASS\.128\b", code), f"{names[f]}: no 16-byte cp.async"


def test_fp8_gemm_uses_fp8_tensor_cores_on_sm89(cubin_dir):
    if "89" not in ARCHS:
        pytest.skip("sm_89 is not among the archs built")
    assert_fp8_gemm_qmma(cubin_dir / "fp8_gemm.sm_89.cubin")


def test_fp8_gemm_uses_wgmma_e4m3_on_sm90a(cubin_dir):
    if "90a" not in ARCHS:
        pytest.skip("sm_90a is not among the archs built")
    assert_fp8_gemm_qgmma(cubin_dir / "fp8_gemm.sm_90a.cubin")
