"""zerotoml/diffusion/ddim.py: one step and whole chains equal diffusers' DDIMScheduler (float64,
η = 0 and 1, sub-sequences); η = 1 is DDPM's sampler with β̃; fed the exact ε of a 2-D Gaussian
mixture, DDIM reproduces its mean, covariance and weights, better with more steps; inversion
x_0 → x_T → x_0 reconstructs the data.

η = 0 is a deterministic map of x_T, so it starts from quasi-random (scrambled Sobol) normals and
its bounds are tight; η = 1 draws fresh noise at every step and gets Monte-Carlo bounds (4096
samples: about 0.03 on the mean, 0.08 on the covariance, 0.01 on the weights)."""

import pytest
import torch
from diffusers import DDIMScheduler

from zerotoml.diffusion.ddim import DDIM, ddim_sigma, ddim_step, invert
from zerotoml.diffusion.ddpm import DDPM
from zerotoml.diffusion.mixture import GaussianMixture, noise
from zerotoml.diffusion.schedules import NoiseSchedule, marginal
from zerotoml.generic import sample

f64 = torch.float64
P = GaussianMixture(torch.tensor([0.25, 0.45, 0.3], dtype=f64), torch.tensor([[-2.0, 0.5], [1.5, 1.0], [0.5, -2.0]], dtype=f64),
                    torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]], [[0.25, -0.05], [-0.05, 0.15]]],
                                 dtype=f64))
LINEAR = NoiseSchedule.linear(1000, dtype=f64)


def ε_exact(x, t):
    """The noise a perfect denoiser predicts for P under LINEAR at step t."""
    α, σ = marginal(LINEAR, t[:1])
    return noise(P, x, α[0], σ[0])


def errors(x):
    """[‖mean − E x‖, ‖cov − Cov x‖_F, max_k |mean responsibility of k − π_k|] for samples x of P."""
    log_r = torch.distributions.MultivariateNormal(P.means, covariance_matrix=P.covs).log_prob(x[:, None, :])
    shares = torch.softmax(log_r + P.weights.log(), dim=1).mean(0)
    return [(x.mean(0) - P.mean()).norm().item(), (torch.cov(x.T) - P.cov()).norm().item(),
            (shares - P.weights).abs().max().item()]


def sobol_noise(n, seed):
    return torch.special.ndtri(torch.quasirandom.SobolEngine(2, scramble=True, seed=seed).draw(n, dtype=f64))


def diffusers_ddim(ours, kind, steps):
    sched = DDIMScheduler(num_train_timesteps=ours.T, beta_schedule=kind, clip_sample=False, set_alpha_to_one=True)
    sched.alphas_cumprod, sched.final_alpha_cumprod = ours.alphas_cumprod, torch.tensor(1.0, dtype=f64)
    sched.set_timesteps(steps)  # "leading": 0, T/steps, 2 T/steps, ...
    return sched


@pytest.mark.parametrize("kind, schedule", [("linear", LINEAR), ("squaredcos_cap_v2", NoiseSchedule.cosine(1000, dtype=f64))])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_one_step_equals_diffusers(kind, schedule, eta):
    theirs = diffusers_ddim(schedule, kind, 20)
    g = torch.Generator().manual_seed(0)
    x, ε, z = (torch.randn(3, 4, 6, 6, dtype=f64, generator=g) for _ in range(3))
    for t in (950, 500, 50, 0):
        want = theirs.step(ε, t, x, eta=eta, variance_noise=z).prev_sample
        torch.testing.assert_close(ddim_step(schedule, ε, t, x, prev=t - 50, eta=eta, noise=z) if t else
                                   ddim_step(schedule, ε, t, x, prev=-1, eta=eta, noise=z), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_whole_chain_equals_diffusers_loop(eta):
    theirs = diffusers_ddim(LINEAR, "linear", 25)
    x_T = torch.randn(64, 2, dtype=f64, generator=torch.Generator().manual_seed(1))
    x, g = x_T, torch.Generator().manual_seed(2)
    for t in theirs.timesteps:
        x = theirs.step(ε_exact(x, t.expand(len(x))), t, x, eta=eta, generator=g).prev_sample
    got = sample(DDIM(ε_exact, LINEAR), x_T, steps=theirs.timesteps.flip(0), eta=eta,
                 generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, x, rtol=1e-10, atol=1e-10)


def test_eta_1_is_ddpm_with_beta_tilde_on_the_same_steps():
    """σ_t(1)² = (1 − ᾱ_prev) / (1 − ᾱ_t) (1 − ᾱ_t / ᾱ_prev): eq. 16 at η = 1 is β̃ (Ho eq. 7)."""
    torch.testing.assert_close(torch.stack([ddim_sigma(LINEAR, t, t - 1, 1.0) ** 2 for t in (1, 10, 999)]),
                               LINEAR.posterior_variance[[1, 10, 999]], rtol=1e-12, atol=0)
    x_T = torch.randn(500, 2, dtype=f64, generator=torch.Generator().manual_seed(3))
    steps = [0, 3, 10, 50, 200, 640, 999]  # any increasing sub-sequence
    a = sample(DDIM(ε_exact, LINEAR), x_T, steps=steps, eta=1.0, generator=torch.Generator().manual_seed(4))
    b = sample(DDPM(ε_exact, LINEAR), x_T, steps=steps, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_eta_0_with_the_exact_noise_reproduces_the_mixture():
    ddim = DDIM(ε_exact, LINEAR)
    x_T = sobol_noise(4096, seed=5)
    few, many = errors(sample(ddim, x_T, steps=10)), errors(sample(ddim, x_T, steps=100))
    assert few[1] > 0.3 and sum(many) < sum(few) / 5, (few, many)
    assert many[0] < 0.005 and many[1] < 0.08 and many[2] < 0.005, many
    assert torch.equal(sample(ddim, x_T[:5], steps=10), sample(ddim, x_T[:5], steps=10))  # deterministic


def test_eta_1_with_the_exact_noise_reproduces_the_mixture():
    ddim = DDIM(ε_exact, LINEAR)
    x_T = sobol_noise(4096, seed=6)
    few, many = (errors(sample(ddim, x_T, steps=n, eta=1.0, generator=torch.Generator().manual_seed(7)))
                 for n in (10, 100))
    assert few[1] > 0.3 and sum(many) < sum(few) / 3, (few, many)
    assert many[0] < 0.06 and many[1] < 0.16 and many[2] < 0.02, many


X0 = P.sample(400, generator=torch.Generator().manual_seed(8))


def round_trip(steps, iterations=0):
    """(x_T, the reconstruction's error): x_0 → x_T by `invert`, back by the η = 0 sampler."""
    ddim = DDIM(ε_exact, LINEAR)
    x_T = invert(ddim, X0, steps=steps, iterations=iterations)
    return x_T, sample(ddim, x_T, steps=steps) - X0


def test_inversion_reconstructs_the_data():
    """The paper's encoder (ε_θ at the step it lands on) at 100 steps: mean squared error below
    1e-3 (DDIM's Table 2 reports 9e-4 on CIFAR-10 at 100 steps), a tenth of that at 10 steps;
    the codes look like N(0, I)."""
    _, e10 = round_trip(10)
    x_T, e100 = round_trip(100)
    assert e100.pow(2).mean() < 1e-3 and e100.pow(2).mean() < e10.pow(2).mean() / 10
    torch.testing.assert_close(x_T.mean(0), torch.zeros(2, dtype=f64), atol=0.15, rtol=0)
    torch.testing.assert_close(x_T.std(0), torch.ones(2, dtype=f64), atol=0.1, rtol=0)


@pytest.mark.slow  # about 1-2 s: 900 evaluations of the exact ε
def test_fixed_point_inversion_reconstructs_every_point():
    """A point between two modes may come back up to 0.5 off with the paper's encoder: the sampler
    stretches what lies near the boundary of two basins. Eight fixed-point iterations per step
    (each contracts about tenfold) bring every coordinate within 1e-3; three leave a few at 1e-2."""
    _, e = round_trip(100, iterations=8)
    assert e.abs().max() < 1e-3


def test_bad_arguments_fail_by_name():
    x = torch.zeros(2, 2, dtype=f64)
    with pytest.raises(ValueError, match=r"eta=1.5; expected η in \[0, 1\]"):
        sample(DDIM(ε_exact, LINEAR), x, eta=1.5)
    with pytest.raises(ValueError, match="prev=7 for t=3"):
        ddim_step(LINEAR, x, 3, x, prev=7)
    with pytest.raises(ValueError, match=r"steps=\[5, 1\].*strictly increasing"):
        sample(DDIM(ε_exact, LINEAR), x, steps=[5, 1])
    with pytest.raises(ValueError, match="0 .. T − 1 = 999"):
        invert(DDIM(ε_exact, LINEAR), x, steps=[0, 1000])
    with pytest.raises(ValueError, match="iterations=-1"):
        invert(DDIM(ε_exact, LINEAR), x, iterations=-1)
