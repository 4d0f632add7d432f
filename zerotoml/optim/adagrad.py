"""AdaGrad (Duchi, Hazan & Singer, 2011), diagonal form, as torch.optim.Adagrad.

Note: notes/optimizers.md#adagrad
"""

from __future__ import annotations

import torch

from ..generic import method, step
from ..shapes import Int, Tensor
from ..tree import buffer, struct
from .state import params_and_grads, step_counter, zeros_like_params


@struct
class Adagrad:
    """Per-coordinate step ``η / (δ + sqrt(Σ g²))``; ``lr_decay`` divides ``lr`` by
    ``1 + (t − 1) lr_decay``, ``weight_decay`` adds ``λθ`` to the gradient (torch's options)."""

    lr: float = 1e-2
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far
    G: list[Tensor] = buffer(default_factory=list)  # diag(G_t) = Σ_τ g_τ², torch's state "sum"

    def __post_init__(self):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"Adagrad: {name}={getattr(self, name)}; expected >= 0")

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
             initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> Adagrad:
        """An Adagrad optimizer for ``model``; ``G`` starts at ``initial_accumulator_value``."""
        return cls(lr, lr_decay, weight_decay, initial_accumulator_value, eps, t=step_counter(),
                   G=zeros_like_params(model, fill=initial_accumulator_value))


@method
def step(opt: Adagrad, model: object, grads: object, *, lr: float | None = None) -> object:
    """One AdaGrad step. Mutates the parameters of ``model`` and the state of ``opt``
    in place; returns ``model``. ``lr`` overrides ``opt.lr`` for this step."""
    ps, gs = params_and_grads(opt, model, grads, "G")
    η, λ, δ = (opt.lr if lr is None else lr), opt.weight_decay, opt.eps
    with torch.no_grad():
        opt.t.add_(1)
        t = int(opt.t)
        # η_t = η / (1 + (t − 1) · lr_decay)   (torch's lr_decay; 0 gives the paper's constant η)
        η_t = η / (1 + (t - 1) * opt.lr_decay)
        for x, g, G in zip(ps, gs, opt.G):
            if λ != 0:
                # g_t ← g_t + λ x_t
                g = g.add(x, alpha=λ)
            # diag(G_t) = Σ_{τ≤t} g_τ²,  so  s_{t,i} = ‖g_{1:t,i}‖₂ = sqrt(diag(G_t)_i)
            G.addcmul_(g, g)
            # x_{t+1} = x_t − η H_t⁻¹ g_t,  H_t = δI + diag(s_t)
            # (Duchi et al. 2011, Figure 1, diagonal AdaGrad, with no regulariser φ)
            x.addcdiv_(g, G.sqrt().add_(δ), value=-η_t)
    return model
