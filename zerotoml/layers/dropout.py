"""Dropout (Srivastava et al. 2014), inverted: scale at training time, identity at test time.
Note: notes/layers.md#dropout."""

from __future__ import annotations

import torch

from ..generic import forward, from_torch, method
from ..shapes import Float, Tensor
from ..tree import struct


@struct
class Dropout:
    """Zero each entry with probability ``p`` and scale the rest by ``1/(1 − p)`` in
    training mode; the identity in eval mode."""

    p: float = 0.5
    training: bool = True

    def __post_init__(self):
        if not (isinstance(self.p, (int, float)) and 0 <= self.p < 1):
            raise ValueError(f"Dropout: p={self.p!r}; expected a probability in [0, 1)")


@method
def forward(m: Dropout, x: Float[Tensor, "*shape"], *, generator: torch.Generator | None = None
            ) -> Float[Tensor, "*shape"]:
    """``generator`` seeds the mask; without it the global torch RNG is used."""
    if not m.training or m.p == 0:
        return x
    # r_j ~ Bernoulli(q),  ỹ = r ⊙ y    (Srivastava et al. §4; q = 1 − p keeps, the paper's p)
    # inverted: divide by q now, so that the test-time network is the identity
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= m.p
    return torch.where(keep, x / (1 - m.p), torch.zeros_like(x))


@method
def from_torch(module: torch.nn.Dropout) -> Dropout:
    return Dropout(module.p, module.training)
