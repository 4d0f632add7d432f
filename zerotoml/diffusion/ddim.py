"""DDIM: denoising diffusion implicit models (Song, Meng, Ermon 2021, arXiv:2010.02502).
Note: notes/ddim.md.

The training of DDPM, other samplers: a family of non-Markovian forward processes with the same
marginals q(x_t | x_0), hence the same ε_θ, whose reverse steps (eq. 12) may skip steps (any
increasing sub-sequence τ) and whose noise is a dial σ_t(η) (eq. 16): η = 1 is DDPM's ancestral
sampler (σ² = β̃ on the sub-sequence), η = 0 is deterministic, the Euler steps of an ODE (eq. 13)
that also runs backwards, data to noise (`invert`).

Notation: the paper's α_t is DDPM's ᾱ_t (the cumulative product); the code writes ᾱ. Steps are
tensor indices i = t − 1 as in zerotoml/diffusion/ddpm.py; −1 is the data.
"""

from __future__ import annotations

from typing import Any

import torch

from ..generic import generic, method, sample
from ..shapes import Float, Int, Tensor
from ..tree import struct
from .common import times
from .ddpm import guided_noise, predict_x0
from .schedules import NoiseSchedule, sub_sequence

__all__ = ["DDIM", "ddim_sigma", "ddim_step", "invert"]


@generic
def invert(model, x, **options):
    """The noise a deterministic sampler turns into ``x``: ``sample(model, invert(model, x)) ≈ x``."""


@generic
def ddim_step(schedule, ε, t, x, **options):
    """One reverse step of DDIM: ``x_prev = ddim_step(schedule, ε, t, x_t, prev=s)``."""


@struct
class DDIM:
    """A denoiser ε_θ(x, t) trained as a DDPM (``DDIM(ddpm.model, ddpm.schedule)``) and its schedule."""

    model: Any
    schedule: NoiseSchedule


def _check_eta(eta: float, who: str) -> None:
    if not 0 <= eta <= 1:
        raise ValueError(f"{who}: eta={eta!r}; expected η in [0, 1] (0: deterministic, 1: DDPM-like)")


def ddim_sigma(schedule: NoiseSchedule, t: int, prev: int, eta: float) -> Float[Tensor, ""]:
    """σ_t(η) of a step from index t to prev."""
    ᾱ_t, ᾱ_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev)
    # σ_t(η) = η √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t−1})                    (eq. 16)
    return eta * ((1 - ᾱ_prev) / (1 - ᾱ_t)).sqrt() * (1 - ᾱ_t / ᾱ_prev).sqrt()


@method
def ddim_step(schedule: NoiseSchedule, ε: Float[Tensor, "b *shape"], t: int, x: Float[Tensor, "b *shape"], *,
              prev: int, eta: float = 0.0, noise: Float[Tensor, "b *shape"] | None = None,
              generator: torch.Generator | None = None, clip: float | None = None) -> Float[Tensor, "b *shape"]:
    """One step of eq. 12 from index ``t`` to ``prev`` (any −1 <= prev < t). ``noise`` is ε_t
    (drawn from ``generator`` when η > 0 and not given); ``clip`` clamps x̂_0 as diffusers'
    clip_sample does."""
    _check_eta(eta, "ddim_step")
    if not -1 <= prev < t:
        raise ValueError(f"ddim_step: prev={prev} for t={t}; expected −1 <= prev < t")
    ᾱ_prev = schedule.alpha_bar(prev)
    x0 = predict_x0(schedule, x, t, ε)  # (eq. 9) f_θ(x_t) = (x_t − √(1 − ᾱ_t) ε_θ(x_t)) / √ᾱ_t
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    σ = ddim_sigma(schedule, t, prev, eta)
    # x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε_θ(x_t) + σ_t ε_t                  (eq. 12)
    x_prev = ᾱ_prev.sqrt() * x0 + (1 - ᾱ_prev - σ**2).clamp(min=0).sqrt() * ε
    if eta == 0 or prev == -1:
        return x_prev
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x_prev + σ * noise


@method
def sample(ddim: DDIM, x_T: Float[Tensor, "b *shape"], *, steps: Any = 50, eta: float = 0.0,
           class_labels: Int[Tensor, "b"] | None = None, guidance: float = 0.0, null_label: int | None = None,
           generator: torch.Generator | None = None, clip: float | None = None) -> Float[Tensor, "b *shape"]:
    """x_0 from the noise x_T down the sub-sequence ``steps`` (a number of evenly spaced steps, or
    increasing indices, `sub_sequence`); None is all T steps. No gradient is recorded."""
    _check_eta(eta, "sample(DDIM)")
    τ = sub_sequence(ddim.schedule.T, steps)
    x = x_T
    with torch.no_grad():
        for k in reversed(range(len(τ))):
            t, prev = τ[k], (τ[k - 1] if k else -1)
            ε = guided_noise(ddim.model, x, times(t, x), class_labels=class_labels, guidance=guidance,
                             null_label=null_label)
            x = ddim_step(ddim.schedule, ε, t, x, prev=prev, eta=eta, generator=generator, clip=clip)
    return x


@method
def invert(ddim: DDIM, x0: Float[Tensor, "b *shape"], *, steps: Any = 50, iterations: int = 0,
           class_labels: Int[Tensor, "b"] | None = None, guidance: float = 0.0,
           null_label: int | None = None) -> Float[Tensor, "b *shape"]:
    """x_T from data x_0: the deterministic (η = 0) sampler run backwards, up the sub-sequence
    ``steps``. A step from index s up to t evaluates ε_θ at the step it lands on, ε_θ(x_s, t):
    the sampler comes back down with ε_θ(x_t, t), so a round trip errs by how much ε_θ moves
    between x_s and x_t. ``iterations`` > 0 (not in the paper) re-solves each step as a fixed
    point, x_t = up(x_s, ε_θ(x_t, t)), which makes the round trip exact as it converges. No
    gradient is recorded."""
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"invert(DDIM): iterations={iterations!r}; expected an integer >= 0")
    τ = sub_sequence(ddim.schedule.T, steps)
    x = x0
    with torch.no_grad():
        for k in range(len(τ)):
            s, t = (τ[k - 1] if k else -1), τ[k]
            ᾱ_s, ᾱ_t = ddim.schedule.alpha_bar(s), ddim.schedule.alpha_bar(t)
            x_t = x
            for _ in range(1 + iterations):
                ε = guided_noise(ddim.model, x_t, times(t, x), class_labels=class_labels, guidance=guidance,
                                 null_label=null_label)
                # x_t / √ᾱ_t = x_s / √ᾱ_s + (√((1 − ᾱ_t) / ᾱ_t) − √((1 − ᾱ_s) / ᾱ_s)) ε_θ   (eq. 13, upwards)
                x_t = ᾱ_t.sqrt() * (x / ᾱ_s.sqrt() + (((1 - ᾱ_t) / ᾱ_t).sqrt() - ((1 - ᾱ_s) / ᾱ_s).sqrt()) * ε)
            x = x_t
    return x
