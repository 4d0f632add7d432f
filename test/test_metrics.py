"""zerotoml/metrics.py against closed forms: the Fréchet distance of Gaussians (diagonal
covariances, and scipy's matrix square root), the energy and sliced Wasserstein distances of
shifted sets."""

import math

import pytest
import torch

from zerotoml.metrics import energy_distance, frechet_distance, gaussian_frechet_distance, sliced_wasserstein

f64 = torch.float64


def test_gaussian_frechet_distance_of_diagonal_covariances_is_the_closed_form():
    μ1, μ2 = torch.tensor([0.0, 1.0], dtype=f64), torch.tensor([2.0, -1.0], dtype=f64)
    s1, s2 = torch.tensor([1.0, 4.0], dtype=f64), torch.tensor([9.0, 0.25], dtype=f64)
    # diagonal: d² = ‖μ1 − μ2‖² + Σ_i (√s1_i − √s2_i)²
    expected = 8.0 + (1 - 3) ** 2 + (2 - 0.5) ** 2
    assert math.isclose(gaussian_frechet_distance(μ1, torch.diag(s1), μ2, torch.diag(s2)), expected, rel_tol=1e-12)


def test_gaussian_frechet_distance_equals_scipys_sqrtm_form():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 4, generator=g, dtype=f64), torch.randn(4, 4, generator=g, dtype=f64)
    Σ1, Σ2 = A @ A.T + 0.1 * torch.eye(4, dtype=f64), B @ B.T + 0.1 * torch.eye(4, dtype=f64)
    μ1, μ2 = torch.randn(4, generator=g, dtype=f64), torch.randn(4, generator=g, dtype=f64)
    covmean = scipy_linalg.sqrtm((Σ1 @ Σ2).numpy()).real
    expected = float(((μ1 - μ2) ** 2).sum() + torch.trace(Σ1 + Σ2) - 2 * covmean.trace())
    assert math.isclose(gaussian_frechet_distance(μ1, Σ1, μ2, Σ2), expected, rel_tol=1e-9)


def test_frechet_distance_of_samples_approaches_the_gaussians():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(100_000, 3, generator=g, dtype=f64)
    b = torch.randn(100_000, 3, generator=g, dtype=f64) * 2 + 1
    # ‖μ‖² = 3, Σ_i (1 − 2)² = 3
    assert abs(frechet_distance(a, b) - 6.0) < 0.05
    assert frechet_distance(a, a) < 1e-8


def test_energy_and_sliced_wasserstein_distances_see_a_shift():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2000, 2, generator=g, dtype=f64), torch.randn(2000, 2, generator=g, dtype=f64)
    same_e, same_sw = energy_distance(a, b), sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))
    shifted = b + torch.tensor([3.0, 0.0], dtype=f64)
    assert same_e < 0.01 and energy_distance(a, shifted) > 2.0
    # a shift by s along one axis: W₂ along θ is |s θ_1|, so SW₂² = s² E[θ_1²] = s²/2 in 2-D
    sw = sliced_wasserstein(a, shifted, projections=4096, generator=torch.Generator().manual_seed(0))
    assert same_sw < 0.1 and abs(sw - 3 / math.sqrt(2)) < 0.1


def test_bad_sets_are_refused_by_name():
    with pytest.raises(ValueError, match="frechet_distance: expected two \\(n, d\\) sets with the same d"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="sliced_wasserstein: sets of 5 and 4 samples; expected equal sizes"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(4, 2))
