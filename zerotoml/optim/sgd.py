"""Stochastic gradient descent, plain and with (Nesterov) momentum, as torch.optim.SGD.

Note: notes/optimizers.md#sgd-and-momentum
"""

from __future__ import annotations

import torch

from ..generic import method, step
from ..shapes import Int, Tensor
from ..tree import buffer, struct
from .state import params_and_grads, step_counter, zeros_like_params


@struct
class SGD:
    """``θ ← θ − γ (g + λθ)``: torch.optim.SGD with ``momentum=0``."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far

    def __post_init__(self):
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError(f"SGD: lr={self.lr}, weight_decay={self.weight_decay}; expected both >= 0")

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-3, weight_decay: float = 0.0) -> SGD:
        """An SGD optimizer for ``model`` (it keeps no state but the step counter)."""
        return cls(lr, weight_decay, t=step_counter())


@struct
class Momentum:
    """SGD with momentum (heavy ball, or Nesterov's with ``nesterov=True``), in
    torch.optim.SGD's form: the buffer is a sum of gradients, ``lr`` multiplies it."""

    lr: float = 1e-3
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far
    momentum_buffer: list[Tensor] = buffer(default_factory=list)  # b, one per parameter

    def __post_init__(self):
        if self.lr < 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"Momentum: lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}; "
                f"expected all >= 0"
            )
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"Momentum: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={self.momentum}, dampening={self.dampening}"
            )

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-3, momentum: float = 0.9, dampening: float = 0.0,
             nesterov: bool = False, weight_decay: float = 0.0) -> Momentum:
        """A momentum optimizer for ``model``; buffers are zeros like the parameters."""
        return cls(lr, momentum, dampening, nesterov, weight_decay,
                   t=step_counter(), momentum_buffer=zeros_like_params(model))


@method
def step(opt: SGD, model: object, grads: object, *, lr: float | None = None) -> object:
    """One SGD step. Mutates the parameters of ``model`` and ``opt.t`` in place; returns ``model``.
    ``lr`` overrides ``opt.lr`` for this step (schedules pass it)."""
    ps, gs = params_and_grads(opt, model, grads)
    γ, λ = (opt.lr if lr is None else lr), opt.weight_decay
    with torch.no_grad():
        opt.t.add_(1)
        for θ, g in zip(ps, gs):
            if λ != 0:
                # g_t ← g_t + λ θ_{t−1}   (weight decay as an L2 term, as torch)
                g = g.add(θ, alpha=λ)
            # θ_t ← θ_{t−1} − γ g_t
            θ.add_(g, alpha=-γ)
    return model


@method
def step(opt: Momentum, model: object, grads: object, *, lr: float | None = None) -> object:
    """One momentum step. Mutates the parameters of ``model`` and the state of ``opt``
    in place; returns ``model``. ``lr`` overrides ``opt.lr`` for this step."""
    ps, gs = params_and_grads(opt, model, grads, "momentum_buffer")
    γ, μ, τ, λ = (opt.lr if lr is None else lr), opt.momentum, opt.dampening, opt.weight_decay
    with torch.no_grad():
        opt.t.add_(1)
        first = int(opt.t) == 1
        for θ, g, b in zip(ps, gs, opt.momentum_buffer):
            if λ != 0:
                # g_t ← g_t + λ θ_{t−1}
                g = g.add(θ, alpha=λ)
            if first:
                # b_1 ← g_1   (torch starts the buffer at the first gradient, undamped)
                b.copy_(g)
            else:
                # b_t ← μ b_{t−1} + (1 − τ) g_t
                b.mul_(μ).add_(g, alpha=1 - τ)
            if opt.nesterov:
                # Nesterov (Sutskever et al. 2013, eq. 3-4): v_{t+1} = μ v_t − ε ∇f(θ_t + μ v_t),
                # θ_{t+1} = θ_t + v_{t+1}; torch's form, with the gradient taken at θ:
                # θ_t ← θ_{t−1} − γ (g_t + μ b_t)
                θ.add_(g.add(b, alpha=μ), alpha=-γ)
            else:
                # classical momentum (Sutskever et al. 2013, eq. 1-2): v_{t+1} = μ v_t − ε ∇f(θ_t),
                # θ_{t+1} = θ_t + v_{t+1}; torch's form (v = −γ b when γ is constant):
                # θ_t ← θ_{t−1} − γ b_t
                θ.add_(b, alpha=-γ)
    return model
