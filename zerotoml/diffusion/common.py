"""What every sampler shares: a network or a plain function, called the same way.
Note: notes/ddpm.md#every-sampler-takes-a-function.

A sampler needs ε(x, t), the score ∇ log p_t(x, t) or a velocity v(x, t). It takes either a
zerotoml model (a struct with a `forward(model, x, t)` method: the U-Net, the MLP denoiser) or
any callable ``f(x, t)``: a closed form (zerotoml/diffusion/mixture.py), the user's own model.
``t`` is a tensor of shape (batch,): integer steps for the discrete-time models (DDPM, DDIM),
float times in [0, 1] for the continuous ones (score SDEs, flow matching, rectified flow).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..generic import forward
from ..tree import is_struct

__all__ = ["as_function", "times"]


def as_function(model: object, **options) -> Callable[[Tensor, Tensor], Tensor]:
    """``f(x, t)``: the model's forward (with ``options`` as keywords, e.g. class labels), or
    the callable itself. Anything else is refused by name."""
    if is_struct(model):
        return lambda x, t: forward(model, x, t, **options)
    if callable(model):
        return (lambda x, t: model(x, t, **options)) if options else model
    raise TypeError(f"expected a zerotoml model or a callable f(x, t); got {type(model).__name__}")


def times(t: float | int | Tensor, x: Tensor) -> Tensor:
    """``t`` as a tensor of shape (batch,) on x's device: one time for every example."""
    t = torch.as_tensor(t, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t has shape {tuple(t.shape)}; expected () or ({x.shape[0]},), one time per example")
    return t
