"""How the Triton kernels become torch ops.

On a GPU: torch.library.triton_op + wrap_triton, so torch.compile sees the kernel
itself. Under the Triton interpreter (TRITON_INTERPRET=1, CPU tensors) the kernel
objects are interpreter functions that torch's tracing cannot look into, so the
same Python function is registered as an opaque torch.library.custom_op with a
fake kernel instead. Same schema either way (inferred from the signature).
"""

from __future__ import annotations

import os

import torch

from ..ops import OPS

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def kernel_op(op: str):
    """Decorator: register `fn(..., out) -> None` as nvila::<op>_triton (it writes the op's schema outputs)."""
    name, mutates_args = f"nvila::{op}_triton", OPS[op].mutated

    def register(fn):
        if not INTERPRET:
            return torch.library.triton_op(name, mutates_args=mutates_args)(fn)
        registered = torch.library.custom_op(name, mutates_args=mutates_args)(fn)
        registered.register_fake(lambda *args, **kwargs: None)  # only writes its outputs
        return registered

    return register


def launcher(kernel):
    """`launcher(kernel)[grid](...)`: wrap_triton on a GPU, the kernel itself when interpreted."""
    return kernel if INTERPRET else torch.library.wrap_triton(kernel)
