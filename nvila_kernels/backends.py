"""Which kernels exist here, and which one runs.

Backends:
  reference  pure PyTorch (nvila_kernels.reference), any device, always present
  cpu        C++ kernels of the compiled extension, CPU tensors
  cuda       CUDA kernels of the compiled extension, CUDA tensors; when the extension
             was built without them (no nvcc), the same kernels compiled at first use
             with NVRTC through cuda-python (nvila_kernels/_nvrtc.py; $NVILA_KERNELS_NVRTC=1
             forces it). A pure-Python install (no extension) has no cuda backend.
  triton     Triton kernels: CUDA tensors, or CPU tensors when TRITON_INTERPRET=1
             was set before nvila_kernels was imported (the Triton interpreter)
  emu        the CUDA kernels run on CPU tensors by the SIMT emulator (csrc/emu):
             for tests and debugging, slow, never chosen automatically

Selection: the explicit `backend=` argument, else $NVILA_KERNELS_BACKEND, else
automatic: cuda > triton > reference for CUDA tensors (triton > cuda for
fp8_gemm on sm_90+, see auto_order), cpu > reference for CPU tensors. Asking for
a backend that cannot run is an error, never a fallback.
When automatic selection finds no compiled kernel and uses the reference, it
warns once per (op, device type), so slowness is never silent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import torch

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "NVRTC_ENV_VAR",
    "state",
    "resolve",
    "auto_order",
    "available_backends",
    "unavailable_reason",
    "ext_has_cuda",
    "cpu_isa",
    "triton_installed",
    "load",
    "info",
]

BACKENDS = ("reference", "cpu", "cuda", "triton", "emu")
ENV_VAR = "NVILA_KERNELS_BACKEND"

# Filled in by nvila_kernels/__init__.py once it knows what was loaded.
state = {
    "ext": None,  # the _C module, or None
    "ext_error": None,  # why _C is missing, as text
    "triton": False,  # Triton kernels imported
    "triton_error": None,
    "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    "nvrtc": False,  # the cuda backend is served by NVRTC (_C has no CUDA kernels, or forced)
    "nvrtc_error": None,  # why not, when _C has no CUDA kernels
}

_warned: set[tuple[str, str]] = set()


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def ext_has_cuda() -> bool:
    """Whether _C was built with CUDA kernels (nvcc)."""
    return state["ext"] is not None and bool(state["ext"].build_info()["cuda"])


def cpu_isa() -> str | None:
    """The instruction set of the CPU fp8_gemm kernel on this machine ("avx512bf16",
    "avx2" or "generic"; $NVILA_KERNELS_CPU_ISA=avx2|generic, read once at the first
    call, forces the older ones), or None without the compiled extension."""
    return state["ext"].cpu_isa() if state["ext"] is not None else None


def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """None if `backend` can run on tensors of `device`, else why not (one sentence)."""
    dev = device.type
    ext = state["ext"]
    if backend == "reference":
        return None
    if backend == "cuda":
        if not ext_has_cuda() and not state["nvrtc"]:
            missing = (
                f"the compiled extension nvila_kernels._C is not available ({state['ext_error']})"
                if ext is None
                else "this build of nvila_kernels._C has no CUDA kernels (built without CUDA torch or nvcc)"
            )
            return f"{missing}, and NVRTC cannot stand in: {state['nvrtc_error']}"
        return None if dev == "cuda" else f"backend 'cuda' runs on CUDA tensors, got a {dev} tensor"
    if backend in ("cpu", "emu") and ext is None:
        return f"the compiled extension nvila_kernels._C is not available ({state['ext_error']})"
    if backend in ("cpu", "emu"):
        return None if dev == "cpu" else f"backend {backend!r} runs on CPU tensors, got a {dev} tensor"
    if backend == "triton":
        if not state["triton"]:
            return f"Triton kernels are not available ({state['triton_error']})"
        if dev == "cuda":
            return None
        if dev == "cpu" and state["triton_interpret"]:
            return None
        return (
            f"backend 'triton' runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 is set "
            f"before nvila_kernels is imported; got a {dev} tensor"
        )
    raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


def resolve(op: str, backend: str | None, device: torch.device) -> str:
    """The backend that runs `op` on tensors of `device` (see the module docstring)."""
    requested = backend if backend is not None else os.environ.get(ENV_VAR) or None
    if requested is not None:
        if requested not in BACKENDS:
            source = "backend" if backend is not None else ENV_VAR
            raise ValueError(f"{source}: expected one of {', '.join(BACKENDS)}, got {requested!r}")
        reason = unavailable_reason(requested, device)
        if reason is not None:
            raise RuntimeError(f"{op}: backend {requested!r} is not available: {reason}")
        return requested
    order = auto_order(op, device)
    for candidate in order:
        if unavailable_reason(candidate, device) is None:
            return candidate
    if device.type in ("cpu", "cuda") and (op, device.type) not in _warned:
        _warned.add((op, device.type))
        warnings.warn(
            f"nvila_kernels: no compiled kernel for {op} on {device.type} tensors "
            f"({unavailable_reason(order[0], device)}); running the slow PyTorch reference. "
            f"`python -m nvila_kernels` shows what is available.",
            stacklevel=4,  # the caller of the public function (<- its OpSpec.run <- resolve)
        )
    return "reference"


def auto_order(op: str, device: torch.device) -> tuple[str, ...]:
    """Backends tried, in order, when none is asked for.

    fp8_gemm on Hopper and newer (compute capability >= 9.0): Triton goes first. Its
    kernel compiles to wgmma e4m3 and is autotuned; the CUDA kernel has a wgmma path on
    sm_90a too (one fixed 64 x 128 tile, not yet measured against Triton on a GPU) and
    uses mma.sync, without FP8 tensor cores, on sm_100+. Elsewhere CUDA is first.
    """
    if device.type == "cpu":
        return ("cpu",)
    if device.type != "cuda":
        return ()
    if op == "fp8_gemm" and torch.cuda.get_device_capability(device) >= (9, 0):
        return ("triton", "cuda")
    return ("cuda", "triton")


def available_backends(device: torch.device) -> list[str]:
    return [b for b in BACKENDS if unavailable_reason(b, device) is None]


def _load_extension() -> None:
    """Load nvila_kernels._C if it exists and was built for the running torch.

    The build writes _build_info.json beside _C (setup.py); a _C built against another
    torch is not even imported (its C++ symbols may not match: an undefined-symbol error
    at best, a crash at worst). Any failure leaves the reference and Triton backends and
    one warning line that says how to fix it.
    """
    here = Path(__file__).resolve().parent
    has_binary = any(here.glob("_C.*"))
    build_info = here / "_build_info.json"
    fix = (
        "rebuild it for this torch: `pip install --no-build-isolation --force-reinstall --no-deps nvila-kernels` "
        "(from a checkout: `make build`)"
    )
    if not has_binary:
        state["ext_error"] = (
            "this install has no compiled extension (built with NVILA_KERNELS_NO_BUILD=1, or its compile failed); "
            "reinstall with a C++ compiler (and nvcc for CUDA): pip install --no-build-isolation nvila-kernels"
        )
        return
    if build_info.exists():
        built = json.loads(build_info.read_text()).get("torch_version")
        if built != torch.__version__:
            state["ext_error"] = (
                f"nvila_kernels._C was built against torch {built} but torch {torch.__version__} is running; {fix}"
            )
            warnings.warn(f"nvila_kernels: compiled kernels not loaded: {state['ext_error']}", stacklevel=4)
            return
    try:
        from . import _C  # noqa: F401
    except ImportError as e:  # no compiled extension: reference (and Triton) only
        msg = f"{type(e).__name__}: {e}"
        if "undefined symbol" in str(e):
            msg = f"nvila_kernels._C does not match torch {torch.__version__} ({e}); {fix}"
        state["ext_error"] = msg
        if has_binary:  # a binary that does not load is a problem; no binary is a pure-Python install
            warnings.warn(f"nvila_kernels: compiled kernels not loaded: {msg}", stacklevel=4)
        return
    state["ext"] = _C


NVRTC_ENV_VAR = "NVILA_KERNELS_NVRTC"


def _setup_nvrtc() -> None:
    """Without CUDA kernels in _C (or with $NVILA_KERNELS_NVRTC=1), serve the cuda backend with
    NVRTC where it can run: _C's CUDA ops plan and build the launches, NVRTC compiles the kernels."""
    ext = state["ext"]
    if ext is None:
        state["nvrtc_error"] = "it needs the compiled extension's launch planners (nvila_kernels._C)"
        return
    if ext_has_cuda() and os.environ.get(NVRTC_ENV_VAR) != "1":
        return
    from . import _nvrtc

    reason = _nvrtc.unavailable_reason()
    if reason is None:
        _nvrtc.register(ext)
        state["nvrtc"] = True
    state["nvrtc_error"] = reason


def _load_triton() -> None:
    if not triton_installed():
        state["triton_error"] = "the triton package is not installed"
        return
    try:
        from . import triton as _triton_kernels  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the installed triton
        state["triton_error"] = f"{type(e).__name__}: {e}"
        return
    state["triton"] = True


def load(lib: torch.library.Library) -> None:
    """Fill in `state`: the compiled extension, NVRTC, Triton. Called once, by
    nvila_kernels/__init__.py after the op schemas are defined (`lib`: their library)."""
    _load_extension()
    _setup_nvrtc()
    _load_triton()


def info() -> str:
    """What this installation can run: versions, backends, CUDA archs, GPU."""
    from . import __version__

    ext = state["ext"]
    build = ext.build_info() if ext is not None else None
    lines = [
        f"nvila_kernels {__version__}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
    ]
    if build is None:
        lines.append(f"compiled extension: not available ({state['ext_error']})")
    else:
        lines.append(f"compiled extension: built against torch {build['torch_version']}")
        archs = build["cuda_archs"] if build["cuda"] else "none (built without CUDA)"
        lines.append(f"compiled CUDA archs: {archs}")
    if state["nvrtc"]:
        from . import _nvrtc

        lines.append(
            f"CUDA kernels: compiled at first use with NVRTC (cuda-python) for the GPU's arch, "
            f"cached in {_nvrtc.cache_dir()}"
        )
    elif not ext_has_cuda():
        lines.append(f"CUDA kernels through NVRTC: unavailable ({state['nvrtc_error']})")
    if build is not None:
        from .layers import KERNEL_MAX_M

        isa, limit = cpu_isa(), KERNEL_MAX_M[cpu_isa()]
        lines.append(
            f"CPU kernels: fp8_gemm ISA {isa}; FP8 Linear on CPU: "
            + (
                "the fp8_gemm kernel at every M"
                if limit is None
                else f"fp8_gemm kernel for M <= {limit}, "
                "dequantize + torch.matmul above (nvila_kernels.layers.fp8_cpu_path)"
            )
        )
    gpu = torch.cuda.is_available()
    lines.append(f"GPU: {torch.cuda.get_device_name() if gpu else 'none'}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if gpu else [])
    for b in BACKENDS:
        where = [d.type for d in devices if unavailable_reason(b, d) is None]
        if where:
            lines.append(f"backend {b:<9} available on {', '.join(where)}")
            continue
        native = torch.device("cuda" if b in ("cuda", "triton") else "cpu")
        reason = None if native.type == "cuda" and not gpu else unavailable_reason(b, native)
        if reason is None and not gpu:  # the kernels are there, the device is not
            reason = "no CUDA GPU present"
            if b == "triton":
                reason += " (set TRITON_INTERPRET=1 before import to run it on CPU tensors)"
        lines.append(f"backend {b:<9} unavailable: {reason}")
    return "\n".join(lines)
