"""Distances between two sets of samples, for sample quality. Note: notes/ddpm.md#sample-quality.

* `frechet_distance`: the Fréchet distance between the Gaussians fitted to two sets of
  features (Heusel et al. 2017, "GANs trained by a two time-scale update rule", eq. 6; FID when
  the features are Inception's, which cannot be downloaded here: the examples use a network
  trained in zerotoml on Fashion-MNIST, and say so).
* `energy_distance` (Székely and Rizzo 2013) and `sliced_wasserstein` (Rabin et al. 2011): for
  2-D data, with no features needed.
Each is tested against closed forms in test/test_metrics.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .shapes import Float

__all__ = ["frechet_distance", "gaussian_frechet_distance", "energy_distance", "sliced_wasserstein"]


def _check(who: str, a: Tensor, b: Tensor, least: int) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{who}: expected two (n, d) sets with the same d; got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < least or len(b) < least:
        raise ValueError(f"{who}: sets of {len(a)} and {len(b)} samples; need at least {least} each")


def _sqrtm_psd(M: Tensor) -> Tensor:
    """The square root of a symmetric positive semi-definite matrix, by its eigendecomposition."""
    w, V = torch.linalg.eigh(M)
    return (V * w.clamp_min(0).sqrt()) @ V.T


def gaussian_frechet_distance(μ1: Float[Tensor, "d"], Σ1: Float[Tensor, "d d"], μ2: Float[Tensor, "d"],
                              Σ2: Float[Tensor, "d d"]) -> float:
    """d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)   (Heusel et al. eq. 6; the
    symmetric form of (Σ1 Σ2)^½, which has the same trace)."""
    r = _sqrtm_psd(Σ1)
    cross = _sqrtm_psd(r @ Σ2 @ r)
    return float(((μ1 - μ2) ** 2).sum() + torch.trace(Σ1) + torch.trace(Σ2) - 2 * torch.trace(cross))


def frechet_distance(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> float:
    """The Fréchet distance between Gaussians fitted to features ``a`` and ``b`` (float64)."""
    _check("frechet_distance", a, b, 2)
    a, b = a.double(), b.double()
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T).reshape(a.shape[1], -1),
                                     b.mean(0), torch.cov(b.T).reshape(b.shape[1], -1))


def energy_distance(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> float:
    """E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ ≥ 0, zero only when the laws agree
    (Székely and Rizzo 2013, eq. 2; the V-statistic)."""
    _check("energy_distance", a, b, 1)
    a, b = a.double(), b.double()
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def sliced_wasserstein(a: Float[Tensor, "n d"], b: Float[Tensor, "n d"], *, projections: int = 128,
                       generator: torch.Generator | None = None) -> float:
    """SW₂ = (E_θ W₂²(θᵀa, θᵀb))^½ over directions θ uniform on the sphere; each 1-D W₂ between
    equal-sized sets is the mean squared difference of the sorted projections."""
    _check("sliced_wasserstein", a, b, 1)
    if len(a) != len(b):
        raise ValueError(f"sliced_wasserstein: sets of {len(a)} and {len(b)} samples; expected equal sizes")
    a, b = a.double(), b.double()
    θ = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    θ = θ / θ.norm(dim=0, keepdim=True)
    pa, pb = (a @ θ).sort(dim=0).values, (b @ θ).sort(dim=0).values
    return float(((pa - pb) ** 2).mean().sqrt())
