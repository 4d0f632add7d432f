"""Gradient clipping by the global norm (Pascanu, Mikolov & Bengio, 2013), as
torch.nn.utils.clip_grad_norm_, but pure: it returns new gradients.

Note: notes/optimizers.md#gradient-clipping
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch

from ..shapes import Float, Tensor
from ..tree import map_tensors, params

G = TypeVar("G")


def clip_grad_norm(grads: G, max_norm: float, *, norm_type: float = 2.0) -> tuple[G, Float[Tensor, ""]]:
    """``(grads · min(1, max_norm / (‖grads‖_p + 1e-6)), ‖grads‖_p)``.

    ``grads`` is a gradient struct (from zerotoml.tree.value_and_grad); the norm is
    taken over all its parameter tensors together. Pure: ``grads`` is not modified.
    ``norm_type`` is ``p >= 1`` or ``math.inf``."""
    p = float(norm_type)
    if not (p >= 1 or p == math.inf):
        raise ValueError(f"clip_grad_norm: norm_type={norm_type}; expected p >= 1 or math.inf")
    gs = params(grads)
    if not gs:
        return grads, torch.tensor(0.0)
    if p == math.inf:
        # ‖g‖_∞ = max_i |g_i|
        total = torch.stack([g.abs().max() for g in gs]).max()
    else:
        # ‖g‖_p = (Σ_i |g_i|^p)^{1/p}, over every entry of every tensor
        total = torch.stack([g.abs().pow(p).sum() for g in gs]).sum().pow(1 / p)
    # g ← g · min(1, c / (‖g‖ + 1e-6))   (Pascanu et al. 2013, Algorithm 2, with torch's 1e-6)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return map_tensors(lambda g, _kind: g * coef.to(g.device), grads, kind="param"), total
