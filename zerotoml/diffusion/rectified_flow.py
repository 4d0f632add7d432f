"""Rectified flow (Liu, Gong, Liu 2022, "Flow Straight and Fast", arXiv:2209.03003): learn the
ODE dZ_t = v(Z_t, t) dt that follows the straight lines between paired points X_0 ~ π_0 and
X_1 ~ π_1 as well as one ODE can, then "reflow": pair each Z_0 with the Z_1 the learned ODE sends
it to and learn again. Each reflow makes the paths straighter, until one Euler step is enough.
Note: notes/rectified_flow.md.

Time convention (as flow matching's): X_0 is noise at t = 0, X_1 is data at t = 1; sampling
integrates from t = 0 to t = 1. The 1-rectified flow (1-RF) is trained on independent pairs
(X_0, X_1) ~ π_0 × π_1; the 2-RF on the pairs (Z_0, Z_1) that 1-RF's ODE draws (`reflow_pairs`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..generic import loss, method, sample
from ..shapes import Float
from ..tree import struct
from .common import as_function
from .flow_matching import squared_norm, uniform_times
from .ode import METHODS, _along, check_steps, grid, solve

__all__ = ["RectifiedFlow", "interpolate", "reflow_pairs", "straightness"]


@struct
class RectifiedFlow:
    """A velocity model ``v(x, t)`` (a zerotoml model or a callable) of a rectified flow;
    ``k`` counts the rectifications (1 for 1-RF, 2 after one reflow), for the reader only."""

    model: Any
    k: int = 1


def interpolate(x0: Float[Tensor, "b *dims"], x1: Float[Tensor, "b *dims"], t: Float[Tensor, "b"]
                ) -> Float[Tensor, "b *dims"]:
    """X_t: the point at time t on the straight line from X_0 to X_1."""
    t = _along(t, x0)
    # (eq. 1)  X_t = t X_1 + (1 − t) X_0
    return t * x1 + (1 - t) * x0


@method
def loss(rf: RectifiedFlow, x0: Float[Tensor, "b *dims"], x1: Float[Tensor, "b *dims"], *,
         t: Tensor | None = None, generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """The rectified-flow regression on a batch of pairs (x0[i], x1[i]): independent draws for 1-RF,
    the pairs of `reflow_pairs` for reflow; t ~ U[0, 1] unless given. The squared norm is summed
    over an example's axes and averaged over the batch."""
    if x0.shape != x1.shape:
        raise ValueError(f"loss(RectifiedFlow): arguments `x0` {tuple(x0.shape)} and `x1` {tuple(x1.shape)} "
                         f"must have the same shape (one pair per example)")
    t = uniform_times(x0, t, generator, "loss(RectifiedFlow)")
    v = as_function(rf.model)
    # (eq. 1)  min_v ∫_0^1 E[‖(X_1 − X_0) − v(X_t, t)‖²] dt
    return squared_norm((x1 - x0) - v(interpolate(x0, x1, t), t)).mean()


@method
def sample(rf: RectifiedFlow, x0: Float[Tensor, "b *dims"], *, steps: int = 1, method: str = "euler"
           ) -> Float[Tensor, "b *dims"]:
    """Z_1 from Z_0 = x0 (noise at t = 0): the ODE dZ_t = v(Z_t, t) dt integrated to t = 1 in
    ``steps`` steps of ``method``. The default, one Euler step, is Z_1 = Z_0 + v(Z_0, 0): the
    one-step generator that reflow makes accurate. No gradient is recorded."""
    check_steps(steps, "sample(RectifiedFlow)")
    if method not in METHODS:
        raise ValueError(f"sample(RectifiedFlow): method={method!r}; expected one of {', '.join(METHODS)}")
    with torch.no_grad():
        # dZ_t = v(Z_t, t) dt,  Z_0 = x0
        return solve(rf.model, x0, 0.0, 1.0, steps=steps, method=method)


def reflow_pairs(rf: RectifiedFlow, x0: Float[Tensor, "b *dims"], *, steps: int = 100, method: str = "rk4"
                 ) -> tuple[Float[Tensor, "b *dims"], Float[Tensor, "b *dims"]]:
    """The coupling (Z_0, Z_1) that the flow draws: Z_0 = x0 and Z_1 its ODE solution at t = 1,
    solved accurately (many steps) so that the next flow learns the flow, not its solver's error.
    Training ``RectifiedFlow(model, k=rf.k + 1)`` on these pairs is one reflow."""
    # Reflow:  Z^{k+1} = RectFlow((Z_0^k, Z_1^k))
    return x0, sample(rf, x0, steps=steps, method=method)


def straightness(v: object, x0: Float[Tensor, "b *dims"], *, steps: int = 100, method: str = "rk4"
                 ) -> float:
    """S(Z) of the flow of ``v`` (a model, a callable v(x, t) or a RectifiedFlow) started at x0:
    the ODE is solved on a grid of ``steps`` steps, the velocity read at every grid time and the
    integral over t taken by the trapezoid rule. Zero exactly when every path is a straight line
    run at constant speed."""
    check_steps(steps, "straightness")
    f = as_function(v.model if isinstance(v, RectifiedFlow) else v)
    with torch.no_grad():
        Z = solve(f, x0, 0.0, 1.0, steps=steps, method=method, trajectory=True)  # (steps + 1, b, *dims)
        ts = grid(0.0, 1.0, steps, x0)
        gaps = torch.stack([squared_norm((Z[-1] - Z[0]) - f(Z[n], ts[n].expand(x0.shape[0]))).mean()
                            for n in range(steps + 1)])
        w = torch.full_like(gaps, 1.0 / steps)
        w[0] = w[-1] = 0.5 / steps
        # (§2.3)  S(Z) = ∫_0^1 E[‖(Z_1 − Z_0) − Ż_t‖²] dt
        return float(torch.einsum("n,n->", w, gaps))
