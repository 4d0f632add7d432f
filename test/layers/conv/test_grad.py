"""Hand-derived convolution gradients: zerotoml/layers/conv/grad.py
(notes/cnn.md#why-the-transpose-is-the-gradient). Checked against torch.autograd through
F.conv{1,2,3}d and through `Conv` in float64, over random configurations including per-side
padding."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotoml import forward
from zerotoml.layers.conv import Conv
from zerotoml.layers.conv.arithmetic import conv_output_size, effective_kernel_size
from zerotoml.layers.conv.grad import conv_bias_grad, conv_input_grad, conv_weight_grad

CONV_F = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@st.composite
def grad_configs(draw):
    n = draw(st.integers(1, 3))
    kmax = {1: 4, 2: 3, 3: 2}[n]
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(n))
    pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(n))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    if draw(st.booleans()):  # depthwise
        c_in, c_out = groups, groups * draw(st.integers(1, 2))
    else:
        c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    spatial = tuple(max(1, effective_kernel_size(k, d) - lo - hi) + draw(st.integers(0, 4 if n < 3 else 2))
                    for k, d, (lo, hi) in zip(kernel, dilation, pairs))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(draw(st.integers(1, 2)), c_in, *spatial, generator=g, dtype=torch.float64)
    W = torch.randn(c_out, c_in // groups, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(c_out, generator=g, dtype=torch.float64)
    return dict(n=n, x=x, W=W, b=b, stride=stride, pairs=pairs, dilation=dilation, groups=groups, seed=seed)


def torch_grads(c):
    """torch.autograd through F.conv on the explicitly padded input, for a random cotangent."""
    x, W, b = (c[k].clone().requires_grad_() for k in ("x", "W", "b"))
    flat = tuple(p for lo_hi in reversed(c["pairs"]) for p in lo_hi)
    y = CONV_F[c["n"]](F.pad(x, flat), W, b, c["stride"], 0, c["dilation"], c["groups"])
    δ = torch.randn(y.shape, generator=torch.Generator().manual_seed(c["seed"] + 7), dtype=torch.float64)
    return (δ, *torch.autograd.grad(y, (x, W, b), δ))


@settings(max_examples=50, deadline=None)
@given(c=grad_configs())
def test_conv_input_grad_matches_autograd(c):
    """∂L/∂x = Cᵀ ∂L/∂y: the transposed convolution of the output gradient."""
    δ, gx, _, _ = torch_grads(c)
    ours = conv_input_grad(c["W"], δ, tuple(c["x"].shape), c["stride"], c["pairs"], c["dilation"], c["groups"])
    torch.testing.assert_close(ours, gx, atol=1e-11, rtol=1e-11)


@settings(max_examples=50, deadline=None)
@given(c=grad_configs())
def test_conv_weight_grad_matches_autograd(c):
    """∂L/∂W: the correlation of the padded input with the output gradient."""
    δ, _, gW, gb = torch_grads(c)
    ours = conv_weight_grad(c["x"], δ, tuple(c["W"].shape), c["stride"], c["pairs"], c["dilation"], c["groups"])
    torch.testing.assert_close(ours, gW, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(conv_bias_grad(δ), gb, atol=1e-11, rtol=1e-11)


@settings(max_examples=50, deadline=None)
@given(c=grad_configs())
def test_autograd_through_conv_matches(c):
    """The three agree: torch's autograd of F.conv, autograd through our Conv (the window
    view and the einsum under the reference engine), and the closed forms above."""
    δ, gx, gW, gb = torch_grads(c)
    x, W, b = (c[k].clone().requires_grad_() for k in ("x", "W", "b"))
    y = forward(Conv(W, b, c["stride"], c["pairs"], c["dilation"], c["groups"]), x)
    for ours, theirs in zip(torch.autograd.grad(y, (x, W, b), δ), (gx, gW, gb)):
        torch.testing.assert_close(ours, theirs, atol=1e-11, rtol=1e-11)


def test_unread_input_rows_get_zero_gradient():
    """With stride 2 and a 5-wide input, a 2-wide kernel never reads the last column: its
    gradient is 0 and Relationship 14's a = 1 restores the size."""
    x, W = torch.randn(1, 1, 5, dtype=torch.float64), torch.randn(1, 1, 2, dtype=torch.float64)
    δ = torch.randn(1, 1, conv_output_size(5, 2, 2), dtype=torch.float64)
    gx = conv_input_grad(W, δ, (1, 1, 5), stride=2)
    assert gx.shape == (1, 1, 5) and gx[0, 0, -1] == 0
    torch.testing.assert_close(gx, torch.autograd.grad(F.conv1d(x.requires_grad_(), W, stride=2), x, δ)[0])


def test_grad_out_of_the_wrong_size_is_rejected():
    with pytest.raises(ValueError, match=r"`grad_out` has spatial shape \(4, 4\); the convolution of an input "
                                         r"\(1, 2, 6, 6\) gives \(6, 6\)"):
        conv_input_grad(torch.randn(3, 2, 3, 3), torch.randn(1, 3, 4, 4), (1, 2, 6, 6), padding=1)
    with pytest.raises(ValueError, match="gives"):
        conv_weight_grad(torch.randn(1, 2, 6, 6), torch.randn(1, 3, 5, 5), (3, 2, 3, 3))
