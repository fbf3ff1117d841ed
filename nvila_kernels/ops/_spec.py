"""What one op declares (OpSpec), and the one call path every public function takes:
check the arguments, pick a backend, then run the reference or the backend's op
(`torch.ops.nvila.<op>_<backend>`) on a freshly allocated (or the caller's) output."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import backends
from ._checks import check_out


@dataclass(frozen=True)
class Output:
    """One output of an op: its shape and dtype, on the device of `like` (the input named `like_name`).
    `dtype_from` says where the dtype comes from, for out='s error message."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    like: torch.Tensor
    like_name: str
    dtype_from: str


@dataclass(frozen=True)
class Refusal:
    """One input an op refuses (a row of docs/INPUTS.md): `call(device)` calls the public
    function with that input, which must raise `error` with `message` in its text before a
    backend is chosen (tests/test_input_errors.py runs every refusal of every op)."""

    id: str
    argument: str
    accepted: str
    violation: str
    error: type[Exception]
    message: str
    call: Callable[[torch.device], Any]
    function: str | None = None  # the public function refusing it, when not the op's own (multiscale_tile_batch)


@dataclass(frozen=True)
class Accepted:
    """An input view the op takes (a row of docs/INPUTS.md): `call(device, backend)` returns
    (the result for the view, the result for a contiguous copy of it), which
    tests/test_input_errors.py compares on every backend."""

    id: str
    argument: str
    accepted: str
    view: str
    call: Callable[[torch.device, str], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class OpSpec:
    """Everything about one op that is not its kernels.

    name        the op: torch ops nvila::<name>_{cpu,emu,cuda,triton}, the public function's name
    schema      its torch.library schema without the name; ops write only their `(a!)` outputs
    reference   the PyTorch reference (nvila_kernels.reference), called with the checked arguments
    check       check(args) validates every argument (raising TypeError/ValueError that name it)
                and returns the Output (or a tuple of Outputs); it may store an argument's
                normalized form back into `args` (e.g. an image as (H, W, 3))
    kernel_args kernel_args(args, *outputs) -> the op's schema arguments, in order
    differentiable  the tensor arguments autograd flows through (by the reference; see run)
    example     example(device, backend) calls the public function with small valid inputs
                (tests/test_input_errors.py asks it for backends that cannot run)
    accepts     the input views it takes, run on every backend (docs/INPUTS.md)
    refusals    the inputs the op refuses, with their messages (docs/INPUTS.md)
    """

    name: str
    schema: str
    reference: Callable
    check: Callable[[dict], Output | tuple[Output, ...]]
    kernel_args: Callable[..., tuple]
    example: Callable[[torch.device, str | None], Any]
    differentiable: tuple[str, ...] = ()
    accepts: tuple[Accepted, ...] = field(default=(), repr=False)
    refusals: tuple[Refusal, ...] = field(default=(), repr=False)

    @property
    def mutated(self) -> set[str]:
        """The schema's output arguments (`Tensor(a!) out` -> "out")."""
        return set(re.findall(r"Tensor\(\w!\) (\w+)", self.schema))

    def run(self, args: dict, out: torch.Tensor | None = None, backend: str | None = None):
        """The public function's body: args are the op's arguments by name (as the reference takes them)."""
        outputs = self.check(args)
        single = isinstance(outputs, Output)
        outputs = (outputs,) if single else outputs
        if out is not None:
            o = outputs[0]
            check_out(out, o.shape, o.dtype, o.dtype_from, o.like, o.like_name)
        chosen = backends.resolve(self.name, backend, outputs[0].like.device)
        if chosen == "reference":
            y = self.reference(**args)
            return y if out is None else out.copy_(y)

        def kernel(*tensors):
            a = {**args, **dict(zip(self.differentiable, tensors, strict=True))}
            outs = (
                [out]
                if out is not None
                else [torch.empty(o.shape, dtype=o.dtype, device=o.like.device) for o in outputs]
            )
            run_kernel(self.name, chosen, *self.kernel_args(a, *outs))
            return outs[0] if single else tuple(outs)

        tensors = tuple(args[n] for n in self.differentiable)
        if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
            return kernel(*tensors)
        if out is not None:
            raise ValueError("out: not supported when an input requires grad (autograd does not record writes to out)")

        def reference(*tensors):
            return self.reference(**{**args, **dict(zip(self.differentiable, tensors, strict=True))})

        return _ReferenceGrad.apply(kernel, reference, *tensors)


def run_kernel(name: str, backend: str, *args) -> None:
    """Call the op `name` of a kernel backend (cpu, emu, cuda, triton)."""
    getattr(torch.ops.nvila, f"{name}_{backend}")(*args)


class _ReferenceGrad(torch.autograd.Function):
    """Forward by a kernel, backward by autograd through the reference (recomputed from
    the saved inputs): the kernel backends give the same gradients as the reference."""

    @staticmethod
    def forward(ctx, kernel, reference, *tensors):
        ctx.reference = reference
        ctx.save_for_backward(*tensors)
        return kernel(*tensors)

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad[2:]
        inputs = [
            t if t is None else t.detach().requires_grad_(n) for t, n in zip(ctx.saved_tensors, needs, strict=True)
        ]
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        with torch.enable_grad():
            grads = iter(torch.autograd.grad(ctx.reference(*inputs), wanted, grad))
        return (None, None, *(next(grads) if t is not None and t.requires_grad else None for t in inputs))


OTHER_DEVICE = "meta"  # a second device on any machine: the refusals that mix devices use it
FLOAT_NAMES = "float32, float16 or bfloat16"  # the accepted dtypes of float tensors, as docs/INPUTS.md writes them
