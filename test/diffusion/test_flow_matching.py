"""zerotoml/diffusion/flow_matching.py (and the integrators of ode.py) against closed forms: the
OT path's formulas agree with each other, the CFM loss is what eq. 23 says and is smallest at the
exact marginal velocity, and Euler, midpoint and Heun fed the exact velocity of a 2-D Gaussian
mixture's OT path carry noise to the mixture (mean, covariance and weights), better with more
steps. The noise is a scrambled Sobol sequence pushed through the normal quantile, so what is
left at many steps is the integrator's error, not Monte-Carlo noise."""

import pytest
import torch

from zerotoml.diffusion.flow_matching import (FlowMatching, conditional_velocity, ot_coefficients, ot_path,
                                              ot_target)
from zerotoml.diffusion.mixture import GaussianMixture, velocity
from zerotoml.generic import forward, loss, method, sample
from zerotoml.shapes import Float, Tensor
from zerotoml.tree import struct

f64 = torch.float64
SIGMA_MIN = 1e-3


def mixture():
    return GaussianMixture(torch.tensor([0.3, 0.7], dtype=f64), torch.tensor([[-2.0, 0.5], [1.5, -1.0]], dtype=f64),
                           torch.tensor([[[0.5, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.6]]], dtype=f64))


def sobol_normal(n, d=2, seed=0):
    """n quasi-random N(0, I) points: a scrambled Sobol sequence through the normal quantile."""
    u = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=f64)
    return torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))


def exact_velocity(p, sigma_min=SIGMA_MIN):
    """The marginal velocity of the OT path towards p. At t = 0 the Tweedie form divides by α = t,
    so t is kept at 1e-7 or more (the velocity is continuous there: v_0(x) = E[x_1] − (1 − σ_min) x)."""
    def v(x, t):
        α, σ, dα, dσ = ot_coefficients(max(float(t[0]), 1e-7), sigma_min)
        return velocity(p, x, α, σ, dα, dσ)
    return v


def errors(p, x):
    """(‖mean − E[x]‖, ‖cov − Cov[x]‖_F, Σ_k |share_k − π_k|), share_k the fraction of samples whose
    most likely component is k."""
    comps = torch.distributions.MultivariateNormal(p.means, covariance_matrix=p.covs)
    k = (comps.log_prob(x[:, None, :]) + p.weights.log()).argmax(1)
    share = torch.bincount(k, minlength=len(p.weights)).to(f64) / len(x)
    return torch.tensor([(x.mean(0) - p.mean()).norm(), (torch.cov(x.T) - p.cov()).norm(),
                         (share - p.weights).abs().sum()])


def test_the_path_moves_at_the_conditional_velocity_and_ends_at_the_data():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, dtype=f64, generator=g), torch.randn(5, 3, dtype=f64, generator=g)
    t = torch.rand(5, dtype=f64, generator=g)
    t.requires_grad_()
    # d/dt ψ_t(x_0), by autograd, is u_t(ψ_t(x_0) | x_1) (eq. 21) and x_1 − (1 − σ_min) x_0 (eq. 23)
    dψ = torch.stack([torch.autograd.grad(ot_path(x0, x1, t, SIGMA_MIN)[:, j].sum(), t)[0] for j in range(3)], 1)
    t = t.detach()
    torch.testing.assert_close(dψ, ot_target(x0, x1, SIGMA_MIN), atol=1e-12, rtol=0)
    torch.testing.assert_close(conditional_velocity(ot_path(x0, x1, t, SIGMA_MIN), x1, t, SIGMA_MIN),
                               ot_target(x0, x1, SIGMA_MIN), atol=1e-12, rtol=0)
    torch.testing.assert_close(ot_path(x0, x1, torch.zeros(5, dtype=f64), SIGMA_MIN), x0)
    torch.testing.assert_close(ot_path(x0, x1, torch.ones(5, dtype=f64), SIGMA_MIN), x1 + SIGMA_MIN * x0)


def test_loss_is_eq_23_and_smallest_at_the_marginal_velocity():
    p, g = mixture(), torch.Generator().manual_seed(1)
    x1, x0 = p.sample(4000, generator=g), torch.randn(4000, 2, dtype=f64, generator=g)
    t = torch.rand(4000, dtype=f64, generator=g)
    v = lambda x, t: 0.5 * x  # noqa: E731
    ψ = (1 - (1 - SIGMA_MIN) * t[:, None]) * x0 + t[:, None] * x1
    by_hand = ((0.5 * ψ - (x1 - (1 - SIGMA_MIN) * x0)) ** 2).sum(1).mean()
    torch.testing.assert_close(loss(FlowMatching(v, SIGMA_MIN), x1, x0=x0, t=t), by_hand)

    # the CFM loss is the FM loss plus a constant at every t: the exact marginal velocity minimises it
    v = exact_velocity(p)
    for τ in (0.2, 0.6, 0.9):
        at = torch.full((4000,), τ, dtype=f64)
        best = loss(FlowMatching(v, SIGMA_MIN), x1, x0=x0, t=at)
        for worse in (lambda x, t: 1.1 * v(x, t), lambda x, t: v(x, t) + 0.1):
            assert best < loss(FlowMatching(worse, SIGMA_MIN), x1, x0=x0, t=at)


@pytest.mark.parametrize("method, few, many, bound", [
    # steps: few, many; bounds at many steps on (mean, covariance, weights) errors
    ("euler", 4, 64, (0.02, 0.15, 0.01)),
    ("midpoint", 2, 8, (0.01, 0.02, 0.005)),
    ("heun", 4, 16, (0.005, 0.015, 0.005)),
])
def test_samplers_fed_the_exact_velocity_reproduce_the_mixture(method, few, many, bound):
    p, x0 = mixture(), sobol_normal(2048)
    fm = FlowMatching(exact_velocity(p), SIGMA_MIN)
    e_few = errors(p, sample(fm, x0, steps=few, method=method))
    e_many = errors(p, sample(fm, x0, steps=many, method=method))
    assert (e_many[:2] < e_few[:2]).all() and e_many[2] <= e_few[2], (method, e_few, e_many)
    assert (e_many < torch.tensor(bound, dtype=f64)).all(), (method, e_many, bound)


@struct
class Affine:
    """v(x, t) = x W + b, a model with a forward(model, x, t) method."""

    W: Float[Tensor, "d d"]
    b: Float[Tensor, "d"]


@method
def forward(m: Affine, x: Float[Tensor, "n d"], t: Float[Tensor, "n"]) -> Float[Tensor, "n d"]:
    return x @ m.W + m.b


def test_a_model_and_a_plain_callable_give_the_same_flow():
    """dx/dt = x W + b from x_0 has x_1 = x_0 e^W + b W⁻¹ (e^W − I)."""
    m = Affine(torch.tensor([[0.5, 0.1], [0.0, -0.3]], dtype=f64), torch.tensor([0.2, 0.1], dtype=f64))
    x0 = sobol_normal(8)
    by_model = sample(FlowMatching(m), x0, steps=8, method="rk4")
    by_callable = sample(FlowMatching(lambda x, t: x @ m.W + m.b), x0, steps=8, method="rk4")
    torch.testing.assert_close(by_model, by_callable, atol=0, rtol=0)
    E = torch.linalg.matrix_exp(m.W)
    exact = x0 @ E + m.b @ torch.linalg.inv(m.W) @ (E - torch.eye(2, dtype=f64))
    torch.testing.assert_close(by_model, exact, atol=1e-5, rtol=0)


def test_bad_arguments_are_refused_by_name():
    fm, x = FlowMatching(lambda x, t: x), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="steps=0"):
        sample(fm, x, steps=0)
    with pytest.raises(ValueError, match="method='rk5'"):
        sample(fm, x, method="rk5")
    with pytest.raises(ValueError, match="t1=1.5"):
        sample(fm, x, t1=1.5)
    with pytest.raises(ValueError, match="`t`"):
        loss(fm, x, t=torch.tensor([0.1, 0.2, 1.2]))
    with pytest.raises(ValueError, match="`x0`"):
        loss(fm, x, x0=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="sigma_min=1"):
        FlowMatching(lambda x, t: x, sigma_min=1.0)


@pytest.mark.slow  # about 2-4 s: 400 training steps
def test_a_small_mlp_velocity_model_learns_a_mixture():
    """400 Adam steps of the CFM loss on 2-D mixture samples, then Heun in 20 steps: the samples
    are within an energy distance of 0.04 of held-out data (another draw of the data is at
    about 0.007, N(0, I) at about 0.6)."""
    from zerotoml import step, value_and_grad
    from zerotoml.diffusion import MLPDenoiser
    from zerotoml.metrics import energy_distance
    from zerotoml.optim import Adam

    g = torch.Generator().manual_seed(0)
    p = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.5], [1.5, -1.0]]),
                        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]]))
    fm = FlowMatching(MLPDenoiser.init(2, 64, 3, time_scale=100.0, generator=g), sigma_min=1e-4)
    opt = Adam.init(fm, lr=3e-3)
    for _ in range(400):
        _, grads = value_and_grad(loss, fm, p.sample(256, generator=g), generator=g)
        fm = step(opt, fm, grads)
    held_out = p.sample(1000, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1000, 2, generator=g)
    assert energy_distance(noise, held_out) > 0.4
    x = sample(fm, noise, steps=20, method="heun")
    assert energy_distance(x, held_out) < 0.04
