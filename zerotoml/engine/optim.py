"""The fast engine's optimizer steps: the update of zerotoml/optim/adam.py's `_adam_loop`, on
all parameters at once. Note: notes/performance.md#optimizers.

`adam` runs torch's fused Adam/AdamW kernel (what torch.optim's ``fused=True`` calls), one
kernel per group of parameters with the same decay; where that private operator is missing
or does not take the tensors (complex parameters, devices other than CPU and CUDA), `adam_foreach`, the same lines as
``torch._foreach_*`` calls, each applying one line of the listing to every tensor of a list;
where that is missing too, the reference loop. Tested equal to the reference step for step in
test/engine/test_optim.py.
"""

from __future__ import annotations

import math

import torch

__all__ = ["adam", "adam_foreach"]


def adam(opt, ps, gs, α, β1, β2, ε, λs, t, decoupled) -> None:
    """One Adam (``decoupled=False``) or AdamW step in place on ``ps`` and ``opt``'s moments."""
    kernel = getattr(torch, "_fused_adamw_" if decoupled else "_fused_adam_", None)
    if kernel is not None and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in ps):
        return _fused(kernel, opt, ps, gs, α, β1, β2, ε, λs)
    if not opt.amsgrad and hasattr(torch, "_foreach_addcdiv_") and not any(p.is_complex() for p in ps):
        return adam_foreach(opt.m, opt.v, ps, gs, α, β1, β2, ε, λs, t, decoupled)
    from ..optim.adam import _adam_loop

    _adam_loop(opt, ps, gs, α, β1, β2, ε, λs, t, decoupled)


def _fused(kernel, opt, ps, gs, α, β1, β2, ε, λs) -> None:
    groups = {}
    for i, λ in enumerate(λs):
        groups.setdefault((λ, ps[i].device, ps[i].dtype), []).append(i)
    step_t = {}
    for (λ, device, _), idx in groups.items():
        if device not in step_t:
            step_t[device] = opt.t.to(dtype=torch.float32, device=device)
        kernel([ps[i] for i in idx], [gs[i] for i in idx], [opt.m[i] for i in idx], [opt.v[i] for i in idx],
               [opt.v_max[i] for i in idx] if opt.amsgrad else [], [step_t[device]] * len(idx), lr=α,
               beta1=β1, beta2=β2, weight_decay=λ, eps=ε, amsgrad=opt.amsgrad, maximize=False)


def adam_foreach(ms, vs, ps, gs, α, β1, β2, ε, λs, t, decoupled) -> None:
    """`_adam_loop`'s update, line for line, on all parameters at once (no amsgrad)."""
    decayed = [i for i, λ in enumerate(λs) if λ != 0]
    if decayed and not decoupled:                       # g_t ← g_t + λ θ_{t−1}
        gs = list(gs)
        for i in decayed:
            gs[i] = gs[i].add(ps[i], alpha=λs[i])
    if decayed and decoupled:                           # θ ← (1 − lr · λ) θ
        for λ in sorted({λs[i] for i in decayed}):
            torch._foreach_mul_([ps[i] for i in decayed if λs[i] == λ], 1 - α * λ)
    torch._foreach_mul_(ms, β1)                         # m_t ← β1 m_{t−1} + (1 − β1) g_t
    torch._foreach_add_(ms, gs, alpha=1 - β1)
    torch._foreach_mul_(vs, β2)                         # v_t ← β2 v_{t−1} + (1 − β2) g_t²
    torch._foreach_addcmul_(vs, gs, gs, value=1 - β2)
    denom = torch._foreach_sqrt(vs)                     # √v_t / √(1 − β2^t) + ε
    torch._foreach_div_(denom, math.sqrt(1 - β2**t))
    torch._foreach_add_(denom, ε)
    torch._foreach_addcdiv_(ps, ms, denom, value=-α / (1 - β1**t))  # θ_t ← θ_{t−1} − α/(1 − β1^t) m_t / denom
