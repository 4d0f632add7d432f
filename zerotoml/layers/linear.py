"""Linear: an affine map ``y = x W + b``. Note: notes/layers.md#linear."""

from __future__ import annotations

import math

import torch

from ..einsum import einsum
from ..generic import from_torch, forward, method
from ..shapes import Float, Tensor
from ..tree import struct


@struct
class Linear:
    """``y = x W + b`` with ``W: (d_in, d_out)``; torch stores the transpose."""

    W: Float[Tensor, "d_in d_out"]
    b: Float[Tensor, "d_out"] | None

    @classmethod
    def init(cls, d_in: int, d_out: int, *, bias: bool = True, generator=None, device=None, dtype=None) -> Linear:
        """torch's default (Kaiming-uniform with a=sqrt(5)): W, b ~ U(-1/sqrt(d_in), 1/sqrt(d_in))."""
        bound = 1.0 / math.sqrt(d_in) if d_in > 0 else 0.0
        kw = dict(generator=generator, device=device, dtype=dtype)
        W = (torch.rand(d_in, d_out, **kw) * 2 - 1) * bound
        b = (torch.rand(d_out, **kw) * 2 - 1) * bound if bias else None
        return cls(W, b)


@method
def forward(m: Linear, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
    # y = x W + b
    return einsum(x, m.W, "... d_in, d_in d_out -> ... d_out", plus=m.b)


@method
def from_torch(module: torch.nn.Linear) -> Linear:
    b = None if module.bias is None else module.bias.detach().clone()
    return Linear(module.weight.detach().t().contiguous(), b)
