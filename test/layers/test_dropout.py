"""Dropout: zerotoml/layers/dropout.py (notes/layers.md#dropout)."""

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch
from zerotoml.layers.dropout import Dropout
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import set_training


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_statistics_fraction_zeroed_and_mean_preserved(p):
    x = torch.ones(50_000, dtype=torch.float64)
    y = forward(Dropout(p), x, generator=torch.Generator().manual_seed(0))
    zeroed = (y == 0).double().mean().item()
    # binomial standard error sqrt(p(1-p)/n) <= 0.0023: 5 standard errors
    assert abs(zeroed - p) < 0.012
    assert abs(y.mean().item() - 1.0) < 0.012 / (1 - p)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))


def test_gradient_is_the_mask_scaled():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = forward(Dropout(0.3), x, generator=torch.Generator().manual_seed(1))
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, (y != 0).double() / 0.7)


def test_seeded_generator_is_deterministic():
    x = torch.randn(4, 50)
    a = forward(Dropout(0.5), x, generator=torch.Generator().manual_seed(3))
    b = forward(Dropout(0.5), x, generator=torch.Generator().manual_seed(3))
    c = forward(Dropout(0.5), x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = forward(Dropout(0.5), x)
    torch.manual_seed(5)
    assert torch.equal(d, forward(Dropout(0.5), x))  # the global RNG without a generator


def test_eval_and_p_zero_are_the_identity():
    x = torch.randn(3, 7)
    assert forward(Dropout(0.5, training=False), x) is x
    assert forward(set_training(Dropout(0.5), False), x) is x
    assert forward(Dropout(0.0), x) is x


def test_from_torch_keeps_p_and_mode_and_matches_in_eval():
    assert from_torch(nn.Dropout(0.2)) == Dropout(0.2, True)
    module = nn.Dropout(0.4).eval()
    assert from_torch(module) == Dropout(0.4, False)
    assert_matches_torch(module, [torch.randn(3, 4, dtype=torch.float64)])


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_p_outside_unit_interval_is_refused(p):
    with pytest.raises(ValueError, match=rf"p={p}; expected a probability in \[0, 1\)"):
        Dropout(p)
