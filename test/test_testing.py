"""The level-3 comparison helper, zerotoml/testing.py (notes/layers.md#validation), must pass
the right twin and catch wrong ones."""

import pytest
import torch

from zerotoml.layers.linear import Linear
from zerotoml.testing import assert_matches_torch


def linear64(bias=True):
    torch.manual_seed(0)
    return torch.nn.Linear(5, 3, bias=bias).double()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(4,), (2, 3), ()])
def test_linear_matches_torch(bias, batch):
    x = torch.randn(*batch, 5, dtype=torch.float64)
    assert_matches_torch(linear64(bias), [x], atol=1e-12, rtol=1e-12)


def test_catches_wrong_values():
    m = linear64()
    wrong = Linear(m.weight.detach().t().clone() * 1.001, m.bias.detach().clone())
    with pytest.raises(AssertionError, match="output 0"):
        assert_matches_torch(m, [torch.randn(4, 5, dtype=torch.float64)], ours=wrong)


def test_catches_wrong_gradients():
    m = linear64()
    ours = Linear(m.weight.detach().t().clone(), m.bias.detach().clone())
    # same values, but a forward whose bias gradient is doubled
    from zerotoml.generic import generic, method

    @generic
    def twice_bias(model, x):
        """test generic"""

    @method
    def twice_bias(l: Linear, x: torch.Tensor) -> torch.Tensor:
        return x @ l.W + 2 * l.b - l.b.detach()

    with pytest.raises(AssertionError, match="parameter gradient b"):
        assert_matches_torch(m, [torch.randn(4, 5, dtype=torch.float64)], ours=ours, fn=twice_bias)
