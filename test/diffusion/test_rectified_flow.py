"""zerotoml/diffusion/rectified_flow.py: the loss is eq. 1, the straightness S(Z) is zero for
flows whose paths are straight and positive for curved ones, and, trained on 2-D data, reflow
lowers the straightness of the 1-rectified flow and makes its one-step samples close to the
data (energy distance and sliced Wasserstein distance to held-out points)."""

import math

import pytest
import torch

from zerotoml.diffusion.mixture import GaussianMixture
from zerotoml.diffusion.mlp import MLPDenoiser
from zerotoml.diffusion.rectified_flow import RectifiedFlow, interpolate, reflow_pairs, straightness
from zerotoml.generic import CheckError, loss, sample, step
from zerotoml.metrics import energy_distance, sliced_wasserstein
from zerotoml.optim import Adam
from zerotoml.tree import map_tensors, value_and_grad

f64 = torch.float64


def test_loss_is_eq_1():
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g), torch.rand(64, generator=g)
    v = lambda x, t: x * t[:, None]  # noqa: E731
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    torch.testing.assert_close(loss(RectifiedFlow(v), x0, x1, t=t), ((x1 - x0 - xt * t[:, None]) ** 2).sum(1).mean())
    torch.testing.assert_close(interpolate(x0, x1, torch.zeros(64)), x0)
    torch.testing.assert_close(interpolate(x0, x1, torch.ones(64)), x1)


def test_straightness_is_zero_for_straight_flows_and_positive_for_curved_ones():
    x0 = torch.randn(256, 2, dtype=f64, generator=torch.Generator().manual_seed(1))
    # every path a line run at constant speed, Z_t = Z_0 + t (a Z_0 + c): v(z, t) = a (z − t c) / (1 + a t) + c
    a, c = 0.7, torch.tensor([1.0, -2.0], dtype=f64)
    straight = lambda z, t: a * (z - t[:, None] * c) / (1 + a * t[:, None]) + c  # noqa: E731
    assert straightness(straight, x0, steps=10, method="euler") < 1e-20
    assert straightness(straight, x0, steps=10, method="heun") < 1e-20
    # a rotation by θ: Z_t = e^{iθt} Z_0 on circular arcs, S(Z) = E‖Z_0‖² (θ² − 2 + 2 cos θ)
    θ = math.pi / 2
    R = torch.tensor([[0.0, -θ], [θ, 0.0]], dtype=f64)
    exact = float((x0**2).sum(1).mean()) * (θ**2 - 2 + 2 * math.cos(θ))
    assert straightness(lambda z, t: z @ R.T, x0, steps=64, method="rk4") == pytest.approx(exact, rel=1e-3)


def gaussian_1rf(μ):
    """The exact 1-rectified flow from N(0, I) to N(μ, I) (independent coupling): X_t ~ N(t μ, r_t² I),
    r_t² = t² + (1 − t)², and v(x, t) = E[X_1 − X_0 | X_t = x] = μ + (2t − 1) / r_t² (x − t μ)."""
    return lambda x, t: μ + ((2 * t - 1) / (t**2 + (1 - t) ** 2))[:, None] * (x - t[:, None] * μ)


def test_reflow_of_the_exact_1rf_between_two_gaussians_is_the_straight_translation():
    """1-RF's paths shrink towards the moving mean and grow back (Z_t − t μ = r_t Z_0), so
    S = d (2 − π/2); its coupling is Z_1 = Z_0 + μ, whose rectified flow is v = μ: S = 0 and one
    Euler step is exact."""
    μ = torch.tensor([3.0, -1.0], dtype=f64)
    x0 = torch.randn(2000, 2, dtype=f64, generator=torch.Generator().manual_seed(2))
    v1 = gaussian_1rf(μ)
    s1 = straightness(v1, x0, steps=64)
    assert s1 == pytest.approx(float((x0**2).sum(1).mean()) * (2 - math.pi / 2), rel=1e-3)
    z0, z1 = reflow_pairs(RectifiedFlow(v1), x0, steps=64)
    torch.testing.assert_close(z1 - z0, μ.expand(2000, 2), atol=1e-6, rtol=0)
    rf2 = RectifiedFlow(lambda x, t: μ.expand(x.shape[0], 2), k=2)
    assert loss(rf2, z0, z1) < 1e-10 and straightness(rf2, x0, steps=4) < 1e-20
    torch.testing.assert_close(sample(rf2, x0, steps=1), z1, atol=1e-6, rtol=0)


def data():
    """Two elongated clusters: the independent coupling with N(0, I) crosses, so 1-RF curves."""
    return GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 1.0], [2.0, -1.0]]),
                           torch.tensor([[[0.3, 0.0], [0.0, 0.05]], [[0.05, 0.0], [0.0, 0.3]]]))


def train(rf, x0s, x1s, *, iters, g, lr=3e-3, batch=256):
    opt = Adam.init(rf, lr=lr)
    for _ in range(iters):
        i = torch.randint(0, len(x0s), (batch,), generator=g)
        _, grads = value_and_grad(lambda m: loss(m, x0s[i], x1s[i], generator=g), rf)
        step(opt, rf, grads)
    return rf


@pytest.mark.slow
def test_reflow_straightens_a_trained_flow_and_makes_one_step_samples_good():
    g = torch.Generator().manual_seed(0)
    p = data()
    x1s, held_out = p.sample(4096, generator=g), p.sample(1024, generator=g)
    x0s = torch.randn(4096, 2, generator=g)
    rf1 = train(RectifiedFlow(MLPDenoiser.init(2, 64, 2, time_scale=1000.0, generator=g)), x0s, x1s,
                iters=500, g=g)
    # reflow: pair fresh noise with where 1-RF sends it, start from 1-RF's weights
    z0, z1 = reflow_pairs(rf1, torch.randn(4096, 2, generator=g), steps=50, method="rk4")
    rf2 = train(RectifiedFlow(map_tensors(lambda t, _: t.clone(), rf1.model), k=2), z0, z1, iters=500, g=g)

    probe = torch.randn(1024, 2, generator=g)
    s1, s2 = straightness(rf1, probe, steps=32), straightness(rf2, probe, steps=32)
    one1, one2 = sample(rf1, probe, steps=1), sample(rf2, probe, steps=1)
    e1, e2 = energy_distance(one1, held_out), energy_distance(one2, held_out)
    w1, w2 = (sliced_wasserstein(x, held_out, generator=torch.Generator().manual_seed(1)) for x in (one1, one2))
    # measured: S 1.21 -> 0.0054, energy 1.75 -> 0.047, SW 1.56 -> 0.33; between two draws of 1024
    # points from the data itself, energy 0.001-0.012 and SW 0.1-0.36
    assert s2 < 0.1 * s1 and s2 < 0.05, (s1, s2)
    assert e2 < 0.1 * e1 and e2 < 0.08, (e1, e2)
    assert w2 < 0.5 * w1 and w2 < 0.5, (w1, w2)


def test_bad_arguments_are_refused_by_name():
    rf, x = RectifiedFlow(lambda x, t: x), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="steps=0"):
        sample(rf, x, steps=0)
    with pytest.raises(ValueError, match="steps=-1"):
        straightness(rf, x, steps=-1)
    with pytest.raises(ValueError, match="`t`"):
        loss(rf, x, x, t=torch.tensor([-0.1, 0.2, 0.3]))
    with pytest.raises((ValueError, CheckError), match="x1"):  # by the shape check, or by loss when checks are off
        loss(rf, x, torch.zeros(3, 3))
