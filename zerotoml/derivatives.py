"""Functions with a hand-derived first derivative. Note: notes/layers.md#hand-derived-gradients.

Autograd differentiates a formula op by op: GELU written as ``x σ(2u(x))`` becomes a chain of
a dozen elementwise kernels and as many saved intermediates on the way back. For the few
functions on a transformer's hot path (GELU, LayerNorm, softmax, log-softmax) the gradient
has a short closed form, so zerotoml writes it down next to the formula:

    f = derived(value, vjp)

``value(*args) -> (y, extras)`` computes the function (and intermediates worth keeping, e.g.
the normalised x̂ of LayerNorm); ``vjp(g, y, extras, *args)`` returns ``∂L/∂arg`` for every
argument (None for non-tensors) given ``g = ∂L/∂y``. Both are plain differentiable torch
code. Second derivatives (``create_graph=True``) recompute ``value`` with autograd on and run
``vjp`` on that graph, so they are exact too. Each use is tested against torch's own kernel,
values and gradients, in float64.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["derived"]


class _HandDerived(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, vjp, *args):
        y, extras = value(*args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx.rule, ctx.args, ctx.n = (value, vjp), args, len(tensors)
        ctx.save_for_backward(*tensors, y, *extras)  # (saved, so that in-place changes are caught)
        return y

    @staticmethod
    def backward(ctx, g):
        value, vjp = ctx.rule
        saved = ctx.saved_tensors
        inputs = iter(saved[:ctx.n])
        args = [next(inputs) if isinstance(a, Tensor) else a for a in ctx.args]
        y, extras = saved[ctx.n], saved[ctx.n + 1:]
        if torch.is_grad_enabled():
            # create_graph=True: y and the extras as functions of the inputs, and the in-place
            # updates of value and vjp turned into plain operations that autograd can follow
            y, extras = torch.func.functionalize(value)(*args)
            grads = torch.func.functionalize(vjp)(g, y, extras, *args)
        else:
            grads = vjp(g, y, extras, *args)
        return (None, None, *(gr if need else None for gr, need in zip(grads, ctx.needs_input_grad[2:])))


def derived(value: Callable, vjp: Callable) -> Callable:
    """The function ``*args -> value(*args)[0]`` whose backward is ``vjp`` (see the module
    docstring). Without autograd (no input needs a gradient, or grad mode is off) it is just
    ``value``."""

    def f(*args):
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            return _HandDerived.apply(value, vjp, *args)
        return value(*args)[0]

    f.value, f.vjp = value, vjp
    return f
