"""spatial_compress: NVILA's k x k spatial-to-channel compression with LayerNorm."""

from __future__ import annotations

import torch

from .. import reference
from . import _examples as ex
from ._checks import check_eps, check_float, check_layernorm, check_non_empty, check_positive_int, check_token_channels
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal

__all__ = ["spatial_compress"]


def spatial_compress(
    x: torch.Tensor,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's k x k spatial-to-channel compression, fused with the projector's LayerNorm.

    x: (B, H, W, C) token grid (tokens row-major), float32/float16/bfloat16.
    Returns (B, ceil(H/k), ceil(W/k), k*k*C) in x's dtype: zero rows appended at the
    bottom, then zero columns on the right; output cell (I, J) holds input token
    (k*I + dr, k*J + dc) at channels (dr*k + dc)*C + c. With `ln_weight` (and
    optionally `ln_bias`), each output token is LayerNorm-ed over its k*k*C channels
    (fp32 statistics, biased variance, `eps`), in the same pass.
    `out`: a contiguous tensor of the output's shape and dtype to write into.
    `backend`: see nvila_kernels.backends.
    """
    return SPEC.run(dict(x=x, k=k, ln_weight=ln_weight, ln_bias=ln_bias, eps=eps), out, backend)


def check(a: dict) -> Output:
    x, k = a["x"], a["k"]
    check_float(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D (B, H, W, C) tensor, got shape {tuple(x.shape)}")
    check_non_empty(x, "x")
    check_positive_int(k, "k")
    check_eps(a["eps"])
    B, H, W, C = x.shape
    D = k * k * C
    check_token_channels(D, f"k*k*C for k={k}, C={C}")
    check_layernorm(a["ln_weight"], a["ln_bias"], D, f"(k*k*C,) for k={k}, C={C}", x, "x")
    return Output((B, -(-H // k), -(-W // k), D), x.dtype, x, "x", "the dtype of x")


def kernel_args(a: dict, out: torch.Tensor) -> tuple:
    x, w, b = a["x"], a["ln_weight"], a["ln_bias"]
    if x.stride(-1) != 1:
        x = x.contiguous()
    w = None if w is None else w.to(torch.float32).contiguous()
    b = None if b is None else b.to(torch.float32).contiguous()
    return x, a["k"], w, b, float(a["eps"]), out


def _x(d, shape=(1, 4, 4, 3), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


def _out(d, shape=(1, 2, 2, 12), **kw):
    return torch.empty(shape, device=d, **kw)


sc = spatial_compress
same = ex.same_as_contiguous
SPEC = OpSpec(
    name="spatial_compress",
    schema="(Tensor x, int k, Tensor? ln_weight, Tensor? ln_bias, float eps, Tensor(a!) out) -> ()",
    reference=reference.spatial_compress,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: sc(_x(d), 2, backend=backend),
    differentiable=("x", "ln_weight", "ln_bias"),
    accepts=(
        Accepted("sc-x-padded-view", "x", "any strides with channel stride 1 (read in place)", "padded rows (view)",
                 lambda d, b: same(lambda v: sc(v, 2, backend=b), ex.padded_view(_x(d, (2, 5, 3, 4))))),
        Accepted("sc-x-transposed-view", "x", "H/W transposed view (read in place)", "transposed H and W",
                 lambda d, b: same(lambda v: sc(v, 2, backend=b), _x(d, (2, 5, 3, 4)).transpose(1, 2))),
        Accepted("sc-x-expanded-view", "x", "expanded (stride 0) view", "expand of one token",
                 lambda d, b: same(lambda v: sc(v, 2, backend=b), _x(d, (1, 1, 1, 8)).expand(2, 3, 3, 8))),
        Accepted("sc-x-channel-strided-view", "x", "channel stride != 1 (copied first)", "every other channel",
                 lambda d, b: same(lambda v: sc(v, 2, backend=b), _x(d, (1, 4, 4, 6))[..., ::2])),
        Accepted("sc-ln_weight-strided-view", "ln_weight", "any strides (copied)", "every other element",
                 lambda d, b: (lambda x: same(lambda v: sc(x, 2, v, backend=b), torch.randn(24, device=d)[::2]))(
                     _x(d))),
    ),
    refusals=(
        Refusal("sc-x-type", "x", "a torch.Tensor", "a list", TypeError, "x: expected a torch.Tensor",
                lambda d: sc([[1.0]], 2)),
        Refusal("sc-x-dtype", "x", F, "float64", TypeError, f"x: expected dtype {F}",
                lambda d: sc(_x(d, dtype=torch.float64), 2)),
        Refusal("sc-x-rank", "x", "4-D (B, H, W, C)", "3-D", ValueError, "x: expected a 4-D (B, H, W, C) tensor",
                lambda d: sc(_x(d, (4, 4, 3)), 2)),
        Refusal("sc-x-empty", "x", "non-empty", "H = 0", ValueError, "x: expected a non-empty tensor",
                lambda d: sc(_x(d, (1, 0, 4, 3)), 2)),
        Refusal("sc-k-zero", "k", "int >= 1 (k > H, W allowed: zero padding)", "0", ValueError,
                "k: expected an int >= 1", lambda d: sc(_x(d), 0)),
        Refusal("sc-k-float", "k", "int >= 1", "2.0", ValueError, "k: expected an int >= 1",
                lambda d: sc(_x(d), 2.0)),
        Refusal("sc-k-bool", "k", "int >= 1", "True", ValueError, "k: expected an int >= 1",
                lambda d: sc(_x(d), True)),
        Refusal("sc-k-token-channels", "k", "k*k*C <= 2^31 - 1 (kernels index a token's channels in 32 bits)",
                "k = 2, C = 2^29 (meta x)", ValueError, "k: expected at most 2^31 - 1 output channels per token",
                lambda d: sc(torch.empty(1, 1, 1, 2**29, device=OTHER), 2)),
        Refusal("sc-eps-negative", "eps", "finite float >= 0", "-1.0", ValueError,
                "eps: expected a float >= 0 and finite", lambda d: sc(_x(d), 2, torch.ones(12, device=d), None, -1.0)),
        Refusal("sc-eps-nan", "eps", "finite float >= 0", "nan", ValueError, "eps: expected a float >= 0 and finite",
                lambda d: sc(_x(d), 2, None, None, float("nan"))),
        Refusal("sc-eps-inf", "eps", "finite float >= 0", "inf", ValueError, "eps: expected a float >= 0 and finite",
                lambda d: sc(_x(d), 2, torch.ones(12, device=d), None, float("inf"))),
        Refusal("sc-ln_weight-shape", "ln_weight", "(k*k*C,)", "(k*k*C + 1,)", ValueError,
                "ln_weight: expected shape (12,)", lambda d: sc(_x(d), 2, torch.ones(13, device=d))),
        Refusal("sc-ln_weight-dtype", "ln_weight", F + " (any, independent of x)", "int64", TypeError,
                f"ln_weight: expected dtype {F}", lambda d: sc(_x(d), 2, torch.ones(12, dtype=torch.int64, device=d))),
        Refusal("sc-ln_weight-device", "ln_weight", "x's device", "meta tensor, x on the backend's device", ValueError,
                "ln_weight: expected a tensor on", lambda d: sc(_x(d), 2, torch.ones(12, device=OTHER))),
        Refusal("sc-ln_bias-without-weight", "ln_bias", "only with ln_weight", "ln_bias alone", ValueError,
                "ln_bias: given without ln_weight", lambda d: sc(_x(d), 2, None, torch.ones(12, device=d))),
        Refusal("sc-ln_bias-shape", "ln_bias", "(k*k*C,)", "(11,)", ValueError, "ln_bias: expected shape (12,)",
                lambda d: sc(_x(d), 2, torch.ones(12, device=d), torch.ones(11, device=d))),
        Refusal("sc-out-type", "out", "a torch.Tensor", "a list", TypeError, "out: expected a torch.Tensor",
                lambda d: sc(_x(d), 2, out=[])),
        Refusal("sc-out-shape", "out", "the output's shape", "one row short", ValueError,
                "out: expected shape (1, 2, 2, 12)", lambda d: sc(_x(d), 2, out=_out(d, (1, 1, 2, 12)))),
        Refusal("sc-out-dtype", "out", "x's dtype", "float16 for float32 x", TypeError,
                "out: expected dtype torch.float32", lambda d: sc(_x(d), 2, out=_out(d, dtype=torch.float16))),
        Refusal("sc-out-device", "out", "x's device", "meta", ValueError, "out: expected a tensor on",
                lambda d: sc(_x(d), 2, out=_out(OTHER))),
        Refusal("sc-out-strided", "out", "contiguous", "a transposed view", ValueError,
                "out: expected a contiguous tensor", lambda d: sc(_x(d), 2, out=_out(d).transpose(1, 2))),
        Refusal("sc-out-aliases-x", "out", "memory apart from x", "out is x (k = 1)", ValueError,
                "out: must not share memory with x", lambda d: (lambda x: sc(x, 1, out=x))(_x(d))),
    ),
)  # fmt: skip
