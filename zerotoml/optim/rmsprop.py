"""RMSProp (Hinton, Neural Networks for Machine Learning, lecture 6e, 2012), with
Graves' (2013) centred variant and momentum, as torch.optim.RMSprop.

Note: notes/optimizers.md#rmsprop
"""

from __future__ import annotations

import torch

from ..generic import method, step
from ..shapes import Int, Tensor
from ..tree import buffer, struct
from .state import params_and_grads, step_counter, zeros_like_params


@struct
class RMSprop:
    """Divide the gradient by a running root mean square of recent gradients.
    ``centered`` subtracts the squared running mean of the gradient (a variance);
    ``momentum > 0`` keeps a buffer of normalised gradients; ``weight_decay`` adds ``λθ``."""

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far
    mean_square: list[Tensor] = buffer(default_factory=list)  # MeanSquare(w, t), torch's "square_avg"
    mean_grad: list[Tensor] = buffer(default_factory=list)  # only when centered, torch's "grad_avg"
    momentum_buffer: list[Tensor] = buffer(default_factory=list)  # only when momentum > 0

    def __post_init__(self):
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"RMSprop: {name}={getattr(self, name)}; expected >= 0")

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
             weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> RMSprop:
        """An RMSprop optimizer for ``model``; the state it uses is zeros like the parameters."""
        return cls(lr, alpha, eps, weight_decay, momentum, centered, t=step_counter(),
                   mean_square=zeros_like_params(model),
                   mean_grad=zeros_like_params(model) if centered else [],
                   momentum_buffer=zeros_like_params(model) if momentum > 0 else [])


def _used_state(opt: RMSprop) -> list[str]:
    used = ["mean_square"]
    if opt.centered:
        used.append("mean_grad")
    if opt.momentum > 0:
        used.append("momentum_buffer")
    return used


@method
def step(opt: RMSprop, model: object, grads: object, *, lr: float | None = None) -> object:
    """One RMSProp step. Mutates the parameters of ``model`` and the state of ``opt``
    in place; returns ``model``. ``lr`` overrides ``opt.lr`` for this step."""
    ps, gs = params_and_grads(opt, model, grads, *_used_state(opt))
    η, α, ε, λ, μ = (opt.lr if lr is None else lr), opt.alpha, opt.eps, opt.weight_decay, opt.momentum
    with torch.no_grad():
        opt.t.add_(1)
        for i, (w, g) in enumerate(zip(ps, gs)):
            if λ != 0:
                # g ← g + λ w
                g = g.add(w, alpha=λ)
            # MeanSquare(w, t) = 0.9 MeanSquare(w, t−1) + 0.1 (∂E/∂w (t))²   (lecture 6e; 0.9 is α)
            ms = opt.mean_square[i].mul_(α).addcmul_(g, g, value=1 - α)
            if opt.centered:
                # Graves 2013, eq. 39-40 (his ε_i is the gradient, ℸ the epsilon):
                #   g_i = ℵ g_i + (1 − ℵ) ε_i,   Δ_i = ℶ Δ_i − ℷ ε_i / sqrt(n_i − g_i² + ℸ);
                # torch puts its ε outside the root: sqrt(n − ḡ²) + ε
                ḡ = opt.mean_grad[i].mul_(α).add_(g, alpha=1 - α)
                rms = ms.addcmul(ḡ, ḡ, value=-1).sqrt_().add_(ε)
            else:
                rms = ms.sqrt().add_(ε)
            if μ > 0:
                # b ← μ b + g / rms;  w ← w − η b   (Graves' Δ = −η b when η is constant)
                b = opt.momentum_buffer[i].mul_(μ).addcdiv_(g, rms)
                w.add_(b, alpha=-η)
            else:
                # w ← w − η g / (sqrt(MeanSquare(w, t)) + ε)
                w.addcdiv_(g, rms, value=-η)
    return model
