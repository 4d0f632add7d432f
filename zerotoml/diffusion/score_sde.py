"""Score-based generative modelling through SDEs (Song, Sohl-Dickstein, Kingma, Kumar, Ermon,
Poole 2021, ICLR, arXiv:2011.13456). Note: notes/score_sde.md.

Data x(0) is diffused by dx = f(x, t) dt + g(t) dw up to t = T = 1 (the VP, sub-VP and VE SDEs of
zerotoml/diffusion/schedules.py); a score model s_θ(x, t) ≈ ∇_x log p_t(x) then runs it back: the
reverse-time SDE by Euler–Maruyama, predictor–corrector sampling, or the probability-flow ODE,
which also gives exact log-likelihoods. Time runs as diffusion's: data at t = 0, noise at t = 1,
so the samplers integrate backwards, from t = 1 to a small ``eps`` > 0 where the score is finite.
Every function takes the score as a model or a plain callable s(x, t), t of shape (batch,).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..generic import loss, method, sample
from ..shapes import Float
from ..tree import struct
from .common import as_function
from .flow_matching import squared_norm
from .ode import METHODS, _along, _at, check_steps, euler_maruyama_step, grid, solve
from .schedules import VESDE, VPSDE, diffusion_coefficient, drift, marginal

__all__ = ["ScoreSDE", "prior_sample", "prior_log_prob", "reverse_drift", "probability_flow_drift",
           "euler_maruyama", "predictor_corrector", "probability_flow", "log_likelihood"]

SAMPLERS = ("pc", "euler_maruyama", "ode")
PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def check_sde(sde: object, who: str) -> object:
    """A continuous-time SDE of schedules.py, or a TypeError naming the argument."""
    if not isinstance(sde, (VPSDE, VESDE)):
        raise TypeError(f"{who}: argument `sde` is a {type(sde).__name__}; expected a VPSDE, SubVPSDE or VESDE "
                        f"(zerotoml.diffusion.schedules; a NoiseSchedule is for DDPM and DDIM)")
    return sde


@struct
class ScoreSDE:
    """A score model ``s_θ(x, t)`` (a zerotoml model or a callable) and the SDE it reverses."""

    model: Any
    sde: Any

    def __post_init__(self):
        check_sde(self.sde, "ScoreSDE")


def _prior_scale(sde: object) -> float:
    """σ_T of the prior N(0, σ_T² I): 1 for VP and sub-VP, about σ_max for VE."""
    return float(marginal(sde, torch.tensor(1.0, dtype=torch.float64))[1])


def prior_sample(sde: object, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None, device: Any = None) -> Tensor:
    """x(T) ~ p_T = N(0, σ_T² I), the law the SDE forgets its data into (σ_T from `marginal` at 1)."""
    check_sde(sde, "prior_sample")
    return _prior_scale(sde) * torch.randn(shape, generator=generator, dtype=dtype, device=device)


def prior_log_prob(sde: object, x: Float[Tensor, "b *dims"]) -> Float[Tensor, "b"]:
    """log N(x; 0, σ_T² I) of every example."""
    check_sde(sde, "prior_log_prob")
    σ, D = _prior_scale(sde), x[0].numel()
    return -0.5 * squared_norm(x) / σ**2 - D * math.log(σ) - 0.5 * D * math.log(2 * math.pi)


@method
def loss(s: ScoreSDE, x0: Float[Tensor, "b *dims"], *, t: Tensor | None = None, weighting: Callable | None = None,
         eps: float = 1e-5, generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """Denoising score matching on a batch of data x(0): t ~ U[eps, 1] unless given, x(t) = α_t x(0)
    + σ_t z. ``weighting`` is λ(t) (a callable of t); by default λ(t) = σ_t², the paper's
    λ ∝ 1/E‖∇ log p_0t‖², which turns the loss into E‖σ_t s_θ + z‖²."""
    _check_eps(eps, "loss(ScoreSDE)")
    if t is None:
        t = eps + (1 - eps) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device)
    t = _at(torch.as_tensor(t, device=x0.device), x0)
    if bool(((t <= 0) | (t > 1)).any()):
        raise ValueError(f"loss(ScoreSDE): argument `t` has times in [{float(t.min())}, {float(t.max())}]; "
                         f"expected times in (0, 1]")
    α, σ = marginal(s.sde, t)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    xt = _along(α, x0) * x0 + _along(σ, x0) * z
    λ = σ**2 if weighting is None else weighting(t)
    # ∇ log p_0t(x(t) | x(0)) = −(x(t) − α_t x(0)) / σ_t² = −z / σ_t
    target = -z / _along(σ, x0)
    # (eq. 7)  θ* = argmin_θ E_t {λ(t) E_x(0) E_x(t)|x(0) [‖s_θ(x(t), t) − ∇ log p_0t(x(t) | x(0))‖²]}
    return (λ * squared_norm(as_function(s.model)(xt, t) - target)).mean()


def reverse_drift(score: Callable, sde: object, x: Tensor, t: Tensor) -> Tensor:
    """The drift of the reverse-time SDE at (x, t)."""
    g = _along(diffusion_coefficient(sde, t), x)
    # (eq. 6)  dx = [f(x, t) − g(t)² ∇_x log p_t(x)] dt + g(t) dw̄
    return drift(sde, x, t) - g**2 * score(x, t)


def probability_flow_drift(score: Callable, sde: object, x: Tensor, t: Tensor) -> Tensor:
    """The velocity of the probability-flow ODE at (x, t): the same marginals as the SDE."""
    g = _along(diffusion_coefficient(sde, t), x)
    # (eq. 13)  dx = [f(x, t) − ½ g(t)² ∇_x log p_t(x)] dt
    return drift(sde, x, t) - 0.5 * g**2 * score(x, t)


def _check_eps(eps: float, who: str) -> float:
    """The smallest time, where the score is still finite: in (0, 1)."""
    if not 0 < float(eps) < 1:
        raise ValueError(f"{who}: eps={eps}; expected the smallest time in (0, 1)")
    return float(eps)


def _grid_back(sde: object, steps: int, eps: float, x: Tensor, who: str) -> Tensor:
    check_sde(sde, who)
    check_steps(steps, who)
    return grid(1.0, _check_eps(eps, who), steps, x)  # t_N = 1 > ... > t_0 = eps


def euler_maruyama(score: object, sde: object, x: Float[Tensor, "b *dims"], *, steps: int = 1000, eps: float = 1e-3,
                   denoise: bool = True, generator: torch.Generator | None = None) -> Float[Tensor, "b *dims"]:
    """x(eps) from x(1) = x: eq. 6 by Euler–Maruyama, x_{i} = x_{i+1} − [f − g² s] Δt + g √Δt z
    (Δt > 0). With ``denoise`` the last step adds no noise (the sample is its mean)."""
    ts, s = _grid_back(sde, steps, eps, x, "euler_maruyama"), as_function(score)
    with torch.no_grad():
        for n in range(steps):
            x = _reverse_euler_maruyama(s, sde, x, ts[n], ts[n + 1], not (denoise and n == steps - 1), generator)
    return x


def _reverse_euler_maruyama(s: Callable, sde: object, x: Tensor, t: Tensor, t_prev: Tensor, noise: bool,
                            generator: torch.Generator | None) -> Tensor:
    """One Euler–Maruyama step of eq. 6 from t to t_prev < t (a negative step)."""
    return euler_maruyama_step(lambda y, u: reverse_drift(s, sde, y, u), lambda u: diffusion_coefficient(sde, u),
                               x, t, t_prev - t, generator=generator, noise=noise)


def _reverse_diffusion(s: Callable, sde: object, x: Tensor, t: Tensor, t_prev: Tensor, noise: bool,
                       generator: torch.Generator | None) -> Tensor:
    """One reverse-diffusion step from t to t_prev < t (appendix E). The forward step from t_prev to
    t of every SDE here is exactly x_t = a x_prev + G z with a = α_t / α_prev, G² = σ_t² − a² σ_prev²
    (for VE: a = 1, G² = σ²(t) − σ²(t_prev), Algorithm 2; for VP: a = √(1 − β), G² = β, Algorithm 3)."""
    (α, σ), (α_prev, σ_prev) = marginal(sde, _at(t, x)), marginal(sde, _at(t_prev, x))
    a = α / α_prev
    G2 = (σ**2 - a**2 * σ_prev**2).clamp(min=0)
    # (App. E)  x_i = x_{i+1} − f_{i+1}(x_{i+1}) + G_{i+1} G_{i+1}ᵀ s_θ(x_{i+1}, i + 1) + G_{i+1} z
    #           with f_{i+1}(x) = (a − 1) x
    x = (2 - _along(a, x)) * x + _along(G2, x) * s(x, _at(t, x))
    if not noise:
        return x
    return x + _along(G2.sqrt(), x) * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _langevin(s: Callable, x: Tensor, t: Tensor, α_i: Tensor, snr: float, generator: torch.Generator | None) -> Tensor:
    """One corrector step at time t: Langevin MCMC with the step size set by the signal-to-noise r.
    The norms are averaged over the batch, one ε for all (as the authors' code does): per example,
    ε blows up wherever the score nearly vanishes, which in low dimension is near every mode."""
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    grad = s(x, _at(t, x))
    # (Algorithm 4-5)  ε = 2 α_i (r ‖z‖₂ / ‖s_θ(x, t)‖₂)²   (α_i = 1 for VE; 1 − β_i for VP)
    ε = 2 * α_i * (snr * squared_norm(z).sqrt().mean() / squared_norm(grad).sqrt().mean()) ** 2
    # (Algorithm 4-5)  x ← x + ε s_θ(x, t) + √(2ε) z
    return x + _along(ε, x) * grad + _along((2 * ε).sqrt(), x) * z


def predictor_corrector(score: object, sde: object, x: Float[Tensor, "b *dims"], *, steps: int = 1000,
                        predictor: str = "reverse_diffusion", corrector_steps: int = 1, snr: float = 0.16,
                        eps: float = 1e-3, denoise: bool = True, generator: torch.Generator | None = None
                        ) -> Float[Tensor, "b *dims"]:
    """x(eps) from x(1) = x by predictor–corrector sampling (Algorithm 1): at every step a predictor
    (``reverse_diffusion`` or ``euler_maruyama``) from t_{i+1} to t_i, then ``corrector_steps``
    Langevin steps at t_i with signal-to-noise ratio ``snr`` (r; the paper's 0.16 for VE on
    CIFAR-10). With the reverse-diffusion predictor this is Algorithm 2 for a VESDE and Algorithm 3
    for a VPSDE. ``denoise``: no noise in the last predictor step."""
    ts, s = _grid_back(sde, steps, eps, x, "predictor_corrector"), as_function(score)
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor_corrector: predictor={predictor!r}; expected one of {', '.join(PREDICTORS)}")
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"predictor_corrector: corrector_steps={corrector_steps!r}; expected an integer >= 0")
    if not snr > 0:
        raise ValueError(f"predictor_corrector: snr={snr}; expected a signal-to-noise ratio r > 0")
    with torch.no_grad():
        for n in range(steps):
            t, t_prev, last = ts[n], ts[n + 1], n == steps - 1
            # (Algorithm 1)  x_i ← Predictor(x_{i+1});  for j = 1 .. M: x_i ← Corrector(x_i)
            step = _reverse_diffusion if predictor == "reverse_diffusion" else _reverse_euler_maruyama
            x = step(s, sde, x, t, t_prev, not (denoise and last), generator)
            # α_i = (α_{t_{i+1}} / α_{t_i})²: 1 for VE, e^{−∫β} ≈ 1 − β_i for VP
            α_i = (marginal(sde, _at(t, x))[0] / marginal(sde, _at(t_prev, x))[0]) ** 2
            for _ in range(corrector_steps):
                x = _langevin(s, x, t_prev, α_i, snr, generator)
    return x


def probability_flow(score: object, sde: object, x: Float[Tensor, "b *dims"], *, steps: int = 100,
                     method: str = "rk4", eps: float = 1e-3) -> Float[Tensor, "b *dims"]:
    """x(eps) from x(1) = x: the probability-flow ODE (eq. 13) solved backwards in ``steps`` steps of
    ``method`` (euler, midpoint, heun or rk4). Deterministic: the same x(1) gives the same sample."""
    _grid_back(sde, steps, eps, x, "probability_flow")
    s = as_function(score)
    with torch.no_grad():
        return solve(lambda y, t: probability_flow_drift(s, sde, y, t), x, 1.0, eps, steps=steps, method=method)


def _divergence(f: Callable, x: Tensor, t: Tensor, probes: Tensor | None) -> tuple[Tensor, Tensor]:
    """(f(x, t), ∇·f(x, t)) of every example: the trace of the Jacobian, exactly (one backward pass
    per dimension: low dimension only) or by Hutchinson's estimator E_ε[εᵀ (∂f/∂x) ε] with the
    given probes ε of shape (k, b, *dims)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        y = f(x, t)
        if probes is None:
            # ∇·f = Σ_j ∂f_j/∂x_j
            flat = y.flatten(1)
            div = sum(torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True)[0].flatten(1)[:, j]
                      for j in range(flat.shape[1]))
        else:
            # (App. D.2)  ∇·f̃_θ(x, t) = E_p(ε)[εᵀ ∇f̃_θ(x, t) ε]
            div = sum((torch.autograd.grad(y, x, ε, retain_graph=True)[0] * ε).flatten(1).sum(1)
                      for ε in probes) / len(probes)
    return y.detach(), div.detach()


def log_likelihood(score: object, sde: object, x: Float[Tensor, "b *dims"], *, steps: int = 100, method: str = "rk4",
                   eps: float = 1e-5, divergence: str = "exact", probes: int = 1, noise: str = "rademacher",
                   prior: Callable[[Tensor], Tensor] | None = None, generator: torch.Generator | None = None
                   ) -> Float[Tensor, "b"]:
    """log p_eps(x) in nats, through the probability-flow ODE: x and ∫ ∇·f̃ dt integrated together
    from t = eps to 1 in ``steps`` steps of ``method``. ``divergence`` is ``exact`` (autograd's
    Jacobian trace, one backward pass per dimension) or ``hutchinson`` (``probes`` Rademacher or
    Gaussian ``noise`` vectors, drawn once and kept for the whole solve). ``prior`` is log p_T,
    by default `prior_log_prob`."""
    check_sde(sde, "log_likelihood")
    check_steps(steps, "log_likelihood")
    _check_eps(eps, "log_likelihood")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"log_likelihood: divergence={divergence!r}; expected 'exact' or 'hutchinson'")
    if method not in METHODS:
        raise ValueError(f"log_likelihood: method={method!r}; expected one of {', '.join(METHODS)}")
    s, (b, dims), D = as_function(score), (x.shape[0], x.shape[1:]), x[0].numel()
    ε = None
    if divergence == "hutchinson":
        if noise not in ("rademacher", "gaussian") or type(probes) is not int or probes < 1:
            raise ValueError(f"log_likelihood: noise={noise!r}, probes={probes!r}; expected 'rademacher' or "
                             f"'gaussian' and an integer >= 1")
        ε = torch.randn((probes, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
        ε = ε.sign() if noise == "rademacher" else ε

    def joint(state: Tensor, t: Tensor) -> Tensor:
        y, div = _divergence(lambda u, τ: probability_flow_drift(s, sde, u, τ), state[:, :D].reshape(b, *dims), t, ε)
        return torch.cat([y.flatten(1), div[:, None]], dim=1)

    start = torch.cat([x.detach().flatten(1), x.new_zeros(b, 1)], dim=1)
    end = solve(joint, start, eps, 1.0, steps=steps, method=method)
    xT, Δ = end[:, :D].reshape(b, *dims), end[:, D]
    # (App. D.2)  log p_0(x(0)) = log p_T(x(T)) + ∫_0^T ∇·f̃_θ(x(t), t) dt
    return (prior_log_prob(sde, xT) if prior is None else prior(xT)) + Δ


_SAMPLERS = {"pc": predictor_corrector, "euler_maruyama": euler_maruyama, "ode": probability_flow}


@method
def sample(s: ScoreSDE, x: Float[Tensor, "b *dims"], *, sampler: str = "pc", **options) -> Float[Tensor, "b *dims"]:
    """Data from x(1) = x (e.g. `prior_sample`): ``sampler`` is ``pc`` (`predictor_corrector`),
    ``euler_maruyama`` or ``ode`` (`probability_flow`); ``options`` go to it."""
    if sampler not in _SAMPLERS:
        raise ValueError(f"sample(ScoreSDE): sampler={sampler!r}; expected one of {', '.join(_SAMPLERS)}")
    return _SAMPLERS[sampler](s.model, s.sde, x, **options)
