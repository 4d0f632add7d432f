"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as torch.optim.Adam
and torch.optim.AdamW.

Both follow Loshchilov & Hutter's Algorithm 2, which writes the two in one listing:
Adam's ``weight_decay`` adds ``λθ`` to the gradient (L2 regularisation, line 6),
AdamW's shrinks the weights beside the Adam step (decoupled decay, line 12).
Note: notes/optimizers.md#adam-and-adamw
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .. import engine
from ..generic import method, step
from ..shapes import Int, Tensor
from ..tree import buffer, struct
from .state import decay_mask, params_and_grads, step_counter, zeros_like_params


def _check(name: str, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    if lr < 0 or eps < 0 or weight_decay < 0:
        raise ValueError(f"{name}: lr={lr}, eps={eps}, weight_decay={weight_decay}; expected all >= 0")
    if len(betas) != 2 or not all(0 <= β < 1 for β in betas):
        raise ValueError(f"{name}: betas={betas}; expected two numbers in [0, 1)")


@struct
class Adam:
    """Adam with torch.optim.Adam's options: ``weight_decay`` is an L2 term added to
    the gradient (not AdamW's decoupled decay); ``amsgrad`` divides by the running
    maximum of ``v`` (Reddi et al., 2018, in torch's bias-corrected form)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far (0-dim int64 tensor)
    m: list[Tensor] = buffer(default_factory=list)  # first moments, one per parameter
    v: list[Tensor] = buffer(default_factory=list)  # second raw moments
    amsgrad: bool = False
    v_max: list[Tensor] = buffer(default_factory=list)  # max of v so far, only with amsgrad
    decay: tuple[bool, ...] | None = None  # which parameters weight_decay applies to (None: all)

    def __post_init__(self):
        _check("Adam", self.lr, self.betas, self.eps, self.weight_decay)

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
             eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
             decay: Callable[[str, Tensor], bool] | None = None) -> Adam:
        """An Adam optimizer for ``model``; m, v (and v_max) are zeros like the parameters.
        ``decay(name, parameter)`` picks the parameters ``weight_decay`` applies to (torch.optim's
        two parameter groups); e.g. ``lambda name, p: p.dim() >= 2`` decays the weight matrices
        and embeddings but not the biases and norm gains, as GPT-2 and nanoGPT do."""
        return cls(lr, tuple(betas), eps, weight_decay, t=step_counter(), m=zeros_like_params(model),
                   v=zeros_like_params(model), amsgrad=amsgrad,
                   v_max=zeros_like_params(model) if amsgrad else [], decay=decay_mask(model, decay))


@struct
class AdamW:
    """AdamW with torch.optim.AdamW's options: ``weight_decay`` shrinks the weights by
    ``lr · weight_decay`` each step, apart from the Adam step."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    t: Int[Tensor, ""] = buffer(default=None)  # steps taken so far (0-dim int64 tensor)
    m: list[Tensor] = buffer(default_factory=list)
    v: list[Tensor] = buffer(default_factory=list)
    amsgrad: bool = False
    v_max: list[Tensor] = buffer(default_factory=list)
    decay: tuple[bool, ...] | None = None  # which parameters weight_decay applies to (None: all)

    def __post_init__(self):
        _check("AdamW", self.lr, self.betas, self.eps, self.weight_decay)

    @classmethod
    def init(cls, model: object, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
             eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False,
             decay: Callable[[str, Tensor], bool] | None = None) -> AdamW:
        """An AdamW optimizer for ``model``; m, v (and v_max) are zeros like the parameters.
        ``decay(name, parameter)`` picks the parameters ``weight_decay`` applies to (torch.optim's
        two parameter groups); e.g. ``lambda name, p: p.dim() >= 2`` decays the weight matrices
        and embeddings but not the biases and norm gains, as GPT-2 and nanoGPT do."""
        return cls(lr, tuple(betas), eps, weight_decay, t=step_counter(), m=zeros_like_params(model),
                   v=zeros_like_params(model), amsgrad=amsgrad,
                   v_max=zeros_like_params(model) if amsgrad else [], decay=decay_mask(model, decay))


def _adam(opt: Adam | AdamW, model: object, grads: object, lr: float | None, decoupled: bool) -> object:
    ps, gs = params_and_grads(opt, model, grads, "m", "v", *(["v_max"] if opt.amsgrad else []))
    α, (β1, β2), ε, λ = (opt.lr if lr is None else lr), opt.betas, opt.eps, opt.weight_decay
    with torch.no_grad():
        # t ← t + 1
        opt.t.add_(1)
        t = int(opt.t)
        λs = [λ] * len(ps) if opt.decay is None else [λ if d else 0.0 for d in opt.decay]
        if engine.fast():  # the fast engine takes over here (zerotoml/engine/optim.py)
            engine.optim.adam(opt, ps, gs, α, β1, β2, ε, λs, t, decoupled)
        else:
            _adam_loop(opt, ps, gs, α, β1, β2, ε, λs, t, decoupled)
    return model


def _adam_loop(opt, ps, gs, α, β1, β2, ε, λs, t, decoupled) -> None:
    """The update one parameter at a time, as the papers list it (λs: each one's decay)."""
    for i, (θ, g, λ) in enumerate(zip(ps, gs, λs)):
        m, v = opt.m[i], opt.v[i]
        if λ != 0 and not decoupled:
            # Adam with L2 (Algorithm 2, line 6): g_t ← ∇f_t(θ_{t−1}) + λ θ_{t−1}
            g = g.add(θ, alpha=λ)
        if λ != 0 and decoupled:
            # AdamW (Algorithm 2, line 12), its decay part: θ_t ← θ_{t−1} − η_t λ θ_{t−1},
            # with torch's η_t λ = lr · weight_decay
            θ.mul_(1 - α * λ)
        # m_t ← β1 · m_{t−1} + (1 − β1) · g_t
        m.mul_(β1).add_(g, alpha=1 - β1)
        # v_t ← β2 · v_{t−1} + (1 − β2) · g_t²
        v.mul_(β2).addcmul_(g, g, value=1 - β2)
        if opt.amsgrad:
            # AMSGrad: v_max ← max(v_max, v_t), used in place of v_t below
            v = torch.maximum(opt.v_max[i], v, out=opt.v_max[i])
        # m̂_t ← m_t / (1 − β1^t);  v̂_t ← v_t / (1 − β2^t)
        # θ_t ← θ_{t−1} − α · m̂_t / (√v̂_t + ε)   (Kingma & Ba 2015, Algorithm 1)
        # computed without materialising m̂_t: √v̂_t = √v_t / √(1 − β2^t), and the
        # 1/(1 − β1^t) of m̂_t folds into the step size (same order as torch.optim)
        denom = (v.sqrt() / math.sqrt(1 - β2**t)).add_(ε)
        θ.addcdiv_(m, denom, value=-α / (1 - β1**t))


@method
def step(opt: Adam, model: object, grads: object, *, lr: float | None = None) -> object:
    """One Adam step. Mutates the parameters of ``model`` (under torch.no_grad) and the
    state of ``opt`` in place; returns ``model``. ``grads`` is the struct returned by
    zerotoml.tree.value_and_grad; ``lr`` overrides ``opt.lr`` for this step."""
    return _adam(opt, model, grads, lr, decoupled=False)


@method
def step(opt: AdamW, model: object, grads: object, *, lr: float | None = None) -> object:
    """One AdamW step. Mutates the parameters of ``model`` (under torch.no_grad) and the
    state of ``opt`` in place; returns ``model``. ``lr`` overrides ``opt.lr`` for this
    step, and the decay ``lr · weight_decay`` follows it, as in torch."""
    return _adam(opt, model, grads, lr, decoupled=True)
