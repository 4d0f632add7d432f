"""zerotoml/diffusion/schedules.py: the discrete schedules equal diffusers', the posterior is
Bayes' rule, the SDE marginals solve their SDEs, and bad arguments fail by name."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from zerotoml.diffusion.schedules import (VESDE, VPSDE, NoiseSchedule, SubVPSDE, diffusion_coefficient, drift,
                                          marginal, marginal_derivatives, sub_sequence)

f64 = torch.float64


@pytest.mark.parametrize("kind, diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
@pytest.mark.parametrize("T", [1000, 50])
def test_alphas_cumprod_equal_diffusers(kind, diffusers_name, T):
    ours = getattr(NoiseSchedule, kind)(T, dtype=f64)
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=diffusers_name)  # float32 tables
    torch.testing.assert_close(ours.betas, theirs.betas.to(f64), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod.to(f64), rtol=2e-5, atol=1e-7)
    ours32 = getattr(NoiseSchedule, kind)(T, dtype=torch.float32)
    torch.testing.assert_close(ours32.alphas_cumprod, theirs.alphas_cumprod, rtol=2e-6, atol=1e-8)


def test_linear_is_ho_et_al_and_cosine_is_eq_17_before_the_clip():
    lin = NoiseSchedule.linear(dtype=f64)
    assert lin.T == 1000 and lin.betas[0] == 1e-4 and math.isclose(lin.betas[-1].item(), 0.02)
    cos = NoiseSchedule.cosine(1000, dtype=f64)
    t = torch.arange(1, 1001, dtype=f64)
    f = torch.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    clipped = cos.betas >= 0.999
    assert clipped.sum() == 1 and clipped[-1]  # only the last step is clipped
    torch.testing.assert_close(cos.alphas_cumprod[:-1], f[:-1], rtol=1e-10, atol=1e-14)


def test_posterior_is_bayes_rule():
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0): precisions add, means weigh."""
    s = NoiseSchedule.cosine(100, dtype=f64)
    ᾱ_prev, α, β = s.alphas_cumprod_prev, s.alphas, s.betas
    precision = 1 / (1 - ᾱ_prev[1:]) + α[1:] / β[1:]  # t = 2 .. T (t = 1 has a point mass prior)
    var = 1 / precision
    c0, ct = s.posterior_mean_coefs
    torch.testing.assert_close(s.posterior_variance[1:], var, rtol=1e-12, atol=0)
    torch.testing.assert_close(c0[1:], var * ᾱ_prev[1:].sqrt() / (1 - ᾱ_prev[1:]), rtol=1e-12, atol=0)
    torch.testing.assert_close(ct[1:], var * α[1:].sqrt() / β[1:], rtol=1e-12, atol=0)
    assert s.posterior_variance[0] == 0 and c0[0] == 1 and ct[0] == 0  # x_0 is known at t = 1
    torch.testing.assert_close(s.snr, s.alphas_cumprod / (1 - s.alphas_cumprod))


def test_marginal_of_the_schedule_and_index_minus_one_is_the_data():
    s = NoiseSchedule.linear(dtype=f64)
    α, σ = marginal(s, torch.tensor([-1, 0, 999]))
    torch.testing.assert_close(α**2, torch.cat([torch.ones(1, dtype=f64), s.alphas_cumprod[[0, 999]]]))
    torch.testing.assert_close(α**2 + σ**2, torch.ones(3, dtype=f64))


def test_from_alphas_cumprod_round_trips():
    s = NoiseSchedule.cosine(30, dtype=f64)
    torch.testing.assert_close(NoiseSchedule.from_alphas_cumprod(s.alphas_cumprod).betas, s.betas)


def test_sub_sequences():
    assert sub_sequence(1000, None) == list(range(1000))
    assert sub_sequence(1000, 10) == [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
    assert sub_sequence(7, 7) == list(range(7)) and sub_sequence(10, 3) == [2, 6, 9]
    assert sub_sequence(1000, torch.tensor([0, 500, 999])) == [0, 500, 999]


def test_bad_schedules_and_steps_fail_by_name():
    with pytest.raises(ValueError, match=r"betas\[1\] = 1.0.*\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match=r"betas\[0\] = -0.1"):
        NoiseSchedule(torch.tensor([-0.1]))
    with pytest.raises(ValueError, match=r"shape \(0,\).*T >= 1"):
        NoiseSchedule(torch.zeros(0))
    with pytest.raises(ValueError, match="linear: T=0; expected an integer number of steps T >= 1"):
        NoiseSchedule.linear(0)
    with pytest.raises(ValueError, match="beta_end=1.5"):
        NoiseSchedule.linear(10, 1e-4, 1.5)
    with pytest.raises(ValueError, match="strictly decreasing"):
        NoiseSchedule.from_alphas_cumprod(torch.tensor([0.9, 0.95, 0.5]))
    with pytest.raises(ValueError, match="must decrease strictly"):
        NoiseSchedule(torch.tensor([0.5, 1e-20], dtype=f64))  # 1 − 1e-20 == 1: ᾱ stands still
    with pytest.raises(ValueError, match=r"strictly increasing .* 0 .. T − 1 = 9"):
        sub_sequence(10, [0, 5, 5])
    with pytest.raises(ValueError, match="strictly increasing"):
        sub_sequence(10, [3, 10])
    with pytest.raises(ValueError, match="steps=11: expected a number of steps in 1 .. T=10"):
        sub_sequence(10, 11)
    with pytest.raises(ValueError, match=r"index \[1000\]; expected integers in -1 .. 999"):
        NoiseSchedule.linear().alpha_bar(torch.tensor([1000]))


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=lambda s: type(s).__name__)
def test_marginals_solve_the_sde(sde):
    """For dx = f(t) x dt + g(t) dw: the mean follows α' = f α and the variance (σ²)' = 2 f σ² + g²;
    marginal_derivatives are the derivatives of marginal (autograd)."""
    t = torch.linspace(0.02, 1.0, 25, dtype=f64).requires_grad_()
    α, σ = marginal(sde, t)
    dα_auto = torch.autograd.grad(α.sum(), t, retain_graph=True)[0] if α.requires_grad else torch.zeros_like(t)
    dσ_auto = torch.autograd.grad(σ.sum(), t)[0]
    dα, dσ = marginal_derivatives(sde, t.detach())
    torch.testing.assert_close(dα, dα_auto, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dσ, dσ_auto, rtol=1e-10, atol=1e-12)
    t = t.detach()
    f = drift(sde, torch.ones(25, 1, dtype=f64), t)[:, 0]  # the linear drift's coefficient f(t)
    g = diffusion_coefficient(sde, t)
    α, σ = marginal(sde, t)
    torch.testing.assert_close(dα, f * α, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(2 * σ * dσ, 2 * f * σ**2 + g**2, rtol=1e-10, atol=1e-10)
    α0, σ0 = marginal(sde, 0.0)
    assert α0 == 1 and σ0 == 0  # the data at t = 0


def test_vp_sde_is_the_limit_of_ddpm_linear_schedule():
    """β_min = 0.1, β_max = 20 at t = i/T is T β_i of Ho's schedule; the marginals agree."""
    ddpm, vp = NoiseSchedule.linear(dtype=f64), VPSDE()
    t = torch.arange(1, 1001, dtype=f64) / 1000
    torch.testing.assert_close(vp.beta(t) / 1000, ddpm.betas, rtol=0, atol=2e-5)
    α, _ = marginal(vp, t)
    torch.testing.assert_close(α**2, ddpm.alphas_cumprod, rtol=0, atol=2e-3)
    sub_α, sub_σ = marginal(SubVPSDE(), t)
    assert bool((sub_σ <= marginal(vp, t)[1]).all())  # sub-VP: the variance stays below VP's


def test_bad_times_fail_by_name():
    with pytest.raises(ValueError, match=r"marginal: t = 1.5; expected times in \[0, 1\]"):
        marginal(VPSDE(), 1.5)
    with pytest.raises(ValueError, match="expected times in"):
        drift(VESDE(), torch.zeros(2, 3), torch.tensor([0.5, -0.1]))
    with pytest.raises(TypeError, match=r"`?t`? .*int64"):  # the shape check's message, or ours with checks off
        diffusion_coefficient(SubVPSDE(), torch.tensor([1]))
