"""Chain: layers applied one after another; MLP: a Chain of Linear layers and activations;
Flatten. Note: notes/layers.md#chain."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from ..generic import forward, from_torch, method
from ..shapes import Shaped, Tensor
from ..tree import struct
from .activation import activation as _activation
from .dropout import Dropout
from .linear import Linear


@struct
class Chain:
    """``forward(Chain([f, g, h]), x) = forward(h, forward(g, forward(f, x)))`` (Flux's Chain)."""

    layers: list


def _takes_generator(layer: Any) -> bool:
    return isinstance(layer, (Dropout, Chain))


@method
def forward(m: Chain, x: Any, *, generator: torch.Generator | None = None) -> Any:
    """``generator`` is handed to the Dropout layers (and nested Chains) for their masks."""
    for layer in m.layers:
        x = forward(layer, x, generator=generator) if _takes_generator(layer) else forward(layer, x)
    return x


@method
def from_torch(module: torch.nn.Sequential) -> Chain:
    return Chain([from_torch(child) for child in module])


@struct
class MLP(Chain):
    """A Chain ``Linear, activation, [Dropout], ..., Linear``: no activation after the last layer."""

    @classmethod
    def init(cls, sizes: list[int], *, activation: str | Any = "relu", dropout: float = 0.0, bias: bool = True,
             generator=None, device=None, dtype=None) -> MLP:
        """``sizes = [d_in, h_1, ..., d_out]``; Linear layers with torch's default initialiser."""
        if len(sizes) < 2:
            raise ValueError(f"MLP.init: sizes={sizes}; expected at least [d_in, d_out]")
        layers: list = []
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear.init(d_in, d_out, bias=bias, generator=generator, device=device, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(_activation(activation))
                if dropout > 0:
                    layers.append(Dropout(dropout))
        return cls(layers)


@struct
class Flatten:
    """Merge the axes ``start_dim..end_dim`` into one, as torch.nn.Flatten (default: all but the first)."""

    start_dim: int = 1
    end_dim: int = -1


@method
def forward(m: Flatten, x: Shaped[Tensor, "..."]) -> Shaped[Tensor, "..."]:
    n = x.dim()
    s, e = m.start_dim % max(n, 1), m.end_dim % max(n, 1)
    if n == 0 or s > e:
        raise ValueError(f"Flatten: argument `x` has shape {tuple(x.shape)}; start_dim={m.start_dim}, "
                         f"end_dim={m.end_dim} do not name a range of its axes")
    names = [f"a{i}" for i in range(n)]
    merged = names[:s] + ["(" + " ".join(names[s:e + 1]) + ")"] + names[e + 1:]
    return rearrange(x, f"{' '.join(names)} -> {' '.join(merged)}")


@method
def from_torch(module: torch.nn.Flatten) -> Flatten:
    return Flatten(module.start_dim, module.end_dim)
