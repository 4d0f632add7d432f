"""zerotoml/diffusion/ode.py: each integrator has its order on an ODE with a closed-form solution,
runs backwards as well as forwards, and Euler–Maruyama gives an Ornstein–Uhlenbeck process its
exact mean and variance."""

import math

import pytest
import torch

from zerotoml.diffusion.ode import METHODS, euler_maruyama_step, grid, solve

f64 = torch.float64
A = torch.tensor([[-0.5, 1.5], [-1.5, -0.5]], dtype=f64)  # a decaying rotation


def linear(x, t):
    """dx/dt = x M + t b with M = Aᵀ, b = (1, −1)."""
    return x @ A.T + t[:, None] * torch.tensor([1.0, -1.0], dtype=f64)


def exact(x0):
    """x(1) = x_0 e^M + b ∫_0^1 s e^{(1 − s) M} ds = x_0 e^M + b M⁻² (e^M − I − M)."""
    M, I, b = A.T, torch.eye(2, dtype=f64), torch.tensor([1.0, -1.0], dtype=f64)
    E, Minv = torch.linalg.matrix_exp(M), torch.linalg.inv(M)
    return x0 @ E + b @ Minv @ Minv @ (E - I - M)


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_each_method_has_its_order(method, order):
    """Halving h divides the error by 2^order (within 25 %), against the closed form."""
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=f64)
    want = exact(x0)
    e = [(solve(linear, x0, 0.0, 1.0, steps=n, method=method) - want).abs().max() for n in (8, 16)]
    assert 2**order * 0.75 < e[0] / e[1] < 2**order * 1.25, e


@pytest.mark.parametrize("method", METHODS)
def test_backwards_undoes_forwards(method):
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=f64)
    there = solve(linear, x0, 0.0, 1.0, steps=200, method=method)
    back = solve(linear, there, 1.0, 0.0, steps=200, method=method)
    torch.testing.assert_close(back, x0, atol=0.05 if method == "euler" else 1e-4, rtol=0)


def test_trajectory_holds_every_state_and_nothing_passed_in_is_written():
    x0 = torch.ones(3, 2, dtype=f64)
    path = solve(linear, x0, 0.0, 1.0, steps=5, trajectory=True)
    assert path.shape == (6, 3, 2)
    torch.testing.assert_close(path[0], x0)
    torch.testing.assert_close(x0, torch.ones(3, 2, dtype=f64))
    torch.testing.assert_close(grid(0.0, 1.0, 4, x0), torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=f64))


def test_euler_maruyama_gives_an_ornstein_uhlenbeck_process_its_law():
    """dx = −θ x dt + s dw from x_0: x(1) ~ N(x_0 e^{−θ}, s² (1 − e^{−2θ}) / 2θ); 100 steps, 20000
    paths: within 3 standard errors, plus the scheme's O(h) bias."""
    θ, s, x0 = 1.5, 0.8, 2.0
    g = torch.Generator().manual_seed(0)
    x = torch.full((20000, 1), x0, dtype=f64)
    ts = grid(0.0, 1.0, 100, x)
    for n in range(100):
        x = euler_maruyama_step(lambda y, t: -θ * y, lambda t: torch.full_like(t, s), x, ts[n], ts[n + 1] - ts[n],
                                generator=g)
    mean, var = x0 * math.exp(-θ), s**2 * (1 - math.exp(-2 * θ)) / (2 * θ)
    assert abs(x.mean().item() - mean) < 3 * math.sqrt(var / 20000) + 0.01
    assert abs(x.var().item() - var) < 3 * var * math.sqrt(2 / 20000) + 0.01


def test_bad_arguments_are_refused_by_name():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="steps=0"):
        solve(linear, x, 0.0, 1.0, steps=0)
    with pytest.raises(ValueError, match="steps=2.5"):
        solve(linear, x, 0.0, 1.0, steps=2.5)
    with pytest.raises(ValueError, match="method='rk45'"):
        solve(linear, x, 0.0, 1.0, steps=2, method="rk45")
