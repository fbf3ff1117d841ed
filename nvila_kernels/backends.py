"""Which kernels exist here, and which one runs.

Backends:
  reference  pure PyTorch (nvila_kernels.reference), any device, always present
  cpu        C++ kernels of the compiled extension, CPU tensors
  cuda       CUDA kernels of the compiled extension, CUDA tensors
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
import os
import warnings

import torch

BACKENDS = ("reference", "cpu", "cuda", "triton", "emu")
ENV_VAR = "NVILA_KERNELS_BACKEND"

# Filled in by nvila_kernels/__init__.py once it knows what was loaded.
state = {
    "ext": None,  # the _C module, or None
    "ext_error": None,  # why _C is missing, as text
    "triton": False,  # Triton kernels imported
    "triton_error": None,
    "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
}

_warned: set[tuple[str, str]] = set()


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """None if `backend` can run on tensors of `device`, else why not (one sentence)."""
    dev = device.type
    ext = state["ext"]
    if backend == "reference":
        return None
    if backend in ("cpu", "emu", "cuda") and ext is None:
        return f"the compiled extension nvila_kernels._C is not available ({state['ext_error']})"
    if backend in ("cpu", "emu"):
        return None if dev == "cpu" else f"backend {backend!r} runs on CPU tensors, got a {dev} tensor"
    if backend == "cuda":
        if not ext.build_info()["cuda"]:
            return "this build of nvila_kernels._C has no CUDA kernels (built without CUDA torch or nvcc)"
        return None if dev == "cuda" else f"backend 'cuda' runs on CUDA tensors, got a {dev} tensor"
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
            stacklevel=3,
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
