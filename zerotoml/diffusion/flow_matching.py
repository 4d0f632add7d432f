"""Flow matching on the conditional optimal-transport path (Lipman, Chen, Ben-Hamu, Nickel, Le
2022, arXiv:2210.02747). Note: notes/flow_matching.md.

Time runs the other way from diffusion: x_0 ~ N(0, I) is noise at t = 0 and x_1 ~ q is data at
t = 1. A velocity model v_θ(x, t) is regressed on the velocity of the straight conditional path
ψ_t(x_0) = (1 − (1 − σ_min) t) x_0 + t x_1, and sampling integrates dx/dt = v_θ(x, t) from
t = 0 to t = 1 (zerotoml/diffusion/ode.py: Euler, midpoint, Heun, RK4).

In the terms of zerotoml/diffusion/mixture.py (x_t = α x_data + σ z) the path is α(t) = t,
σ(t) = 1 − (1 − σ_min) t: `ot_coefficients` gives both and their derivatives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..generic import loss, method, sample
from ..shapes import Float
from ..tree import struct
from .common import as_function, times
from .ode import METHODS, _along, check_steps, check_time, solve

__all__ = ["FlowMatching", "ot_coefficients", "ot_path", "conditional_velocity", "ot_target", "uniform_times"]


@struct
class FlowMatching:
    """A velocity model ``v_θ(x, t)`` (a zerotoml model or a callable) trained on the conditional
    OT path with ``sigma_min`` (σ_min, the width left around each data point at t = 1)."""

    model: Any
    sigma_min: float = 1e-4

    def __post_init__(self):
        _check_sigma_min(self.sigma_min, "FlowMatching")


def _check_sigma_min(sigma_min: float, who: str) -> float:
    if not 0.0 <= float(sigma_min) < 1.0:
        raise ValueError(f"{who}: sigma_min={sigma_min}; expected 0 <= sigma_min < 1")
    return float(sigma_min)


def ot_coefficients(t: float | Tensor, sigma_min: float) -> tuple[Any, Any, float, float]:
    """``(α, σ, α', σ')`` of the OT path at time t: μ_t = α x_1, σ_t the standard deviation."""
    _check_sigma_min(sigma_min, "ot_coefficients")
    # (eq. 20)  μ_t(x_1) = t x_1,  σ_t(x_1) = 1 − (1 − σ_min) t
    return t, 1 - (1 - sigma_min) * t, 1.0, -(1 - sigma_min)


def ot_path(x0: Float[Tensor, "b *dims"], x1: Float[Tensor, "b *dims"], t: Float[Tensor, "b"],
            sigma_min: float) -> Float[Tensor, "b *dims"]:
    """ψ_t(x_0): the point at time t of the straight path from noise x_0 towards data x_1."""
    _check_sigma_min(sigma_min, "ot_path")
    t = _along(t, x0)
    # (eq. 22)  ψ_t(x) = (1 − (1 − σ_min) t) x + t x_1
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def conditional_velocity(x: Float[Tensor, "b *dims"], x1: Float[Tensor, "b *dims"], t: Float[Tensor, "b"],
                         sigma_min: float) -> Float[Tensor, "b *dims"]:
    """u_t(x | x_1): the velocity at x of the conditional path towards x_1 (x anywhere)."""
    _check_sigma_min(sigma_min, "conditional_velocity")
    t = _along(t, x)
    # (eq. 21)  u_t(x | x_1) = (x_1 − (1 − σ_min) x) / (1 − (1 − σ_min) t)
    return (x1 - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * t)


def ot_target(x0: Float[Tensor, "b *dims"], x1: Float[Tensor, "b *dims"], sigma_min: float) -> Float[Tensor, "b *dims"]:
    """d/dt ψ_t(x_0) = u_t(ψ_t(x_0) | x_1): the regression target of eq. 23, the same at every t."""
    _check_sigma_min(sigma_min, "ot_target")
    # (eq. 23)  d/dt ψ_t(x_0) = x_1 − (1 − σ_min) x_0
    return x1 - (1 - sigma_min) * x0


def uniform_times(x: Tensor, t: Tensor | None, generator: torch.Generator | None, who: str) -> Tensor:
    """t ~ U[0, 1], one per example, or the given times checked to lie in [0, 1]."""
    if t is None:
        return torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
    t = times(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError(f"{who}: argument `t` has times in [{float(t.min())}, {float(t.max())}]; "
                         f"expected times in [0, 1]")
    return t


def squared_norm(r: Float[Tensor, "b *dims"]) -> Float[Tensor, "b"]:
    """‖r‖² of every example: the sum over all axes but the first."""
    return r.pow(2).flatten(1).sum(1)


@method
def loss(fm: FlowMatching, x1: Float[Tensor, "b *dims"], *, x0: Tensor | None = None, t: Tensor | None = None,
         generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """The conditional flow-matching loss on a batch of data x_1: noise x_0 ~ N(0, I) and times
    t ~ U[0, 1] are drawn unless given. The squared norm is summed over an example's axes and
    averaged over the batch."""
    if x0 is not None and x0.shape != x1.shape:
        raise ValueError(f"loss(FlowMatching): argument `x0` has shape {tuple(x0.shape)}; "
                         f"expected the shape of x1, {tuple(x1.shape)}")
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
    t = uniform_times(x1, t, generator, "loss(FlowMatching)")
    v = as_function(fm.model)
    # (eq. 23)  L_CFM(θ) = E_{t, q(x_1), p(x_0)} ‖v_t(ψ_t(x_0)) − (x_1 − (1 − σ_min) x_0)‖²
    r = v(ot_path(x0, x1, t, fm.sigma_min), t) - ot_target(x0, x1, fm.sigma_min)
    return squared_norm(r).mean()


@method
def sample(fm: FlowMatching, x0: Float[Tensor, "b *dims"], *, steps: int = 100, method: str = "euler",
           t0: float = 0.0, t1: float = 1.0) -> Float[Tensor, "b *dims"]:
    """Data from noise: integrate dx/dt = v_θ(x, t) from x(t0) = x0 (noise at t0 = 0) to t1 = 1
    in ``steps`` steps of ``method`` (euler, midpoint, heun or rk4). No gradient is recorded."""
    check_steps(steps, "sample(FlowMatching)")
    if method not in METHODS:
        raise ValueError(f"sample(FlowMatching): method={method!r}; expected one of {', '.join(METHODS)}")
    t0, t1 = check_time(t0, "t0", "sample(FlowMatching)"), check_time(t1, "t1", "sample(FlowMatching)")
    with torch.no_grad():
        # (eq. 1)  d/dt φ_t(x) = v_t(φ_t(x)),  φ_0(x) = x
        return solve(fm.model, x0, t0, t1, steps=steps, method=method)
