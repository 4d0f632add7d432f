"""The fast engine's convolution and pooling kernels (zerotoml/engine/conv.py) equal the
reference formulas of zerotoml/layers/conv/: values, input gradients and weight/bias gradients
in float64, each engine chosen explicitly, over 1-3 spatial axes, strides, paddings (per side,
"same", negative), dilations, groups, output padding and the pooling options."""

import pytest
import torch

from zerotoml import engine, forward
from zerotoml.layers.conv import (AdaptiveAvgPool, AvgPool, Conv, ConvTranspose, MaxPool, convolve)


def _both(f, *tensors, seed=0):
    """``f(*tensors)`` and the gradients of <f, u> for a random u (the same for both) with
    respect to each tensor, under the reference and then the fast engine."""
    runs = []
    for name in ("reference", "fast"):
        with engine.use(name):
            xs = [t.detach().clone().requires_grad_() for t in tensors]
            y = f(*xs)
            u = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
            runs.append((y, *torch.autograd.grad(y, xs, u)))
    return runs


def assert_engines_agree(f, *tensors, tol=1e-12):
    reference, fast = _both(f, *tensors)
    for what, a, b in zip(("value", *(f"gradient {j}" for j in range(len(tensors)))), fast, reference):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, what=what: f"{what}: {m}")


def _randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ convolution

CONVS = {  # n, c_in, c_out, kernel, stride, padding, dilation, groups, bias, spatial
    "1d": (1, 2, 3, (3,), (2,), 1, (1,), 1, True, (9,)),
    "1d same, dilated": (1, 2, 2, (3,), (1,), "same", (2,), 1, False, (8,)),
    "2d per side, dilated, groups": (2, 4, 6, (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), 2, True, (7, 6)),
    "2d same, even kernel": (2, 2, 4, (4, 2), (1, 1), "same", (1, 1), 1, True, (6, 5)),
    "2d depthwise": (2, 3, 6, (3, 3), (1, 1), 1, (1, 1), 3, True, (6, 6)),
    "2d stride above kernel": (2, 2, 3, (2, 3), (4, 3), 0, (1, 1), 1, False, (9, 8)),
    "2d 1x1": (2, 3, 5, (1, 1), (1, 1), "valid", (1, 1), 1, True, (4, 5)),
    "3d": (3, 2, 4, (2, 3, 1), (2, 1, 3), (1, 0, 2), (2, 1, 1), 2, True, (5, 4, 6)),
    "3d per side": (3, 2, 2, (2, 2, 2), (1, 1, 1), ((0, 1), (1, 0), (1, 1)), (1, 1, 1), 1, True, (3, 4, 3)),
}


@pytest.mark.parametrize("case", CONVS.values(), ids=CONVS.keys())
def test_conv_kernel_equals_the_reference(case):
    n, c_in, c_out, kernel, stride, padding, dilation, groups, bias, spatial = case
    m = Conv.init(c_in, c_out, kernel, stride, padding, dilation, groups, bias=bias, dtype=torch.float64,
                  generator=torch.Generator().manual_seed(1))
    x = _randn(2, c_in, *spatial, seed=2)
    if bias:
        assert_engines_agree(lambda x, W, b: forward(Conv(W, b, m.stride, m.padding, m.dilation, m.groups), x),
                             x, m.W, m.b)
    else:
        assert_engines_agree(lambda x, W: forward(Conv(W, None, m.stride, m.padding, m.dilation, m.groups), x),
                             x, m.W)


def test_conv_kernel_crops_a_negative_padding_as_the_reference():
    """Negative padding (a crop, which the transposed convolution's reference makes) and
    padding that differs per side go through F.pad before torch's kernel."""
    W, b, x = _randn(4, 1, 3, 2, seed=3), _randn(4, seed=4), _randn(2, 2, 8, 7, seed=5)
    padding, stride, dilation = ((-1, 2), (1, -2)), (1, 2), (2, 1)
    with engine.use("reference"):
        want = convolve(x, W, b, stride, padding, dilation, 2)
    torch.testing.assert_close(engine.kernels.conv(x, W, b, stride, padding, dilation, 2), want,
                               atol=1e-12, rtol=1e-12)


TRANSPOSED = {  # n, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups, spatial
    "2d, the paper's figure 4.6": (2, 3, 2, (3, 3), (2, 2), 1, (1, 1), (1, 1), 1, (3, 3)),
    "1d stride above kernel": (1, 2, 3, (2,), (5,), 0, (4,), (1,), 1, (4,)),
    "2d per side, groups": (2, 2, 4, (3, 3), (2, 1), ((1, 0), (0, 2)), (1, 0), (1, 1), 2, (4, 5)),
    "2d output padding below the dilation": (2, 2, 2, (3, 3), (1, 1), 0, (1, 0), (2, 1), 1, (4, 4)),
    "2d p' < 0: a crop": (2, 1, 1, (3, 3), (1, 1), (3, 4), (0, 0), (2, 1), 1, (6, 7)),
    "3d": (3, 2, 4, (2, 1, 3), (2, 1, 2), (1, 0, 2), (1, 0, 0), (1, 2, 1), 2, (3, 3, 3)),
}


@pytest.mark.parametrize("case", TRANSPOSED.values(), ids=TRANSPOSED.keys())
def test_conv_transpose_kernel_equals_the_reference(case):
    n, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups, spatial = case
    m = ConvTranspose.init(c_in, c_out, kernel, stride, padding, output_padding, groups, dilation=dilation,
                           dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x = _randn(2, c_in, *spatial, seed=7)

    def f(x, W, b):
        return forward(ConvTranspose(W, b, m.stride, m.padding, m.output_padding, m.dilation, m.groups), x)

    assert_engines_agree(f, x, m.W, m.b)


def test_conv_transpose_kernel_with_output_size_equals_the_reference():
    m = ConvTranspose.init(2, 3, (3, 2), stride=(3, 2), padding=(1, 0), dtype=torch.float64,
                           generator=torch.Generator().manual_seed(8))
    x = _randn(1, 2, 4, 3, seed=9)
    for size in ((10, 6), (11, 7), (12, 6)):
        assert_engines_agree(lambda x, W: forward(ConvTranspose(W, m.b, m.stride, m.padding), x, output_size=size),
                             x, m.W)


# ------------------------------------------------------------------ pooling

MAX = {  # kernel, stride, padding, dilation, ceil_mode, input shape
    "1d": ((3,), (2,), (1,), (1,), False, (2, 3, 9)),
    "2d tiles": ((2, 2), (2, 2), (0, 0), (1, 1), False, (2, 3, 8, 7)),
    "2d ceil, padding": ((3, 3), (2, 2), (1, 1), (1, 1), True, (2, 3, 8, 7)),
    "2d dilated, stride above kernel": ((2, 3), (3, 4), (1, 1), (2, 2), False, (2, 2, 9, 11)),
    "3d ceil": ((2, 2, 3), (2, 1, 2), (1, 0, 1), (1, 2, 1), True, (1, 2, 5, 6, 7)),
    "2d, no leading axes": ((2, 2), (1, 2), (1, 0), (1, 1), False, (5, 6)),
    "2d, three leading axes": ((3, 2), (2, 2), (1, 1), (1, 1), True, (2, 2, 3, 7, 6)),
    "1d window only in the padding": ((2,), (1,), (1,), (2,), False, (2, 3, 1)),
}


@pytest.mark.parametrize("case", MAX.values(), ids=MAX.keys())
@pytest.mark.parametrize("ties", [False, True], ids=["no ties", "ties"])
def test_max_pool_kernel_equals_the_reference(case, ties):
    kernel, stride, padding, dilation, ceil_mode, shape = case
    x = _randn(*shape, seed=10)
    x = x.round() if ties else x  # many ties: the gradient goes to the first maximum in both
    assert_engines_agree(lambda x: forward(MaxPool(kernel, stride, padding, dilation, ceil_mode), x), x)


def test_max_pool_kernel_steps_aside_where_a_window_reads_only_padding():
    """i = 1, k = 2, d = 2, p = 1: the one window's taps are −1 and 1, both padding."""
    assert engine.kernels.max_pool(_randn(2, 3, 1), (2,), (1,), (1,), (2,), False) is None
    assert engine.kernels.max_pool(_randn(2, 3, 4), (2,), (1,), (1,), (2,), False) is not None


AVG = {  # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, input shape
    "1d": ((3,), (2,), (1,), False, True, None, (2, 3, 9)),
    "1d divisor (no avg_pool1d for it)": ((3,), (2,), (1,), False, True, 2, (2, 3, 9)),
    "2d tiles": ((2, 2), (2, 2), (0, 0), False, True, None, (2, 3, 8, 6)),
    "2d ceil, padding not counted": ((3, 3), (2, 2), (1, 1), True, False, None, (2, 3, 8, 7)),
    "2d ceil, padding counted": ((3, 2), (2, 3), (1, 1), True, True, None, (2, 3, 7, 8)),
    "2d divisor": ((2, 3), (1, 2), (1, 1), False, True, 5, (2, 2, 6, 7)),
    "3d": ((2, 2, 3), (2, 1, 2), (1, 0, 1), True, False, None, (1, 2, 5, 6, 7)),
    "3d smaller than the kernel (avg_pool3d refuses)": ((3, 2, 2), (1, 1, 1), (1, 0, 0), False, True, None,
                                                        (1, 2, 2, 4, 4)),
}


@pytest.mark.parametrize("case", AVG.values(), ids=AVG.keys())
def test_avg_pool_kernel_equals_the_reference(case):
    kernel, stride, padding, ceil_mode, count_include_pad, divisor, shape = case
    m = AvgPool(kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    assert_engines_agree(lambda x: forward(m, x), _randn(*shape, seed=11))


@pytest.mark.parametrize("output_size,shape", [((3,), (2, 3, 7)), ((4, 2), (2, 3, 9, 5)), ((None, 3), (3, 6, 7)),
                                               ((2, 3, 2), (1, 2, 5, 7, 4)), ((5, 4), (2, 3, 3, 4))],
                         ids=["1d", "2d", "2d None", "3d", "2d larger than the input"])
def test_adaptive_avg_pool_kernel_equals_the_reference(output_size, shape):
    assert_engines_agree(lambda x: forward(AdaptiveAvgPool(output_size), x), _randn(*shape, seed=12))
