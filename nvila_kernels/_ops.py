"""The one place that lists every op: schemas and fake (meta) kernels.

Each op exists once per compiled backend, with the same schema:
  nvila::<op>_cpu     C++ CPU kernel                     (CPU key, from _C)
  nvila::<op>_emu     CUDA kernel under the SIMT emulator (CPU key, from _C; tests)
  nvila::<op>_cuda    CUDA kernel                        (CUDA key, from _C)
  nvila::<op>_triton  Triton kernel                      (triton_op, nvila_kernels/triton)
Ops write into a caller-provided `out` (so `out=` costs no allocation); the
public functions in nvila_kernels.functional allocate, validate and dispatch.
"""

from __future__ import annotations

import torch

# op name -> schema (without the name). Ops mutate only their output arguments.
SCHEMAS = {
    "spatial_compress": "(Tensor x, int k, Tensor? ln_weight, Tensor? ln_bias, float eps, Tensor(a!) out) -> ()",
    "temporal_pool": "(Tensor x, int group, Tensor(a!) out) -> ()",
    # the plan's scales as (rows, cols) lists, ascending; out is (S*C, rows[-1]*h, cols[-1]*w)
    "multiscale_merge": ("(Tensor features, int[] scale_rows, int[] scale_cols, int h, int w, Tensor(a!) out) -> ()"),
    # multiscale_merge's plan, then spatial_compress's k / LayerNorm per h x w block; out is (tokens, k*k*S*C)
    "merge_compress": (
        "(Tensor features, int[] scale_rows, int[] scale_cols, int h, int w, int k, Tensor? ln_weight, "
        "Tensor? ln_bias, float eps, Tensor(a!) out) -> ()"
    ),
    # one image (H, W, 3) uint8 -> every tile of every scale (n_tiles, 3, T, T); per-scale grids and pass
    # order, Pillow's fixed-point bicubic coefficients per output column / row (nvila_kernels/resample.py)
    "multiscale_tile": (
        "(Tensor image, int[] scale_rows, int[] scale_cols, bool[] vertical_first, Tensor xbounds, Tensor xweights, "
        "Tensor ybounds, Tensor yweights, float[] mean, float[] std, bool exact, Tensor(a!) out) -> ()"
    ),
    # q and scale_out are written; scale None = dynamic (amax computed on the device)
    "fp8_quantize": "(Tensor x, Tensor? scale, Tensor(a!) q, Tensor(b!) scale_out) -> ()",
    "fp8_gemm": "(Tensor a, Tensor b, Tensor scale_a, Tensor scale_b, Tensor? bias, Tensor(a!) out) -> ()",
}

# backends whose kernels live in the compiled extension
COMPILED_BACKENDS = ("cpu", "emu", "cuda")

_lib = torch.library.Library("nvila", "DEF")


def _fake_out_only(*args, **kwargs) -> None:
    """Fake kernel: the ops only write their outputs, whose metadata the caller owns."""
    return None


for _op, _schema in SCHEMAS.items():
    for _backend in COMPILED_BACKENDS:
        _name = f"{_op}_{_backend}"
        _lib.define(_name + _schema)
        torch.library.register_fake(f"nvila::{_name}", _fake_out_only, lib=_lib)


def op(name: str, backend: str):
    """The torch op implementing `name` on a compiled backend, e.g. op("spatial_compress", "cpu")."""
    return getattr(torch.ops.nvila, f"{name}_{backend}").default
