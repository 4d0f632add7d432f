"""Adaptive and global average pooling over any number of spatial axes: AdaptiveAvgPool,
GlobalAvgPool. They fix the output size and let the windows vary, as torch's
AdaptiveAvgPool{1,2,3}d. Note: notes/cnn.md#adaptive-and-global-average-pooling.

Inputs are ``(*batch, i_1, ..., i_n)``: any leading axes (batch, channels), then the n
spatial axes, n = len(output_size) (``dims`` for GlobalAvgPool)."""

from __future__ import annotations

import torch
from einops import reduce
from opt_einsum import contract

from ... import engine
from ...generic import forward, from_torch, method
from ...shapes import Float, Tensor
from ...tree import struct
from .pool import _dims, _nd, _spatial, _tuple

_ADA = {torch.nn.AdaptiveAvgPool1d: 1, torch.nn.AdaptiveAvgPool2d: 2, torch.nn.AdaptiveAvgPool3d: 3}


@struct
class AdaptiveAvgPool:
    """Average over torch's adaptive windows [⌊a·i/o⌋, ⌈(a+1)·i/o⌉) along each axis;
    ``None`` in ``output_size`` keeps that axis's input size."""

    output_size: tuple[int | None, ...]

    def __post_init__(self):
        sizes = self.output_size
        if not 1 <= len(sizes) <= 9 or any(o is not None and (not isinstance(o, int) or o < 1) for o in sizes):
            raise ValueError(f"AdaptiveAvgPool: output_size={self.output_size}; "
                             f"expected a tuple of 1 to 9 entries, each an int >= 1 or None")

    @classmethod
    def init(cls, output_size, *, dims: int | None = None) -> AdaptiveAvgPool:
        """Like torch.nn.AdaptiveAvgPool{dims}d. No weights."""
        n = _dims("AdaptiveAvgPool", dims, output_size=output_size)
        return cls(_tuple("AdaptiveAvgPool", "output_size", output_size, n, allow_none=True))


@struct
class GlobalAvgPool:
    """The mean over the last ``dims`` (spatial) axes: ``(*batch, i_1..i_n) -> (*batch)``."""

    dims: int = 2

    def __post_init__(self):
        if not isinstance(self.dims, int) or self.dims < 1:
            raise ValueError(f"GlobalAvgPool: dims={self.dims!r}; expected an int >= 1")

    @classmethod
    def init(cls, *, dims: int = 2) -> GlobalAvgPool:
        return cls(dims)


@method
def forward(m: AdaptiveAvgPool, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*pooled"]:
    n = len(m.output_size)
    i = _spatial("AdaptiveAvgPool", x, n)
    if engine.fast():  # the fast engine takes over where torch's kernel computes the same (zerotoml/engine/conv.py)
        y = engine.kernels.adaptive_avg_pool(x, tuple(a if b is None else b for a, b in zip(i, m.output_size)))
        if y is not None:
            return y
    A = [adaptive_avg_matrix(a, a if b is None else b, dtype=x.dtype, device=x.device)
         for a, b in zip(i, m.output_size)]
    # y[a_1..a_n] = Σ_b A_1[a_1, b_1] ⋯ A_n[a_n, b_n] x[b_1..b_n]   (2-d: "...ij,ri,sj->...rs")
    ins, outs = "ijklmnopq"[:n], "rstuvwxyz"[:n]
    spec = f"...{ins}," + ",".join(f"{u}{b}" for u, b in zip(outs, ins)) + f"->...{outs}"
    return contract(spec, x, *A)


def adaptive_avg_matrix(i: int, o: int, *, dtype=None, device=None) -> Float[Tensor, "o i"]:
    """A[a, b] = 1/(end_a − start_a) for start_a ≤ b < end_a, with torch's adaptive windows
    start_a = ⌊a·i/o⌋ and end_a = ⌈(a + 1)·i/o⌉; row a averages window a."""
    a = torch.arange(o, device=device)
    start, end = (a * i) // o, -((-(a + 1) * i) // o)
    b = torch.arange(i, device=device)
    inside = (start[:, None] <= b) & (b < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


@method
def forward(m: GlobalAvgPool, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*batch"]:
    _spatial("GlobalAvgPool", x, m.dims)
    σ = " ".join(f"i{j}" for j in range(m.dims))
    # y = (1/|i|) Σ_i x[i]  over every spatial position
    return reduce(x, f"... {σ} -> ...", "mean")


@method
def from_torch(module: torch.nn.AdaptiveAvgPool1d | torch.nn.AdaptiveAvgPool2d
               | torch.nn.AdaptiveAvgPool3d) -> AdaptiveAvgPool:
    return AdaptiveAvgPool.init(module.output_size, dims=_nd(module, _ADA))
