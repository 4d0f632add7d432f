"""Noise schedules: the discrete β_1 .. β_T of DDPM and DDIM (Ho et al. 2020; Nichol & Dhariwal
2021) and the continuous-time SDEs of Song et al. 2021 (VP, VE, sub-VP). Note:
notes/ddpm.md#schedules.

Every one of them sends data to ``x_t = α_t x_0 + σ_t z`` (`marginal`), so one closed form
(zerotoml/diffusion/mixture.py) tests every sampler.

Indices. The paper counts t = 1 .. T; tensors count i = 0 .. T − 1 with i = t − 1, which is
diffusers' ``timesteps`` and what a denoiser is fed: ``betas[i] = β_{i+1}``,
``alphas_cumprod[i] = ᾱ_{i+1}``. The data, the paper's t = 0 with ᾱ_0 = 1, is index −1
(`NoiseSchedule.alpha_bar` takes it).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..generic import generic, method
from ..shapes import Float, Int, Tensor
from ..tree import buffer, struct

__all__ = ["NoiseSchedule", "sub_sequence", "VPSDE", "VESDE", "SubVPSDE", "drift", "diffusion_coefficient",
           "marginal", "marginal_derivatives"]


@generic
def drift(sde, x, t):
    """``f(x, t)`` of the forward SDE ``dx = f(x, t) dt + g(t) dw``."""


@generic
def diffusion_coefficient(sde, t):
    """``g(t)`` of the forward SDE ``dx = f(x, t) dt + g(t) dw``."""


@generic
def marginal(process, t):
    """``(α_t, σ_t)`` of the marginal ``x_t = α_t x_0 + σ_t z``, z ~ N(0, I), one per time in t."""


@generic
def marginal_derivatives(process, t):
    """``(dα_t/dt, dσ_t/dt)``: what a flow-matching velocity ``α' x_0 + σ' z`` needs."""


# ------------------------------------------------------------------ discrete time


@struct
class NoiseSchedule:
    """β_1 .. β_T of q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I) (Ho et al. eq. 2), stored
    0-based (``betas[i] = β_{i+1}``); a buffer, so optimizers and EMA leave it alone."""

    betas: Float[Tensor, "T"] = buffer()

    def __post_init__(self):
        β = self.betas
        if not isinstance(β, Tensor) or not β.is_floating_point() or β.dim() != 1 or β.numel() < 1:
            got = f"shape {tuple(β.shape)}, dtype {β.dtype}" if isinstance(β, Tensor) else type(β).__name__
            raise ValueError(f"NoiseSchedule: betas has {got}; expected a floating tensor of shape (T,), T >= 1")
        bad = ~(torch.isfinite(β) & (β > 0) & (β < 1))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"NoiseSchedule: betas[{i}] = {float(β[i])!r}; every β_t must lie in (0, 1)")
        ᾱ = self.alphas_cumprod
        flat = ~(ᾱ[1:] < ᾱ[:-1]) if ᾱ.numel() > 1 else torch.zeros(0, dtype=torch.bool)
        if bool(flat.any()) or float(ᾱ[-1]) <= 0:
            i = int(flat.nonzero()[0]) + 1 if bool(flat.any()) else ᾱ.numel() - 1
            raise ValueError(f"NoiseSchedule: ᾱ = Π(1 − β_s) must decrease strictly and stay > 0, but "
                             f"alphas_cumprod[{i}] = {float(ᾱ[i])!r} (β_t too small or too many steps for {β.dtype})")

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *, device=None,
               dtype=None) -> NoiseSchedule:
        """Ho et al. 2020, §4: β_t from 1e-4 to 0.02, evenly spaced over T = 1000 steps."""
        _check_T(T, "NoiseSchedule.linear")
        for name, b in (("beta_start", beta_start), ("beta_end", beta_end)):
            if not 0 < b < 1:
                raise ValueError(f"NoiseSchedule.linear: {name}={b!r}; expected a β in (0, 1)")
        β = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(β.to(device=device, dtype=dtype or torch.get_default_dtype()))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999, *, device=None,
               dtype=None) -> NoiseSchedule:
        """Nichol & Dhariwal 2021, eq. 17, with β_t clipped at ``max_beta`` (their §3.2)."""
        _check_T(T, "NoiseSchedule.cosine")
        if not 0 < max_beta < 1 or s < 0:
            raise ValueError(f"NoiseSchedule.cosine: s={s!r}, max_beta={max_beta!r}; expected s >= 0, 0 < max_beta < 1")
        t = torch.arange(T + 1, dtype=torch.float64)
        # ᾱ_t = f(t) / f(0),  f(t) = cos²(((t/T + s) / (1 + s)) · π/2)      (Nichol & Dhariwal eq. 17)
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        ᾱ = f / f[0]
        # β_t = 1 − ᾱ_t / ᾱ_{t−1}, clipped at 0.999                          (their §3.2)
        β = torch.clamp(1 - ᾱ[1:] / ᾱ[:-1], max=max_beta)
        return cls(β.to(device=device, dtype=dtype or torch.get_default_dtype()))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Float[Tensor, "T"]) -> NoiseSchedule:
        """The schedule with these ᾱ_1 .. ᾱ_T: β_t = 1 − ᾱ_t / ᾱ_{t−1}, ᾱ_0 = 1."""
        ᾱ = alphas_cumprod
        if ᾱ.dim() != 1 or ᾱ.numel() < 1 or bool(((ᾱ <= 0) | (ᾱ > 1)).any()) or bool((ᾱ[1:] >= ᾱ[:-1]).any()):
            raise ValueError(f"NoiseSchedule.from_alphas_cumprod: got {ᾱ.tolist()[:6]}{' ...' * (ᾱ.numel() > 6)} "
                             f"(shape {tuple(ᾱ.shape)}); expected shape (T,), values in (0, 1], strictly decreasing")
        return cls(1 - ᾱ / torch.cat([ᾱ.new_ones(1), ᾱ[:-1]]))

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas(self) -> Float[Tensor, "T"]:
        # α_t = 1 − β_t                                                         (Ho eq. 4)
        return 1 - self.betas

    @property
    def alphas_cumprod(self) -> Float[Tensor, "T"]:
        # ᾱ_t = Π_{s=1}^t α_s                                                  (Ho eq. 4)
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alphas_cumprod_prev(self) -> Float[Tensor, "T"]:
        """ᾱ_{t−1} for t = 1 .. T: ``[1, ᾱ_1, .., ᾱ_{T−1}]``."""
        ᾱ = self.alphas_cumprod
        return torch.cat([ᾱ.new_ones(1), ᾱ[:-1]])

    @property
    def snr(self) -> Float[Tensor, "T"]:
        # SNR(t) = ᾱ_t / (1 − ᾱ_t) = α²/σ² of the marginal                (Kingma et al. 2021, VDM)
        ᾱ = self.alphas_cumprod
        return ᾱ / (1 - ᾱ)

    @property
    def posterior_variance(self) -> Float[Tensor, "T"]:
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t                              (Ho eq. 7)
        return (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod) * self.betas

    @property
    def posterior_mean_coefs(self) -> tuple[Float[Tensor, "T"], Float[Tensor, "T"]]:
        """The coefficients of x_0 and x_t in μ̃_t(x_t, x_0)."""
        ᾱ, ᾱ_prev, β = self.alphas_cumprod, self.alphas_cumprod_prev, self.betas
        # μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t    (Ho eq. 7)
        return ᾱ_prev.sqrt() * β / (1 - ᾱ), self.alphas.sqrt() * (1 - ᾱ_prev) / (1 - ᾱ)

    def alpha_bar(self, i: Int[Tensor, "*b"] | int) -> Float[Tensor, "*b"]:
        """ᾱ at tensor indices ``i`` in −1 .. T − 1; index −1 is the data, ᾱ_0 = 1."""
        i = torch.as_tensor(i, device=self.betas.device)
        if i.is_floating_point() or bool(((i < -1) | (i >= self.T)).any()):
            raise ValueError(f"NoiseSchedule.alpha_bar: index {i.tolist()}; expected integers in -1 .. {self.T - 1} "
                             f"(tensor index i = paper's t − 1; −1 is the data)")
        return torch.cat([self.betas.new_ones(1), self.alphas_cumprod])[i + 1]


def _check_T(T: int, who: str) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"{who}: T={T!r}; expected an integer number of steps T >= 1")


def sub_sequence(T: int, steps: int | Sequence[int] | Tensor | None) -> list[int]:
    """The increasing tensor indices τ_1 < .. < τ_S a sampler visits (backwards): all T of them
    for None; for an int S, S evenly spaced ones ending at T − 1 (pure noise),
    ``round(k T / S) − 1`` for k = 1 .. S; or the given sequence, checked."""
    _check_T(T, "sub_sequence")
    if steps is None:
        return list(range(T))
    if isinstance(steps, int):
        if not 1 <= steps <= T:
            raise ValueError(f"steps={steps}: expected a number of steps in 1 .. T={T}")
        return [round(k * T / steps) - 1 for k in range(1, steps + 1)]
    τ = [int(s) for s in (steps.tolist() if isinstance(steps, Tensor) else steps)]
    if not τ or any(b <= a for a, b in zip(τ, τ[1:])) or τ[0] < 0 or τ[-1] >= T:
        raise ValueError(f"steps={τ[:8]}{' ...' * (len(τ) > 8)}: expected a non-empty, strictly increasing "
                         f"sequence of tensor indices in 0 .. T − 1 = {T - 1}")
    return τ


@method
def marginal(schedule: NoiseSchedule, t: Int[Tensor, "*b"]) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    ᾱ = schedule.alpha_bar(t)
    # q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)                                  (Ho eq. 4)
    return ᾱ.sqrt(), (1 - ᾱ).sqrt()


# --------------------------------------------------------------- continuous time


def _time(t: float | Tensor, who: str, like: Tensor | None = None) -> Tensor:
    """``t`` as a float tensor, checked to lie in [0, 1]."""
    if isinstance(t, Tensor) and not t.is_floating_point():
        raise TypeError(f"{who}: t has dtype {t.dtype}; expected float times in [0, 1] (integer steps are "
                        f"for NoiseSchedule)")
    dtype = like.dtype if like is not None and not isinstance(t, Tensor) else None
    t = torch.as_tensor(t, dtype=dtype, device=like.device if like is not None else None)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool((torch.isfinite(t) & (t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{who}: t = {t.tolist()}; expected times in [0, 1]")
    return t


def _per_example(c: Tensor, x: Tensor) -> Tensor:
    """A coefficient of shape () or (b,) broadcast over the other axes of x."""
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim())) if c.dim() else c


@struct
class VPSDE:
    """The variance-preserving SDE (Song et al. 2021, eq. 11): the limit of DDPM. β(t) linear from
    ``beta_min`` to ``beta_max``; beta_min = 0.1, beta_max = 20 is DDPM's linear schedule at T = 1000."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: Float[Tensor, "*b"]) -> Float[Tensor, "*b"]:
        # β(t) = β_min + t (β_max − β_min)                 (Song et al. eq. 11, linear as in their App. C)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def beta_integral(self, t: Float[Tensor, "*b"]) -> Float[Tensor, "*b"]:
        """∫_0^t β(s) ds = β_min t + ½ t² (β_max − β_min)."""
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)


@struct
class SubVPSDE(VPSDE):
    """The sub-VP SDE (Song et al. 2021, eq. 12): VP's drift, a smaller diffusion; its variance
    stays below VP's at every time."""


@struct
class VESDE:
    """The variance-exploding SDE (Song et al. 2021, eq. 9): the limit of SMLD, σ(t) geometric."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def noise_scale(self, t: Float[Tensor, "*b"]) -> Float[Tensor, "*b"]:
        # σ(t) = σ_min (σ_max / σ_min)^t                  (Song et al. eq. 9, geometric as in their App. C)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t


@method
def drift(sde: VPSDE, x: Float[Tensor, "b *shape"], t: Float[Tensor, "*bt"] | float) -> Float[Tensor, "b *shape"]:
    t = _time(t, "drift", like=x)
    # f(x, t) = −½ β(t) x                                               (Song et al. eq. 11, 12)
    return -0.5 * _per_example(sde.beta(t), x) * x


@method
def drift(sde: VESDE, x: Float[Tensor, "b *shape"], t: Float[Tensor, "*bt"] | float) -> Float[Tensor, "b *shape"]:
    _time(t, "drift", like=x)
    # f(x, t) = 0                                                         (Song et al. eq. 9)
    return torch.zeros_like(x)


@method
def diffusion_coefficient(sde: VPSDE, t: Float[Tensor, "*b"] | float) -> Float[Tensor, "*b"]:
    # g(t) = √β(t)                                                        (Song et al. eq. 11)
    return sde.beta(_time(t, "diffusion_coefficient")).sqrt()


@method
def diffusion_coefficient(sde: SubVPSDE, t: Float[Tensor, "*b"] | float) -> Float[Tensor, "*b"]:
    t = _time(t, "diffusion_coefficient")
    # g(t) = √(β(t) (1 − e^{−2 ∫_0^t β(s) ds}))                            (Song et al. eq. 12)
    return (sde.beta(t) * -torch.expm1(-2 * sde.beta_integral(t))).sqrt()


@method
def diffusion_coefficient(sde: VESDE, t: Float[Tensor, "*b"] | float) -> Float[Tensor, "*b"]:
    t = _time(t, "diffusion_coefficient")
    # g(t) = √(d[σ²(t)]/dt) = σ(t) √(2 log(σ_max / σ_min))                 (Song et al. eq. 9)
    return sde.noise_scale(t) * math.sqrt(2 * math.log(sde.sigma_max / sde.sigma_min))


@method
def marginal(sde: VPSDE, t: Float[Tensor, "*b"] | float) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    B = sde.beta_integral(_time(t, "marginal"))
    # p_0t(x_t | x_0) = N(x_0 e^{−½ ∫β}, (1 − e^{−∫β}) I)                      (Song et al. eq. 29)
    return torch.exp(-0.5 * B), (-torch.expm1(-B)).sqrt()


@method
def marginal(sde: SubVPSDE, t: Float[Tensor, "*b"] | float) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    B = sde.beta_integral(_time(t, "marginal"))
    # p_0t(x_t | x_0) = N(x_0 e^{−½ ∫β}, (1 − e^{−∫β})² I)                     (Song et al. eq. 29)
    return torch.exp(-0.5 * B), -torch.expm1(-B)


@method
def marginal(sde: VESDE, t: Float[Tensor, "*b"] | float) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    σ = sde.noise_scale(_time(t, "marginal"))
    # p_0t(x_t | x_0) = N(x_0, (σ²(t) − σ²(0)) I)                               (Song et al. eq. 29)
    return torch.ones_like(σ), (σ**2 - sde.sigma_min**2).clamp(min=0).sqrt()


@method
def marginal_derivatives(sde: VPSDE, t: Float[Tensor, "*b"] | float) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    t = _time(t, "marginal_derivatives")
    (α, σ), β = marginal(sde, t), sde.beta(t)
    # α' = −½ β α,  σ' = ½ β e^{−∫β} / σ   (SubVPSDE: σ' = β e^{−∫β})
    decay = torch.exp(-sde.beta_integral(t))
    dσ = β * decay if isinstance(sde, SubVPSDE) else 0.5 * β * decay / σ
    return -0.5 * β * α, dσ


@method
def marginal_derivatives(sde: VESDE, t: Float[Tensor, "*b"] | float) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    t = _time(t, "marginal_derivatives")
    _, σ = marginal(sde, t)
    # α' = 0,  σ' = σ(t)² log(σ_max / σ_min) / √(σ(t)² − σ_min²)   (infinite at t = 0)
    return torch.zeros_like(σ), sde.noise_scale(t) ** 2 * math.log(sde.sigma_max / sde.sigma_min) / σ
