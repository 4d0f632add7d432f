"""Integrators on a uniform time grid: Euler, midpoint, Heun and RK4 for an ODE dx = f(x, t) dt,
Euler–Maruyama for an SDE dx = f(x, t) dt + g(t) dw. Note: notes/flow_matching.md#sampling.

Flow matching and rectified flow integrate from noise at t = 0 to data at t = 1; the score SDEs
integrate backwards, from t = 1 to t ≈ 0, with a negative step h. Both are the same code here:
the grid goes from ``t0`` to ``t1`` in ``steps`` equal steps of h = (t1 − t0) / steps, whatever
the sign. ``f`` is a model or any callable ``f(x, t)`` with t of shape (batch,) (see
zerotoml/diffusion/common.py); nothing a caller passed in is written.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .common import as_function, times

__all__ = ["METHODS", "grid", "ode_step", "solve", "euler_maruyama_step"]

METHODS = ("euler", "midpoint", "heun", "rk4")

Field = Callable[[Tensor, Tensor], Tensor]


def check_steps(steps: object, who: str) -> int:
    """``steps`` as an int ≥ 1, or a ValueError that names it."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{who}: steps={steps!r}; expected an integer >= 1")
    return steps


def check_time(t: float, name: str, who: str, lo: float = 0.0, hi: float = 1.0) -> float:
    """A time in [lo, hi], or a ValueError that names the argument."""
    t = float(t)
    if not lo <= t <= hi:
        raise ValueError(f"{who}: {name}={t}; expected a time in [{lo}, {hi}]")
    return t


def grid(t0: float, t1: float, steps: int, x: Tensor) -> Tensor:
    """The ``steps + 1`` times ``t0, t0 + h, ..., t1`` in x's dtype and on x's device."""
    check_steps(steps, "grid")
    return torch.linspace(float(t0), float(t1), steps + 1, dtype=x.dtype, device=x.device)


def _at(t: Tensor, x: Tensor) -> Tensor:
    """One time for every example of x (shape (batch,))."""
    return times(t.to(x.dtype), x)


def _along(c: Tensor, x: Tensor) -> Tensor:
    """A per-example (or scalar) coefficient shaped to broadcast over x's other axes."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim())) if c.dim() else c


def ode_step(f: Field, x: Tensor, t: Tensor, t_next: Tensor, method: str = "euler") -> Tensor:
    """One step from (x, t) to t_next for dx/dt = f(x, t), h = t_next − t. The last stage is read at
    t_next itself, not t + h, so that rounding never steps outside the grid."""
    h = t_next - t
    if method == "euler":
        # x_{n+1} = x_n + h f(x_n, t_n)
        return x + h * f(x, _at(t, x))
    if method == "midpoint":
        # x_{n+1} = x_n + h f(x_n + h/2 f(x_n, t_n), t_n + h/2)
        k1 = f(x, _at(t, x))
        return x + h * f(x + h / 2 * k1, _at(t + h / 2, x))
    if method == "heun":
        # x̃ = x_n + h f(x_n, t_n);  x_{n+1} = x_n + h/2 (f(x_n, t_n) + f(x̃, t_{n+1}))
        k1 = f(x, _at(t, x))
        k2 = f(x + h * k1, _at(t_next, x))
        return x + h / 2 * (k1 + k2)
    if method == "rk4":
        # x_{n+1} = x_n + h/6 (k1 + 2 k2 + 2 k3 + k4)
        k1 = f(x, _at(t, x))
        k2 = f(x + h / 2 * k1, _at(t + h / 2, x))
        k3 = f(x + h / 2 * k2, _at(t + h / 2, x))
        k4 = f(x + h * k3, _at(t_next, x))
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    raise ValueError(f"ode_step: method={method!r}; expected one of {', '.join(METHODS)}")


def solve(f: object, x: Tensor, t0: float, t1: float, *, steps: int, method: str = "euler",
          trajectory: bool = False) -> Tensor:
    """x(t1) for dx/dt = f(x, t), x(t0) = x, in ``steps`` steps of ``method`` (one of METHODS);
    with ``trajectory=True``, all ``steps + 1`` states stacked on a new first axis."""
    check_steps(steps, "solve")
    if method not in METHODS:
        raise ValueError(f"solve: method={method!r}; expected one of {', '.join(METHODS)}")
    f = as_function(f)
    ts = grid(t0, t1, steps, x)
    states = [x]
    for n in range(steps):
        x = ode_step(f, x, ts[n], ts[n + 1], method)
        if trajectory:
            states.append(x)
    return torch.stack(states) if trajectory else x


def euler_maruyama_step(drift: Field, g: Callable[[Tensor], Tensor], x: Tensor, t: Tensor, h: Tensor, *,
                        generator: torch.Generator | None = None, noise: bool = True) -> Tensor:
    """One Euler–Maruyama step of dx = drift(x, t) dt + g(t) dw:
    x_{n+1} = x_n + drift(x_n, t_n) h + g(t_n) √|h| z, z ~ N(0, I). h < 0 steps back in time
    (dw is then the reverse-time Brownian motion dw̄). ``noise=False`` leaves out the last term."""
    tt = _at(t, x)
    x = x + drift(x, tt) * h
    if not noise:
        return x
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + _along(g(tt), x) * h.abs().sqrt() * z
