"""DDPM: denoising diffusion probabilistic models (Ho, Jain, Abbeel 2020, arXiv:2006.11239), with
classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). Note: notes/ddpm.md.

Noise the data in one jump, ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` (eq. 4); teach a network ε_θ to
say which ε it was (L_simple, eq. 14); undo the noise one step at a time (Algorithm 2).

Steps are tensor indices ``i = t − 1`` in 0 .. T − 1, as in diffusers (the paper's t = 1 .. T);
index −1 is the data. The denoiser is fed the index. It is a zerotoml model with
``forward(model, x, t, *, class_labels=None)`` (the U-Net) or any callable ``f(x, t)``
(zerotoml/diffusion/common.py); class labels reach it as the keyword ``class_labels``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..generic import generic, loss, method, sample
from ..shapes import Float, Int, Tensor
from ..tree import params, replace_params, struct
from .common import as_function, times
from .schedules import NoiseSchedule, _per_example, sub_sequence

__all__ = ["DDPM", "q_sample", "predict_x0", "guided_noise", "ddpm_step", "ema_update", "VARIANCES"]

VARIANCES = ("beta_tilde", "beta")  # σ_t² of Algorithm 2: β̃_t (diffusers' fixed_small) or β_t (fixed_large)


@generic
def q_sample(schedule, x0, t, noise):
    """x_t drawn from q(x_t | x_0) with the given noise: ``q_sample(schedule, x0, t, noise)``."""


@generic
def predict_x0(schedule, x, t, ε):
    """The data the predicted noise ε implies at step t: ``predict_x0(schedule, x_t, t, ε)``."""


@generic
def ddpm_step(schedule, ε, t, x, **options):
    """One reverse step of DDPM: ``x_prev = ddpm_step(schedule, ε, t, x_t)``."""


@struct
class DDPM:
    """A denoiser ε_θ(x, t) and the schedule it was trained with."""

    model: Any
    schedule: NoiseSchedule


@method
def q_sample(schedule: NoiseSchedule, x0: Float[Tensor, "b *shape"], t: Int[Tensor, "b"],
             noise: Float[Tensor, "b *shape"]) -> Float[Tensor, "b *shape"]:
    """x_t drawn from q(x_t | x_0) with the given noise ε, one step index per example."""
    ᾱ = _per_example(schedule.alpha_bar(t), x0)
    # x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε                                              (eq. 4)
    return ᾱ.sqrt() * x0 + (1 - ᾱ).sqrt() * noise


@method
def predict_x0(schedule: NoiseSchedule, x: Float[Tensor, "b *shape"], t: Int[Tensor, "b"] | int,
               ε: Float[Tensor, "b *shape"]) -> Float[Tensor, "b *shape"]:
    """The data the predicted noise implies: eq. 4 solved for x_0."""
    ᾱ = _per_example(schedule.alpha_bar(t), x)
    # x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t                               (eq. 15)
    return (x - (1 - ᾱ).sqrt() * ε) / ᾱ.sqrt()


def guided_noise(model: Any, x: Float[Tensor, "b *shape"], t: Int[Tensor, "b"], *,
                 class_labels: Int[Tensor, "b"] | None = None, guidance: float = 0.0,
                 null_label: int | None = None) -> Float[Tensor, "b *shape"]:
    """ε_θ(x, t), conditioned on ``class_labels`` if given, with classifier-free guidance of
    weight ``guidance`` (w). The unconditional call passes ``class_labels=None``, or a tensor
    of ``null_label`` for a model trained with a label of its own for ∅."""
    if class_labels is None:
        return as_function(model)(x, t)
    conditional = as_function(model, class_labels=class_labels)(x, t)
    if guidance == 0:
        return conditional
    null = None if null_label is None else torch.full_like(class_labels, null_label)
    unconditional = as_function(model, class_labels=null)(x, t)
    # ε̃_θ(x, c) = (1 + w) ε_θ(x, c) − w ε_θ(x, ∅)                          (Ho & Salimans eq. 6)
    return (1 + guidance) * conditional - guidance * unconditional


@method
def ddpm_step(schedule: NoiseSchedule, ε: Float[Tensor, "b *shape"], t: int, x: Float[Tensor, "b *shape"], *,
              prev: int | None = None, variance: str = "beta_tilde", noise: Float[Tensor, "b *shape"] | None = None,
              generator: torch.Generator | None = None, clip: float | None = None) -> Float[Tensor, "b *shape"]:
    """One step of Algorithm 2 from index ``t`` to ``prev`` (t − 1 unless given: a sub-sequence
    steps with β = 1 − ᾱ_t / ᾱ_prev, Nichol & Dhariwal's respacing). No noise is added at the
    last step (prev = −1). ``noise`` is z (drawn from ``generator`` if not given); ``clip``
    clamps x̂_0 to [−clip, clip], as DDPM's code and diffusers do for images."""
    if variance not in VARIANCES:
        raise ValueError(f"ddpm_step: variance={variance!r}; expected one of {', '.join(map(repr, VARIANCES))}")
    prev = t - 1 if prev is None else prev
    if not -1 <= prev < t:
        raise ValueError(f"ddpm_step: prev={prev} for t={t}; expected −1 <= prev < t")
    ᾱ_t, ᾱ_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev)
    α = ᾱ_t / ᾱ_prev  # α_t = 1 − β_t when prev = t − 1
    β = 1 - α
    x0 = predict_x0(schedule, x, t, ε)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    # μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) x̂_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) x_t         (eq. 7)
    mean = ᾱ_prev.sqrt() * β / (1 - ᾱ_t) * x0 + α.sqrt() * (1 - ᾱ_prev) / (1 - ᾱ_t) * x
    if prev == -1:  # t = 1 in the paper: z = 0
        return mean
    # σ_t² = β_t  or  σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) β_t                    (§3.2, eq. 7)
    σ2 = β if variance == "beta" else (1 - ᾱ_prev) / (1 - ᾱ_t) * β
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    # x_{t−1} = μ_θ(x_t, t) + σ_t z                                           (Algorithm 2, line 4)
    return mean + σ2.sqrt() * noise


@method
def loss(ddpm: DDPM, x0: Float[Tensor, "b *shape"], *, t: Int[Tensor, "b"] | None = None,
         noise: Float[Tensor, "b *shape"] | None = None, class_labels: Int[Tensor, "b"] | None = None,
         p_uncond: float = 0.0, null_label: int | None = None,
         generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """L_simple on a batch of data (Algorithm 1): steps t ~ U{0 .. T−1} and noise ε ~ N(0, I)
    unless given; the squared error is averaged over every element (DDPM's code), which is
    eq. 14 divided by the size of an example. With ``class_labels``, each example is made
    unconditional with probability ``p_uncond`` (classifier-free guidance's training): given
    ``null_label`` (or the model's ``null_class``, as MLPDenoiser and UNet have), in one call."""
    b, T = x0.shape[0], ddpm.schedule.T
    null_label = getattr(ddpm.model, "null_class", None) if null_label is None else null_label
    if t is None:
        t = torch.randint(0, T, (b,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = q_sample(ddpm.schedule, x0, t, noise)
    if class_labels is None:
        ε = as_function(ddpm.model)(x_t, t)
    elif p_uncond == 0:
        ε = as_function(ddpm.model, class_labels=class_labels)(x_t, t)
    elif null_label is not None:  # ∅ is a label of its own
        drop = torch.rand(b, generator=generator, device=x0.device) < p_uncond
        ε = as_function(ddpm.model, class_labels=torch.where(drop, null_label, class_labels))(x_t, t)
    else:  # ∅ is class_labels=None: the kept and the dropped examples in one call each
        ε = x_t.new_zeros(x_t.shape)
        drop = torch.rand(b, generator=generator, device=x0.device) < p_uncond
        for rows, labels in ((~drop).nonzero()[:, 0], class_labels), (drop.nonzero()[:, 0], None):
            if rows.numel():
                f = as_function(ddpm.model, class_labels=None if labels is None else labels[rows])
                ε = ε.index_copy(0, rows, f(x_t[rows], t[rows]))
    # L_simple(θ) = E_{t, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖²             (eq. 14)
    return ((noise - ε) ** 2).mean()


@method
def sample(ddpm: DDPM, x_T: Float[Tensor, "b *shape"], *, steps: Any = None, variance: str = "beta_tilde",
           class_labels: Int[Tensor, "b"] | None = None, guidance: float = 0.0, null_label: int | None = None,
           generator: torch.Generator | None = None, clip: float | None = None) -> Float[Tensor, "b *shape"]:
    """Algorithm 2 from the noise x_T: all T steps, or a sub-sequence (``steps``: a number of
    evenly spaced steps or increasing indices, `sub_sequence`). No gradient is recorded."""
    τ = sub_sequence(ddpm.schedule.T, steps)
    x = x_T
    with torch.no_grad():
        for k in reversed(range(len(τ))):  # Algorithm 2: for t = T, ..., 1
            t, prev = τ[k], (τ[k - 1] if k else -1)
            ε = guided_noise(ddpm.model, x, times(t, x), class_labels=class_labels, guidance=guidance,
                             null_label=null_label)
            x = ddpm_step(ddpm.schedule, ε, t, x, prev=prev, variance=variance, generator=generator, clip=clip)
    return x


def ema_update(ema_model: Any, model: Any, decay: float) -> Any:
    """A new model whose parameters are ``decay · θ_ema + (1 − decay) · θ`` (the exponential moving
    average DDPM samples with, decay 0.9999). Pure: neither model is written; buffers (a
    schedule) are ema_model's. Start with ``ema = model`` and ``ema = ema_update(ema, model, d)``
    after every optimizer step."""
    if not 0 <= decay <= 1:
        raise ValueError(f"ema_update: decay={decay!r}; expected a number in [0, 1]")
    ours, theirs = params(ema_model), params(model)
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        raise ValueError(f"ema_update: ema_model has {len(ours)} parameters, model {len(theirs)}, or their "
                         f"shapes differ; expected two models of the same structure")
    with torch.no_grad():
        # θ_ema ← decay θ_ema + (1 − decay) θ
        return replace_params(ema_model, [decay * e + (1 - decay) * p for e, p in zip(ours, theirs)])
