"""Backends under test, their devices, and dtype tolerances.

TRITON_INTERPRET=1 is set here, before anything imports triton or nvila_kernels,
so that the Triton kernels run on CPU tensors through the Triton interpreter on
machines without a GPU. With a GPU, the Triton and CUDA kernels run on it.

No backend is skipped silently: the compiled extension (cpu, emu backends) must
load, and Triton must load when installed; a broken build fails the suite.
Set NVILA_KERNELS_TEST_NO_EXT=1 only to test a pure-Python install on purpose.
"""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nvila_kernels import backends  # noqa: E402

GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"

if os.environ.get("NVILA_KERNELS_TEST_NO_EXT") != "1" and backends.state["ext"] is None:
    raise RuntimeError(f"nvila_kernels._C failed to load: {backends.state['ext_error']} (build it: make build)")
if backends.triton_installed() and not backends.state["triton"]:
    raise RuntimeError(f"triton is installed but the Triton kernels failed to load: {backends.state['triton_error']}")


def backend_device(backend: str) -> torch.device:
    if backend in ("cuda",) or (backend == "triton" and GPU):
        return torch.device("cuda")
    return torch.device("cpu")


def assert_fp8_gemm_close(
    got: torch.Tensor, expected: torch.Tensor, K: int, out_dtype: torch.dtype, what: str = ""
) -> None:
    """An fp8_gemm result against the reference's: NaN where the reference has NaN; fp32
    output within the reordering error of K exact products, bf16/fp16 within one rounding.
    `what` prefixes the failure message (e.g. the shape)."""
    scale = expected[~expected.isnan()].float().abs().max().item()
    if out_dtype == torch.float32:  # fp32 reordering of K exact products
        atol, rtol = 1e-6 * math.sqrt(K) * scale, 1e-5
    else:  # one bf16 rounding apart
        atol = rtol = torch.finfo(out_dtype).eps * scale
    torch.testing.assert_close(
        got.float(), expected.float(), atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{what}: {m}" if what else m
    )


def kernel_backends() -> list[str]:
    """Every non-reference backend that this machine must be able to run."""
    out = []
    if backends.state["ext"] is not None:
        out += ["cpu", "emu"]
    if GPU and backends.unavailable_reason("cuda", torch.device("cuda")) is None:  # _C's kernels, or NVRTC
        out.append("cuda")
    if backends.state["triton"]:
        out.append("triton")
    return out


KERNEL_BACKENDS = kernel_backends()
# Backends that emulate a GPU on the CPU: correct but slow, so they get the
# smaller shapes of each test matrix (see the tests' case builders), swept in fp32;
# in fp16/bf16 they run a few small cases (the index paths are dtype-independent).
SLOW_BACKENDS = {"emu"} | ({"triton"} if not GPU else set())

# (atol, rtol) per dtype: about twice the rounding error of the dtype at O(1)
# values, the scale of LayerNorm outputs.
TOL = {
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
DTYPES = list(TOL)


def pytest_collection_modifyitems(items):
    """Every test run on an emulated backend is `slow` (markers: pyproject.toml), so
    `make test-fast` runs each kernel on the compiled CPU backend and the reference only;
    `make test` runs them all."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") in SLOW_BACKENDS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
