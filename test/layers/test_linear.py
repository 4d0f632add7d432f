"""Linear: zerotoml/layers/linear.py (notes/layers.md#linear). Level 3 against torch.nn.Linear."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotoml import forward, from_torch, shapes
from zerotoml.generic import ShapeError
from zerotoml.layers.linear import Linear
from zerotoml.testing import assert_matches_torch


@settings(max_examples=12, deadline=None)
@given(d_in=st.integers(1, 5), d_out=st.integers(1, 5), bias=st.booleans(),
       batch=st.lists(st.integers(1, 3), min_size=0, max_size=3), seed=st.integers(0, 2**16))
def test_linear_matches_torch(d_in, d_out, bias, batch, seed):
    torch.manual_seed(seed)
    module = torch.nn.Linear(d_in, d_out, bias=bias).double()
    x = torch.randn(*batch, d_in, dtype=torch.float64)
    assert_matches_torch(module, [x])


def test_init_bounds_shapes_and_dtype():
    g = torch.Generator().manual_seed(0)
    m = Linear.init(50, 40, generator=g, dtype=torch.float64)
    bound = 1 / math.sqrt(50)
    assert m.W.shape == (50, 40) and m.b.shape == (40,) and m.W.dtype == torch.float64
    assert m.W.abs().max() <= bound and m.b.abs().max() <= bound
    # uniform on [-bound, bound]: the extremes are nearly reached, the variance is bound²/3
    assert m.W.abs().max() > 0.95 * bound
    assert abs(m.W.var().item() - bound**2 / 3) < 0.1 * bound**2 / 3
    assert Linear.init(3, 2, bias=False).b is None


def test_from_torch_keeps_dtype_and_weight_layout():
    module = torch.nn.Linear(3, 2)  # float32
    m = from_torch(module)
    assert m.W.dtype == torch.float32 and m.W.shape == (3, 2)
    torch.testing.assert_close(m.W, module.weight.detach().t())


@pytest.mark.skipif(not shapes.CHECKS, reason="shape checks are off (ZEROTOML_CHECKS=0)")
def test_wrong_input_size_names_the_argument():
    m = Linear.init(3, 2)
    with pytest.raises(ShapeError, match="argument `x`"):
        forward(m, torch.randn(4, 5))
