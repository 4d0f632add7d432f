"""zerotoml/diffusion/mixture.py: the closed forms the samplers are tested against are right:
the score equals autograd's gradient of log p, the moved mixture is the law of α x_0 + σ z,
and the velocity is the derivative of the path in expectation."""

import torch

from zerotoml.diffusion.mixture import GaussianMixture, noise, velocity

f64 = torch.float64


def _mixture():
    return GaussianMixture(torch.tensor([0.3, 0.7], dtype=f64), torch.tensor([[-2.0, 0.5], [1.5, -1.0]], dtype=f64),
                           torch.tensor([[[0.5, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.6]]], dtype=f64))


def test_score_is_the_gradient_of_log_prob():
    p = _mixture().moved(0.8, 0.6)
    x = torch.randn(7, 2, dtype=f64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    (auto,) = torch.autograd.grad(p.log_prob(x).sum(), x)
    torch.testing.assert_close(p.score(x.detach()), auto, atol=1e-12, rtol=1e-12)


def test_samples_have_the_closed_form_mean_and_covariance():
    p = _mixture()
    x = p.sample(200_000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(0), p.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), p.cov(), atol=0.02, rtol=0)


def test_moved_is_the_law_of_the_noised_data():
    p, (α, σ) = _mixture(), (0.6, 0.8)
    g = torch.Generator().manual_seed(2)
    x = α * p.sample(200_000, generator=g) + σ * torch.randn(200_000, 2, dtype=f64, generator=g)
    q = p.moved(α, σ)
    torch.testing.assert_close(x.mean(0), q.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), q.cov(), atol=0.02, rtol=0)


def test_noise_and_velocity_are_conditional_expectations():
    """E[z | x_t] and E[α' x_0 + σ' z | x_t] estimated by binning samples near one point."""
    p, (α, σ, dα, dσ) = _mixture(), (0.7, 0.714, -1.0, 0.98)
    g = torch.Generator().manual_seed(3)
    x0 = p.sample(2_000_000, generator=g)
    z = torch.randn(x0.shape, dtype=f64, generator=g)
    xt = α * x0 + σ * z
    at = torch.tensor([[0.3, -0.2]], dtype=f64)
    near = (xt - at).norm(dim=1) < 0.05
    torch.testing.assert_close(noise(p, at, α, σ)[0], z[near].mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(velocity(p, at, α, σ, dα, dσ)[0], (dα * x0 + dσ * z)[near].mean(0), atol=0.08, rtol=0)
