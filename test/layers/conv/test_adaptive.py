"""AdaptiveAvgPool and GlobalAvgPool (zerotoml/layers/conv/adaptive.py) against torch.nn, level 3:
same output and input gradients in float64, under whichever engine the environment selects."""

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotoml import forward, from_torch
from zerotoml.layers.conv import AdaptiveAvgPool, AvgPool, GlobalAvgPool, adaptive_avg_matrix
from zerotoml.testing import assert_matches_torch

ADA = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def _x(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(n=st.integers(1, 3), data=st.data(), seed=st.integers(0, 2**16))
def test_adaptive_avg_pool_matches_torch(n, data, seed):
    i = tuple(data.draw(st.integers(1, 9)) for _ in range(n))
    out = tuple(data.draw(st.one_of(st.integers(1, 11), st.none())) for _ in range(n))  # above i: overlap
    module = ADA[n](out if n > 1 else out[0] or i[0])
    assert_matches_torch(module, [_x((2, 3, *i), seed)], atol=1e-12, rtol=1e-12)


def test_adaptive_avg_pool_of_a_divisor_is_avg_pool_with_kernel_i_over_o():
    x = _x((2, 3, 12, 10), 0)
    assert adaptive_avg_matrix(12, 4, dtype=torch.float64).sum(-1).allclose(torch.ones(4, dtype=torch.float64))
    y = forward(AdaptiveAvgPool.init((4, 5)), x)
    torch.testing.assert_close(y, forward(AvgPool.init((3, 2)), x), atol=1e-14, rtol=0)


def test_global_avg_pool_matches_adaptive_avg_pool_to_one_then_flatten():
    torch_way = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(-3))  # (b, c, h, w) -> (b, c)
    x = _x((2, 4, 5, 7), 1)
    assert_matches_torch(torch_way, [x], ours=GlobalAvgPool(dims=2), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(forward(GlobalAvgPool(dims=3), x[None]), x.mean(dim=(-3, -2, -1))[None])


def test_from_torch_keeps_the_output_size():
    assert from_torch(nn.AdaptiveAvgPool2d((None, 3))) == AdaptiveAvgPool((None, 3))
    assert from_torch(nn.AdaptiveAvgPool1d(4)) == AdaptiveAvgPool((4,))


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match=r"argument `x` has shape \(4,\); expected \(\*batch, 2 spatial axes"):
        forward(AdaptiveAvgPool.init(2, dims=2), torch.zeros(4))
    with pytest.raises(ValueError, match=r"output_size=\(0, 2\)"):
        AdaptiveAvgPool((0, 2))
    with pytest.raises(ValueError, match=r"GlobalAvgPool: dims=0; expected an int >= 1"):
        GlobalAvgPool(dims=0)
