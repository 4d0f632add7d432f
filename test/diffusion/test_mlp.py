"""The 2-D denoiser: shapes, class conditioning, and a short training that brings the
ε-prediction loss close to the best any network can reach (the mixture's exact ε)."""

import pytest
import torch

import zerotoml as zt
from zerotoml import forward
from zerotoml.diffusion.embeddings import drop_labels
from zerotoml.diffusion.mixture import GaussianMixture, noise
from zerotoml.diffusion.mlp import MLPDenoiser
from zerotoml.optim import Adam
from zerotoml.tree import param_count


def test_shapes_with_and_without_labels():
    g = torch.Generator().manual_seed(0)
    m = MLPDenoiser.init(2, 32, 3, generator=g)
    x = torch.randn(5, 2, generator=g)
    assert forward(m, x, torch.arange(5)).shape == (5, 2)
    assert forward(m, x, 7).shape == (5, 2)  # one time for every example
    assert param_count(m) == (2 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 2 + 2) + 2 * (32 * 32 + 32)
    c = MLPDenoiser.init(3, 16, 2, num_classes=4, null_class=True, generator=g)
    x3, t = torch.randn(5, 3, generator=g), torch.full((5,), 0.5)
    assert forward(c, x3, t, class_labels=torch.tensor([0, 1, 2, 3, 4])).shape == (5, 3)
    torch.testing.assert_close(forward(c, x3, t), forward(c, x3, t, class_labels=torch.full((5,), 4)))
    assert set(drop_labels(c, torch.zeros(100, dtype=torch.long), 1.0).tolist()) == {4}
    with pytest.raises(ValueError, match="no class embedding"):
        forward(m, x, 1, class_labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="depth=0"):
        MLPDenoiser.init(2, 8, 0)


def test_it_learns_the_noise_of_a_2d_mixture():
    """DDPM's simple loss ||ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)||² on four Gaussians, 300 Adam
    steps: from about 1 (ε_θ ≈ 0) to within 0.04 of the loss of the exact ε (Tweedie)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    corners = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    data = GaussianMixture(torch.full((4,), 0.25), corners, 0.02 * torch.eye(2).repeat(4, 1, 1))
    T = 50
    ᾱ = torch.cumprod(1 - torch.linspace(1e-3, 0.3, T), 0)

    def batch(n):
        x0, t, ε = data.sample(n, generator=g), torch.randint(0, T, (n,), generator=g), torch.randn(n, 2, generator=g)
        return ᾱ[t, None].sqrt() * x0 + (1 - ᾱ[t, None]).sqrt() * ε, t, ε

    def loss(m, x, t, ε):
        return ((forward(m, x, t) - ε) ** 2).mean()

    x_val, t_val, ε_val = batch(4096)
    best = torch.empty_like(ε_val)
    for i in range(T):
        at = t_val == i
        best[at] = noise(data, x_val[at], ᾱ[i].sqrt().item(), (1 - ᾱ[i]).sqrt().item())
    floor = ((best - ε_val) ** 2).mean().item()
    m = MLPDenoiser.init(2, 64, 3, generator=g)
    opt = Adam.init(m, lr=1e-2)
    with torch.no_grad():
        before = loss(m, x_val, t_val, ε_val).item()
    steps = 300
    for k in range(steps):  # the rate decays linearly to 0
        _, grads = zt.value_and_grad(loss, m, *batch(256))
        zt.step(opt, m, grads, lr=1e-2 * (1 - k / steps))
    with torch.no_grad():
        after = loss(m, x_val, t_val, ε_val).item()
    assert before > 0.8 and 0.1 < floor < 0.3
    assert after < floor + 0.04, (before, after, floor)
