"""The diffusion time as a vector: the Transformer's sinusoids at the step t, then an MLP.
Note: notes/unet.md#the-time-embedding.

Ho et al. 2020 (appendix B): "Diffusion time t is specified by adding the Transformer
sinusoidal position embedding into each residual block". The sinusoids are Vaswani et al.'s
§3.5 table read at the position t (any real t, not only integers), laid out as diffusers'
``get_timestep_embedding`` lays them out, so that a diffusers UNet2DModel converts exactly:
all the sines, then all the cosines (or cosines first with ``flip_sin_to_cos``), and the
frequencies ``ω_k = P^{−k / (half − shift)}``. ``shift = 0`` is the Transformer's
``10000^{−2i/d}``; ``shift = 1`` is the DDPM code's (the last frequency is exactly 1/P).
"""

from __future__ import annotations

import math

import torch

from ..einsum import einsum
from ..generic import forward, method
from ..layers.activation import silu
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..shapes import Float, Int, Shaped, Tensor
from ..tree import struct

__all__ = ["timestep_embedding", "TimeEmbedding", "class_rows", "drop_labels"]


def timestep_embedding(t: Shaped[Tensor, "b"], dim: int, *, flip_sin_to_cos: bool = True,
                       downscale_freq_shift: float = 0.0, max_period: float = 10000.0,
                       scale: float = 1.0) -> Float[Tensor, "b dim"]:
    """``[sin(s t ω_k), cos(s t ω_k)]`` for k = 0 .. dim/2 − 1, ``ω_k = P^{−k/(dim/2 − shift)}``,
    in float32 as diffusers computes it (an odd ``dim`` gets a zero last column)."""
    half = dim // 2
    if half - downscale_freq_shift == 0:
        raise ValueError(f"timestep_embedding: dim={dim} with downscale_freq_shift={downscale_freq_shift} "
                         f"divides by zero; use dim >= 4 or shift 0")
    # ω_k = exp(−ln P · k / (half − shift)) = P^{−k/(half − shift)}     (§3.5: P = 10000, shift 0)
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    ω = torch.exp(-math.log(max_period) * k / (half - downscale_freq_shift))
    # the angles s · t · ω_k, one row per example (an outer product)
    angle = scale * einsum(t.to(torch.float32), ω, "b, half -> b half")
    # PE(t) = [sin(t ω_0) .. sin(t ω_{half−1}), cos(t ω_0) .. cos(t ω_{half−1})]
    sin_cos = [torch.sin(angle), torch.cos(angle)]
    emb = torch.cat(sin_cos[::-1] if flip_sin_to_cos else sin_cos, dim=-1)
    if dim % 2:  # an odd width: one zero column at the end
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


@struct
class TimeEmbedding:
    """``temb = W_2 silu(W_1 PE(t) + b_1) + b_2``: the sinusoids of width ``dim`` through an MLP
    (diffusers' ``Timesteps`` then ``TimestepEmbedding``); every residual block adds a projection
    of ``silu(temb)``."""

    linear_1: Linear
    linear_2: Linear
    dim: int
    flip_sin_to_cos: bool = True
    downscale_freq_shift: float = 0.0
    max_period: float = 10000.0
    scale: float = 1.0

    @classmethod
    def init(cls, dim: int, d_emb: int, *, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0,
             max_period: float = 10000.0, scale: float = 1.0, generator=None, device=None,
             dtype=None) -> TimeEmbedding:
        """Two Linear layers with torch's default initialiser (as diffusers)."""
        kw = dict(generator=generator, device=device, dtype=dtype)
        return cls(Linear.init(dim, d_emb, **kw), Linear.init(d_emb, d_emb, **kw), dim, flip_sin_to_cos,
                   downscale_freq_shift, max_period, scale)


@method
def forward(m: TimeEmbedding, t: Shaped[Tensor, "b"]) -> Float[Tensor, "b d_emb"]:
    pe = timestep_embedding(t, m.dim, flip_sin_to_cos=m.flip_sin_to_cos, downscale_freq_shift=m.downscale_freq_shift,
                            max_period=m.max_period, scale=m.scale)
    # temb = W_2 silu(W_1 PE(t) + b_1) + b_2, in the dtype of the weights
    return forward(m.linear_2, silu(forward(m.linear_1, pe.to(m.linear_1.W.dtype))))


# ---------------------------------------------------------------- class labels


def class_rows(who: str, table: Embedding | None, null_class: int | None, class_labels: Tensor | None,
               b: int, device) -> Float[Tensor, "b d_emb"] | None:
    """E[y], the rows of a model's class table for its labels, added to the time embedding:
    the null class's row where ``class_labels`` is None (unconditional), nothing for a model
    without a table. A label for a model without a table, or none for a model without a null
    class, is refused."""
    if table is None:
        if class_labels is not None:
            raise ValueError(f"{who}: class_labels given, but this model has no class embedding "
                             f"(build it with num_classes=...)")
        return None
    if class_labels is None:
        if null_class is None:
            raise ValueError(f"{who}: this model is class-conditional and has no null class; give class_labels "
                             f"(or build it with null_class=True)")
        class_labels = torch.full((b,), null_class, dtype=torch.long, device=device)
    return forward(table, class_labels)


def drop_labels(model: object, class_labels: Int[Tensor, "b"], p: float, *,
                generator: torch.Generator | None = None) -> Int[Tensor, "b"]:
    """Classifier-free guidance's training labels: each replaced by the model's null class with
    probability ``p`` (Ho & Salimans 2021, Algorithm 1), so one network learns ε(x, t, y) and
    ε(x, t)."""
    null = getattr(model, "null_class", None)
    if null is None:
        raise ValueError(f"drop_labels: this {type(model).__name__} has no null class; build it with "
                         f"num_classes=... and null_class=True")
    drop = torch.rand(class_labels.shape, generator=generator, device=class_labels.device) < p
    return torch.where(drop, torch.full_like(class_labels, null), class_labels)
