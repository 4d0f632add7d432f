"""zerotoml/diffusion/score_sde.py against closed forms, without training: fed the exact score of a
2-D Gaussian mixture under the VP and VE SDEs (and sub-VP), the reverse SDE by Euler–Maruyama,
predictor–corrector sampling and the probability-flow ODE reproduce the mixture's mean,
covariance and weights, better with more steps; the probability-flow log-likelihood of a Gaussian
is its closed form (exact divergence, and Hutchinson's estimate within its error); the loss is
eq. 7 and is smallest at the exact score. The SDE samplers' errors at many steps are mostly
Monte-Carlo error (3000 samples: about 0.04 on the mean, 0.1 on the covariance, 0.02 on the
weights), so their bounds are three of those; the ODE starts from quasi-random noise and gets
tight bounds."""

import pytest
import torch

from zerotoml.diffusion.mixture import GaussianMixture
from zerotoml.diffusion.schedules import VESDE, VPSDE, NoiseSchedule, SubVPSDE, marginal
from zerotoml.diffusion.score_sde import (ScoreSDE, euler_maruyama, log_likelihood, predictor_corrector, prior_log_prob,
                                          prior_sample, probability_flow)
from zerotoml.generic import forward, loss, method, sample
from zerotoml.shapes import Float, Tensor
from zerotoml.tree import struct

f64 = torch.float64
SDES = {"VP": VPSDE(), "VE": VESDE(sigma_min=0.01, sigma_max=20.0), "subVP": SubVPSDE()}


def mixture():
    return GaussianMixture(torch.tensor([0.3, 0.7], dtype=f64), torch.tensor([[-2.0, 0.5], [1.5, -1.0]], dtype=f64),
                           torch.tensor([[[0.5, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.6]]], dtype=f64))


def exact_score(p, sde):
    """∇ log p_t of the data p diffused by the SDE: p moved by the SDE's (α_t, σ_t)."""
    def score(x, t):
        α, σ = marginal(sde, t[:1])
        return p.moved(α[0], σ[0]).score(x)
    return score


def errors(p, x):
    """(‖mean − E[x]‖, ‖cov − Cov[x]‖_F, Σ_k |share_k − π_k|) of samples x against p."""
    comps = torch.distributions.MultivariateNormal(p.means, covariance_matrix=p.covs)
    k = (comps.log_prob(x[:, None, :]) + p.weights.log()).argmax(1)
    share = torch.bincount(k, minlength=len(p.weights)).to(f64) / len(x)
    return torch.tensor([(x.mean(0) - p.mean()).norm(), (torch.cov(x.T) - p.cov()).norm(),
                         (share - p.weights).abs().sum()])


def sobol_normal(n, d=2, seed=0):
    u = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=f64)
    return torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))


def check(p, run, few, many, bound):
    e_few, e_many = errors(p, run(few)), errors(p, run(many))
    assert e_many.sum() < 0.5 * e_few.sum(), (e_few, e_many)
    assert (e_many < torch.tensor(bound, dtype=f64)).all(), (e_many, bound)


MC_BOUND = (0.12, 0.3, 0.06)  # three Monte-Carlo standard errors of 3000 samples


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_reverse_sde_by_euler_maruyama_fed_the_exact_score_reproduces_the_mixture(name):
    p, sde = mixture(), SDES[name]

    def run(steps):
        g = torch.Generator().manual_seed(0)
        return euler_maruyama(exact_score(p, sde), sde, prior_sample(sde, (3000, 2), generator=g, dtype=f64),
                              steps=steps, generator=g)
    check(p, run, 8, 150, MC_BOUND)


@pytest.mark.parametrize("name, predictor", [("VP", "reverse_diffusion"), ("VE", "reverse_diffusion"),
                                             ("VE", "euler_maruyama")])
def test_predictor_corrector_fed_the_exact_score_reproduces_the_mixture(name, predictor):
    p, sde = mixture(), SDES[name]

    def run(steps):
        g = torch.Generator().manual_seed(1)
        return predictor_corrector(exact_score(p, sde), sde, prior_sample(sde, (3000, 2), generator=g, dtype=f64),
                                   steps=steps, predictor=predictor, corrector_steps=1, snr=0.16, generator=g)
    check(p, run, 5, 80, MC_BOUND)


def exact_start(p, sde, n):
    """Quasi-random draws from the Gaussian with p_1's mean and covariance (p_1 is Gaussian to
    within 1e-3 here): the test measures the integrator, not the prior (see the VE prior test)."""
    α, σ = marginal(sde, torch.tensor(1.0, dtype=f64))
    q = p.moved(α, σ)
    return q.mean() + sobol_normal(n) @ torch.linalg.cholesky(q.cov()).T


@pytest.mark.parametrize("name", ["VP", "VE", "subVP"])
def test_probability_flow_fed_the_exact_score_reproduces_the_mixture(name):
    p, sde = mixture(), SDES[name]
    x1 = exact_start(p, sde, 2048)
    run = lambda steps: probability_flow(exact_score(p, sde), sde, x1, steps=steps, method="heun")  # noqa: E731
    check(p, run, 5, 50, (0.005, 0.03, 0.005))


def test_the_ve_prior_must_be_wider_than_the_data():
    """Started from the paper's prior N(0, σ_max² I), not from p_1, the flow misses the data's mean
    by an error that shrinks about as 1/σ_max (measured: 0.22 at σ_max = 4, 0.056 at 20, against
    0.002 from p_1 itself)."""
    p = mixture()
    errs = {}
    for σ_max in (4.0, 20.0):
        sde = VESDE(sigma_min=0.01, sigma_max=σ_max)
        x1 = sobol_normal(2048) * σ_max
        errs[σ_max] = errors(p, probability_flow(exact_score(p, sde), sde, x1, steps=50, method="heun"))
    assert errs[20.0][0] < 0.08 and errs[4.0][0] > 3 * errs[20.0][0], errs


def test_the_prior_is_the_sde_at_t_1():
    g = torch.Generator().manual_seed(2)
    for sde, std in ((VPSDE(), 1.0), (SubVPSDE(), 1.0), (VESDE(sigma_max=20.0), 20.0)):
        x = prior_sample(sde, (20000, 2), generator=g, dtype=f64)
        assert x.std().item() == pytest.approx(std, rel=0.02)
        want = torch.distributions.Normal(0.0, float(marginal(sde, torch.tensor(1.0, dtype=f64))[1])).log_prob(x).sum(1)
        torch.testing.assert_close(prior_log_prob(sde, x), want)


def gaussian():
    return GaussianMixture(torch.tensor([1.0], dtype=f64), torch.tensor([[0.8, -0.5]], dtype=f64),
                           torch.tensor([[[0.6, 0.25], [0.25, 0.4]]], dtype=f64))


@pytest.mark.parametrize("name, bound, paper_bound", [("VP", 5e-5, 0.03), ("VE", 5e-4, 0.2)])
def test_log_likelihood_of_a_gaussian_is_its_closed_form(name, bound, paper_bound):
    """With the exact score and the exact p_1 as the prior, only the ODE solver's error is left:
    RK4 at 40 steps is below ``bound`` nats (measured 8e-6 VP, 2.4e-4 VE) and 8 times below its
    error at 20. With the paper's prior N(0, σ_T² I) instead, the error is the prior's: measured
    0.014 nats VP, 0.10 VE (its σ_max = 20 is only 30 times the data's scale)."""
    p, sde, eps = gaussian(), SDES[name], 1e-3
    x = p.sample(16, generator=torch.Generator().manual_seed(3))
    α, σ = marginal(sde, torch.tensor(eps, dtype=f64))
    want = p.moved(α, σ).log_prob(x)  # the law at t = eps
    α1, σ1 = marginal(sde, torch.tensor(1.0, dtype=f64))
    err = {n: (log_likelihood(exact_score(p, sde), sde, x, steps=n, eps=eps, prior=p.moved(α1, σ1).log_prob)
               - want).abs().max() for n in (20, 40)}
    assert err[40] < bound and err[40] < err[20] / 8, err
    paper_prior = log_likelihood(exact_score(p, sde), sde, x, steps=40, eps=eps)
    assert (paper_prior - want).abs().max() < paper_bound


def test_hutchinson_log_likelihood_is_the_exact_one_within_its_error():
    """Hutchinson's divergence with 4 Rademacher probes per point, drawn once per solve: unbiased,
    so over 256 points the mean log-likelihood is within 0.05 nats of the exact divergence's
    (measured 0.019); per point it is off by at most 2 |∫ ∂f̃_1/∂x_2 dt| = 0.56 here (in 2-D a
    Rademacher probe misses only the off-diagonal terms)."""
    p, sde = gaussian(), SDES["VP"]
    x = p.sample(256, generator=torch.Generator().manual_seed(4))
    s = exact_score(p, sde)
    exact = log_likelihood(s, sde, x, steps=10)
    hutch = log_likelihood(s, sde, x, steps=10, divergence="hutchinson", probes=4,
                           generator=torch.Generator().manual_seed(5))
    assert (hutch - exact).mean().abs() < 0.05
    assert (hutch - exact).abs().max() < 0.6


def test_loss_is_eq_7_and_smallest_at_the_exact_score():
    p, sde = mixture(), SDES["VP"]
    x0 = p.sample(2000, generator=torch.Generator().manual_seed(6))
    t = torch.full((2000,), 0.3, dtype=f64)
    v = lambda x, t: -x  # noqa: E731
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7), dtype=f64)
    α, σ = marginal(sde, t)
    xt = α[:, None] * x0 + σ[:, None] * z
    by_hand = (σ**2 * ((v(xt, t) + z / σ[:, None]) ** 2).sum(1)).mean()
    torch.testing.assert_close(loss(ScoreSDE(v, sde), x0, t=t, generator=torch.Generator().manual_seed(7)), by_hand)
    # with λ(t) = σ_t² the loss is E‖σ_t s + z‖²; the exact score minimises it at every t
    s = exact_score(p, sde)
    for τ in (0.05, 0.3, 0.8):
        at = torch.full((2000,), τ, dtype=f64)
        best = loss(ScoreSDE(s, sde), x0, t=at, generator=torch.Generator().manual_seed(8))
        σ_t = float(marginal(sde, torch.tensor(τ, dtype=f64))[1])
        for worse in (lambda x, t: 1.2 * s(x, t), lambda x, t: s(x, t) + 0.3 / σ_t):
            assert best < loss(ScoreSDE(worse, sde), x0, t=at, generator=torch.Generator().manual_seed(8))


@struct
class Linear2:
    """s(x, t) = −x A: a score model with a forward(model, x, t) method."""

    A: Float[Tensor, "d d"]


@method
def forward(m: Linear2, x: Float[Tensor, "b d"], t: Float[Tensor, "b"]) -> Float[Tensor, "b d"]:
    return -x @ m.A


@pytest.mark.parametrize("sampler", ["pc", "euler_maruyama", "ode"])
def test_a_model_and_a_plain_callable_give_the_same_samples(sampler):
    sde, m = SDES["VP"], Linear2(torch.tensor([[1.0, 0.2], [0.2, 0.8]], dtype=f64))
    x1 = sobol_normal(16)
    options = {} if sampler == "ode" else {"generator": torch.Generator().manual_seed(9)}
    a = sample(ScoreSDE(m, sde), x1, sampler=sampler, steps=10, **options)
    options = {} if sampler == "ode" else {"generator": torch.Generator().manual_seed(9)}
    b = sample(ScoreSDE(lambda x, t: -x @ m.A, sde), x1, sampler=sampler, steps=10, **options)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_bad_arguments_are_refused_by_name():
    sde, s, x = SDES["VP"], (lambda x, t: -x), torch.zeros(4, 2)
    with pytest.raises(TypeError, match="`sde`.*NoiseSchedule"):
        ScoreSDE(s, NoiseSchedule.linear(10))
    with pytest.raises(TypeError, match="`sde`"):
        euler_maruyama(s, "vp", x)
    with pytest.raises(ValueError, match="steps=0"):
        euler_maruyama(s, sde, x, steps=0)
    with pytest.raises(ValueError, match="eps=0"):
        probability_flow(s, sde, x, eps=0.0)
    with pytest.raises(ValueError, match="`t`"):
        loss(ScoreSDE(s, sde), x, t=torch.tensor([0.5, 0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="snr"):
        predictor_corrector(s, sde, x, snr=0.0)
    with pytest.raises(ValueError, match="predictor='ancestral'"):
        predictor_corrector(s, sde, x, predictor="ancestral")
    with pytest.raises(ValueError, match="sampler='ddim'"):
        sample(ScoreSDE(s, sde), x, sampler="ddim")
    with pytest.raises(ValueError, match="divergence='trace'"):
        log_likelihood(s, sde, x, divergence="trace")


@pytest.mark.slow  # about 3-5 s: 600 training steps
def test_a_small_mlp_score_model_learns_a_mixture():
    """600 Adam steps of denoising score matching (eq. 7, λ = σ²) under the VP SDE on 2-D
    mixture samples, then the probability-flow ODE in 50 steps: the samples are within an
    energy distance of 0.05 of held-out data (another draw of the data is at about 0.007,
    N(0, I) at about 0.6)."""
    from zerotoml import step, value_and_grad
    from zerotoml.diffusion import MLPDenoiser
    from zerotoml.metrics import energy_distance
    from zerotoml.optim import Adam

    g = torch.Generator().manual_seed(0)
    p = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.5], [1.5, -1.0]]),
                        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]]))
    s = ScoreSDE(MLPDenoiser.init(2, 64, 3, time_scale=100.0, generator=g), VPSDE())
    opt = Adam.init(s, lr=3e-3)
    for _ in range(600):
        _, grads = value_and_grad(loss, s, p.sample(256, generator=g), generator=g)
        s = step(opt, s, grads)
    held_out = p.sample(1000, generator=torch.Generator().manual_seed(1))
    x = sample(s, prior_sample(s.sde, (1000, 2), generator=g), sampler="ode", steps=50)
    assert energy_distance(x, held_out) < 0.05


def test_an_unknown_sampler_is_refused_by_name():
    s = ScoreSDE(lambda x, t: -x, VPSDE())
    with pytest.raises(ValueError, match="sampler='heun'; expected one of pc, euler_maruyama, ode"):
        sample(s, torch.zeros(2, 2), sampler="heun")
