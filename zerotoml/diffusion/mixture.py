"""A Gaussian mixture and its exact score, noise and velocity at every time of a diffusion.
Note: notes/ddpm.md#exact-tests-without-training.

Every diffusion path here sends data x_0 to ``x_t = α_t x_0 + σ_t z``, z ~ N(0, I) (DDPM and
DDIM: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t); the VP, VE and sub-VP SDEs; flow matching's linear path).
If x_0 is a mixture of Gaussians, so is x_t, with the means and covariances moved:

    p_t(x) = Σ_k π_k N(x; α_t μ_k, α_t² Σ_k + σ_t² I)

so its score ∇ log p_t, the noise a network would predict, ε = −σ_t ∇ log p_t (Tweedie), and
the velocity of the path, v = α'_t E[x_0 | x_t] + σ'_t E[z | x_t], are closed forms: every
sampler can be tested against them without training anything (test/diffusion/).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..layers.activation import softmax
from ..shapes import Float
from ..tree import struct

__all__ = ["GaussianMixture", "noise", "velocity"]


@struct
class GaussianMixture:
    """``Σ_k π_k N(μ_k, Σ_k)`` in d dimensions."""

    weights: Float[Tensor, "k"]
    means: Float[Tensor, "k d"]
    covs: Float[Tensor, "k d d"]

    def __post_init__(self):
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covs.shape != (k, d, d):
            raise ValueError(f"GaussianMixture: weights {tuple(self.weights.shape)}, means {tuple(self.means.shape)}, "
                             f"covs {tuple(self.covs.shape)}; expected (k,), (k, d) and (k, d, d)")
        if bool((self.weights < 0).any()) or not math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-6):
            raise ValueError(f"GaussianMixture: weights {self.weights.tolist()} must be >= 0 and sum to 1")

    def moved(self, α: float | Tensor, σ: float | Tensor) -> GaussianMixture:
        """The law of ``α x_0 + σ z``: means α μ_k, covariances α² Σ_k + σ² I."""
        eye = torch.eye(self.means.shape[1], dtype=self.means.dtype, device=self.means.device)
        return GaussianMixture(self.weights, α * self.means, α**2 * self.covs + σ**2 * eye)

    def log_prob(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n"]:
        """log p(x) = log Σ_k π_k N(x; μ_k, Σ_k)."""
        comps = torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covs)
        return torch.logsumexp(comps.log_prob(x[:, None, :]) + torch.log(self.weights), dim=1)

    def score(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        """∇_x log p(x) = Σ_k r_k(x) Σ_k⁻¹ (μ_k − x), r_k the posterior weight of component k."""
        comps = torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covs)
        r = softmax(comps.log_prob(x[:, None, :]) + torch.log(self.weights), dim=1)  # (n, k)
        diff = self.means[None] - x[:, None, :]  # (n, k, d)
        pull = torch.linalg.solve(self.covs[None], diff[..., None])[..., 0]  # Σ_k⁻¹ (μ_k − x)
        return torch.einsum("nk,nkd->nd", r, pull)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Float[Tensor, "n d"]:
        """n draws: a component by its weight, then a Gaussian draw from it."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=self.means.dtype,
                        device=self.means.device)
        L = torch.linalg.cholesky(self.covs)
        return self.means[k] + torch.einsum("nij,nj->ni", L[k], z)

    def mean(self) -> Float[Tensor, "d"]:
        """E[x] = Σ_k π_k μ_k."""
        return torch.einsum("k,kd->d", self.weights, self.means)

    def cov(self) -> Float[Tensor, "d d"]:
        """Cov[x] = Σ_k π_k (Σ_k + μ_k μ_kᵀ) − E[x] E[x]ᵀ."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + torch.einsum("ki,kj->kij", self.means, self.means))
        return second - torch.outer(m, m)


def noise(p: GaussianMixture, x: Tensor, α: float, σ: float) -> Tensor:
    """The exact ε-prediction at a time with coefficients (α, σ): ε = −σ ∇ log p_t(x)."""
    return -σ * p.moved(α, σ).score(x)


def velocity(p: GaussianMixture, x: Tensor, α: float, σ: float, dα: float, dσ: float) -> Tensor:
    """The exact velocity of the path x_t = α_t x_0 + σ_t z at a time with coefficients (α, σ)
    and their time derivatives (α', σ'): v = α' E[x_0 | x_t] + σ' E[z | x_t], where
    E[z | x_t] = −σ ∇ log p_t and E[x_0 | x_t] = (x_t − σ E[z | x_t]) / α (Tweedie)."""
    s = p.moved(α, σ).score(x)
    ez = -σ * s
    return dα * (x - σ * ez) / α + dσ * ez
