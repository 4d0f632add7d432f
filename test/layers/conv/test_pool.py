"""MaxPool and AvgPool (zerotoml/layers/conv/pool.py) against torch.nn, level 3: same output
and input gradients in float64, over random configurations (odd sizes, stride above kernel,
padding, ceil_mode, count_include_pad, dilation), under whichever engine the environment
selects; and the output-size function against torch's shapes and the paper's worked examples."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zerotoml import forward, from_torch
from zerotoml.layers.conv import AvgPool, MaxPool, pool_output_shape, pool_output_size
from zerotoml.testing import assert_matches_torch

MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


@st.composite
def window(draw, n: int, dilation: bool):
    """Per-axis (i, k, s, p, d) with p <= k // 2 and an input at least nearly as large as the window."""
    ks, ss, ps, ds, ins = [], [], [], [], []
    for _ in range(n):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, 5))  # stride may exceed the kernel
        p = draw(st.integers(0, k // 2))
        d = draw(st.integers(1, 3)) if dilation else 1
        k_eff = d * (k - 1) + 1
        ks, ss, ps, ds = ks + [k], ss + [s], ps + [p], ds + [d]
        ins.append(draw(st.integers(max(1, k_eff - 2 * p - s + 1), k_eff - 2 * p + 6)))
    return tuple(ins), tuple(ks), tuple(ss), tuple(ps), tuple(ds)


def _every_window_touches_input(i, k, s, p, d, o) -> bool:
    """False when some dilated window has all its taps in the padding (torch: output −∞,
    and its backward adds that gradient to an element of the next channel)."""
    return all(any(0 <= a * s_ - p_ + κ * d_ < i_ for κ in range(k_)) for i_, k_, s_, p_, d_, o_ in
               zip(i, k, s, p, d, o) for a in range(o_))


def _x(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------ output sizes


def test_pool_output_size_gives_the_papers_worked_examples():
    # Relationship 7, figures 1.5/1.6: 3x3 pooling of a 5x5 input with unit strides -> 3x3
    assert pool_output_shape((5, 5), 3, 1) == (3, 3)
    # Relationship 6, figures 2.6/2.7: i = 5 and i = 6, k = 3, s = 2, p = 1 both give 3
    assert pool_output_size(5, 3, 2, 1) == pool_output_size(6, 3, 2, 1) == 3
    # Relationship 15, figure 5.1: k = 3, d = 2 on a 7x7 input, s = 1, p = 0 -> 3x3
    assert pool_output_shape((7, 7), 3, 1, 0, 2) == (3, 3)
    # ceil_mode keeps the partial last window: ⌈(6 − 3)/2⌉ + 1 = 3 against ⌊3/2⌋ + 1 = 2
    assert (pool_output_size(6, 3, 2), pool_output_size(6, 3, 2, ceil_mode=True)) == (2, 3)
    # ... unless it would start in the right padding: i = 5, k = 2, s = 2, p = 1
    assert pool_output_size(5, 2, 2, 1, ceil_mode=True) == 3


@settings(max_examples=150, deadline=None, derandomize=True)
@given(i=st.integers(1, 12), k=st.integers(1, 6), s=st.integers(1, 6), d=st.integers(1, 3),
       data=st.data(), ceil_mode=st.booleans())
def test_pool_output_size_matches_torch_shapes(i, k, s, d, data, ceil_mode):
    p = data.draw(st.integers(0, k // 2))
    o = pool_output_size(i, k, s, p, d, ceil_mode=ceil_mode)
    x = torch.zeros(1, 1, i)
    try:
        shape = F.max_pool1d(x, k, s, p, d, ceil_mode=ceil_mode).shape[-1]
    except RuntimeError:  # torch refuses a window that does not fit
        assert o < 1
        return
    assert o == shape
    if d == 1:
        assert o == F.avg_pool1d(x, k, s, p, ceil_mode=ceil_mode).shape[-1]


# ------------------------------------------------------------------ level 3


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(1, 3), data=st.data(), ceil_mode=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_matches_torch(n, data, ceil_mode, seed):
    i, k, s, p, d = data.draw(window(n, dilation=True))
    o = pool_output_shape(i, k, s, p, d, ceil_mode=ceil_mode)
    assume(min(o) >= 1 and _every_window_touches_input(i, k, s, p, d, o))
    module = MAX[n](k, s, p, d, ceil_mode=ceil_mode)
    x = _x((2, 3, *i), seed)  # continuous random values: no ties
    model = assert_matches_torch(module, [x], atol=1e-12, rtol=1e-12)
    assert model == MaxPool(k, s, p, d, ceil_mode)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 3), data=st.data(), ceil_mode=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_gradient_goes_to_the_first_of_tied_maxima_as_torch(n, data, ceil_mode, seed):
    i, k, s, p, d = data.draw(window(n, dilation=True))
    o = pool_output_shape(i, k, s, p, d, ceil_mode=ceil_mode)
    assume(min(o) >= 1 and _every_window_touches_input(i, k, s, p, d, o))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (2, 2, *i), generator=gen).double()  # many ties
    assert_matches_torch(MAX[n](k, s, p, d, ceil_mode=ceil_mode), [x], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("n,k,i,ceil_mode", [(2, (2, 2), (8, 6), False), (2, (2, 3), (7, 11), False),
                                           (2, (2, 2), (7, 7), True), (1, (3,), (10,), False),
                                           (3, (2, 1, 2), (5, 3, 4), False)])
def test_windows_that_tile_the_input_match_torch_with_ties(n, k, i, ceil_mode):
    """stride = kernel, no padding, no dilation: the windows are a reshape of the input (floor
    mode cuts off the rest), reduced one window axis at a time; ties go to the first maximum."""
    x = torch.randint(0, 3, (2, 3, *i), generator=torch.Generator().manual_seed(0)).double()
    assert_matches_torch(MAX[n](k, ceil_mode=ceil_mode), [x], atol=1e-12, rtol=1e-12)
    assert_matches_torch(AVG[n](k, ceil_mode=ceil_mode), [_x((2, 3, *i), 1)], atol=1e-12, rtol=1e-12)


def test_max_pool_window_all_in_padding_gives_minus_inf_and_no_gradient():
    # i = 1, k = 2, d = 2, p = 1: the one window has taps at −1 and 1, both padding
    module = nn.MaxPool1d(2, 1, 1, 2)
    x = _x((2, 3, 1), 0).requires_grad_()
    y = forward(from_torch(module), x)
    torch.testing.assert_close(y, module(x))
    assert torch.isneginf(y).all()
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(g, torch.zeros_like(x))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(1, 3), data=st.data(), ceil_mode=st.booleans(), count_include_pad=st.booleans(),
       divisor=st.sampled_from([None, None, None, 1, 5]), seed=st.integers(0, 2**16))
def test_avg_pool_matches_torch(n, data, ceil_mode, count_include_pad, divisor, seed):
    i, k, s, p, _ = data.draw(window(n, dilation=False))
    assume(min(pool_output_shape(i, k, s, p, ceil_mode=ceil_mode)) >= 1)
    assume(n < 3 or all(a >= b for a, b in zip(i, k)))  # torch's avg_pool3d alone refuses i < k
    extra = {} if n == 1 else {"divisor_override": divisor}  # AvgPool1d has no divisor_override
    module = AVG[n](k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad, **extra)
    model = assert_matches_torch(module, [_x((2, 3, *i), seed)], atol=1e-12, rtol=1e-12)
    assert (model.count_include_pad, model.divisor_override) == (count_include_pad, extra.get("divisor_override"))


def test_from_torch_keeps_every_hyper_parameter():
    assert from_torch(nn.MaxPool2d(3, padding=1, dilation=(2, 1), ceil_mode=True)) == MaxPool(
        (3, 3), (3, 3), (1, 1), (2, 1), True)
    assert from_torch(nn.AvgPool3d((1, 2, 3), 1, (0, 1, 1), True, False, 7)) == AvgPool(
        (1, 2, 3), (1, 1, 1), (0, 1, 1), True, False, 7)


# ------------------------------------------------------------------ clear errors


def test_return_indices_is_refused():
    with pytest.raises(NotImplementedError, match="return_indices=True is not supported"):
        from_torch(nn.MaxPool2d(2, return_indices=True))


def test_kernel_larger_than_the_padded_input_names_the_sizes():
    x = torch.zeros(1, 2, 3, 8)
    with pytest.raises(ValueError, match=r"along spatial axis 0 the padded input 3 \+ 2\*0 = 3 is smaller "
                                         r"than the window \(kernel_size=5, dilation=1: 5\)"):
        forward(MaxPool.init(5, dims=2), x)
    with pytest.raises(ValueError, match=r"padded input 3 \+ 2\*1 = 5 is smaller than the window "
                                         r"\(kernel_size=3, dilation=3: 7\)"):
        forward(MaxPool.init(3, 1, 1, 3, dims=2), x)
    with pytest.raises(ValueError, match=r"AvgPool: argument `x` has shape \(1, 2, 3, 8\)"):
        forward(AvgPool.init((2, 9), dims=2), x)


def test_bad_padding_and_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match=r"padding=\(2, 0\) along spatial axis 0 is 2, more than half of "
                                         r"kernel_size=\(3, 3\) \(3\); torch's rule is padding <= kernel_size // 2"):
        MaxPool.init(3, padding=(2, 0))
    with pytest.raises(ValueError, match=r"AvgPool: padding=\(1,\) along spatial axis 0 is 1, more than half of kernel_size=\(1,\)"):
        AvgPool.init(1, padding=1, dims=1)
    with pytest.raises(ValueError, match=r"MaxPool: stride=\(0, 1\); expected a tuple of 2 ints >= 1"):
        MaxPool.init(2, (0, 1))
    with pytest.raises(ValueError, match=r"MaxPool.init: no argument says how many spatial axes; pass dims"):
        MaxPool.init(2)
    with pytest.raises(ValueError, match=r"AvgPool.init: arguments disagree on \(kernel_size: 2, dims: 3\) how many spatial axes"):
        AvgPool.init((2, 2), dims=3)
