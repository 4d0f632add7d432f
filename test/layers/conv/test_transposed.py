"""ConvTranspose: zerotoml/layers/conv/transposed.py (notes/cnn.md#transposed-convolution).
Level 3 against torch.nn.ConvTranspose{1,2,3}d in float64, and the paper's claim that the
transposed convolution is the gradient of a convolution with respect to its input, under
whichever engine the environment selects (ZEROTOML_ENGINE)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zerotoml import engine, forward, from_torch
from zerotoml.generic import CheckError
from zerotoml.layers.conv import Conv, ConvTranspose, stretch
from zerotoml.layers.conv.arithmetic import conv_transpose_output_size
from zerotoml.testing import assert_matches_torch

CONV_T = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
CONV_T_F = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@st.composite
def transposed_configs(draw, max_dims=3):
    n = draw(st.integers(1, max_dims))
    kmax = {1: 4, 2: 3, 3: 2}[n]
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(n))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    if draw(st.booleans()):  # depthwise
        c_in, c_out = groups, groups * draw(st.integers(1, 2))
    else:
        c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    spatial = []
    for k, s, p, d, a in zip(kernel, stride, padding, dilation, output_padding):
        i = 1
        while conv_transpose_output_size(i, k, s, p, d, a) < 1:
            i += 1
        spatial.append(i + draw(st.integers(0, 3 if n < 3 else 1)))
    return dict(n=n, c_in=c_in, c_out=c_out, kernel=kernel, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                batch=draw(st.integers(1, 2)), spatial=tuple(spatial), seed=draw(st.integers(0, 2**16)))


def torch_conv_t(c):
    torch.manual_seed(c["seed"])
    return CONV_T[c["n"]](c["c_in"], c["c_out"], c["kernel"], c["stride"], c["padding"], c["output_padding"],
                          c["groups"], c["bias"], c["dilation"]).double()


def x64(c):
    g = torch.Generator().manual_seed(c["seed"] + 1)
    return torch.randn(c["batch"], c["c_in"], *c["spatial"], generator=g, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(c=transposed_configs())
def test_conv_transpose_matches_torch(c):
    assert_matches_torch(torch_conv_t(c), [x64(c)])


@pytest.mark.parametrize("n,kernel,stride,padding,output_padding,dilation,groups,c_in,c_out", [
    (2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, 3, 2),   # the paper's figure 4.6: i = 6, k = 3, s = 2, p = 1
    (2, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 4, 4, 4),   # depthwise, half padding (Relationship 10)
    (1, (2,), (5,), (0,), (4,), (1,), 1, 2, 3),             # stride larger than the kernel
    (3, (2, 1, 3), (2, 1, 2), (1, 0, 2), (1, 0, 0), (1, 2, 1), 2, 2, 4),
    (2, (3, 3), (1, 1), (3, 4), (0, 0), (2, 1), 1, 1, 1),   # p' = d(k − 1) − p < 0: the input is cropped
])
def test_conv_transpose_named_cases_match_torch(n, kernel, stride, padding, output_padding, dilation, groups,
                                                c_in, c_out):
    torch.manual_seed(0)
    module = CONV_T[n](c_in, c_out, kernel, stride, padding, output_padding, groups, True, dilation).double()
    x = torch.randn(2, c_in, *(6 + j for j in range(n)), dtype=torch.float64)
    assert_matches_torch(module, [x])


@settings(max_examples=30, deadline=None)
@given(c=transposed_configs(max_dims=2), extra=st.data())
def test_output_size_keyword_matches_torch(c, extra):
    module = torch_conv_t({**c, "output_padding": (0,) * c["n"]})
    want = tuple(conv_transpose_output_size(i, k, s, p, d, 0) + extra.draw(st.integers(0, s - 1))
                 for i, k, s, p, d in zip(c["spatial"], c["kernel"], c["stride"], c["padding"], c["dilation"]))
    assume(min(want) >= 1)
    assert_matches_torch(module, [x64(c)], kwargs=dict(output_size=want))


@settings(max_examples=30, deadline=None)
@given(c=transposed_configs(max_dims=2), extra=st.data())
def test_per_side_padding_is_a_crop_of_the_unpadded_transpose(c, extra):
    """Asymmetric padding, which torch's layer lacks: crop p_lo and p_hi − a off the output of
    torch's unpadded transposed convolution."""
    pairs = tuple((extra.draw(st.integers(0, 2)), extra.draw(st.integers(0, 2))) for _ in range(c["n"]))
    module = torch_conv_t(c)
    m = ConvTranspose(module.weight.detach(), module.bias if module.bias is None else module.bias.detach(),
                      c["stride"], pairs, c["output_padding"], c["dilation"], c["groups"])
    x = x64(c)
    if any(conv_transpose_output_size(i, k, s, p, d, a) < 1 for i, k, s, p, d, a in
           zip(c["spatial"], c["kernel"], c["stride"], pairs, c["dilation"], c["output_padding"])):
        with pytest.raises(ValueError, match="gives output size"):
            forward(m, x)
        return
    full = CONV_T_F[c["n"]](x, module.weight, None, c["stride"], 0, 0, c["groups"], c["dilation"])
    # a − hi > 0 adds zeros at the high end, then lo and hi − a > 0 are cropped
    grow = tuple(q for a, (lo, hi) in zip(reversed(c["output_padding"]), reversed(pairs)) for q in (0, max(a - hi, 0)))
    full = F.pad(full, grow)
    full = full[(..., *(slice(lo, full.shape[2 + j] - max(hi - a, 0))
                        for j, ((lo, hi), a) in enumerate(zip(pairs, c["output_padding"]))))]
    if module.bias is not None:
        full = full + module.bias.reshape(-1, *(1,) * c["n"])
    for name in engine.ENGINES:
        with engine.use(name):
            torch.testing.assert_close(forward(m, x), full, atol=1e-12, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(c=transposed_configs().filter(lambda c: all(a < s for a, s in zip(c["output_padding"], c["stride"]))))
def test_transposed_convolution_is_the_input_gradient_of_convolution(c):
    """The paper, section 4.2: with the same kernel, the transposed convolution of g is
    ∂<conv(x), g>/∂x = Cᵀ g (its W layout is exactly that convolution's). The paper's a
    (output_padding) is below s; torch also allows a < d, which is no convolution's gradient."""
    module = torch_conv_t(c)
    m, g = from_torch(module), x64(c)
    y = forward(m, g)
    conv = Conv(m.W, None, m.stride, m.padding, m.dilation, m.groups)
    x = torch.zeros(y.shape, dtype=torch.float64, requires_grad=True)
    (vjp,) = torch.autograd.grad(forward(conv, x), x, g)
    expected = y if m.b is None else y - m.b.reshape(-1, *(1,) * c["n"])
    torch.testing.assert_close(vjp, expected, atol=1e-12, rtol=1e-12)


def test_stretch_inserts_s_minus_one_zeros():
    x = torch.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    got = stretch(x, (2, 3))
    assert got.shape == (1, 1, 3, 7)
    assert got[0, 0].tolist() == [[1, 0, 0, 2, 0, 0, 3], [0] * 7, [4, 0, 0, 5, 0, 0, 6]]


def test_init_is_torch_default():
    g = torch.Generator().manual_seed(0)
    m = ConvTranspose.init(8, 12, (3, 4), stride=2, groups=2, generator=g, dtype=torch.float64)
    bound = 1 / math.sqrt(12 // 2 * 3 * 4)  # torch takes fan_in from the weight's second axis
    assert m.W.shape == (8, 6, 3, 4) and m.b.shape == (12,)
    assert m.W.abs().max() <= bound and m.W.abs().max() > 0.95 * bound and m.b.abs().max() <= bound
    assert torch.nn.ConvTranspose2d(8, 12, (3, 4), groups=2).weight.abs().max() <= bound
    assert m.stride == (2, 2) and m.output_padding == (0, 0)


def test_errors_name_the_sizes():
    m = ConvTranspose.init(4, 6, (3, 3), groups=2)
    with pytest.raises((ValueError, CheckError), match="c_in"):
        forward(m, torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"output_padding=\(2, 0\) must be smaller than stride=\(2, 2\) or "
                                         r"dilation=\(1, 1\)"):
        ConvTranspose.init(2, 2, (3, 3), stride=2, output_padding=(2, 0))
    with pytest.raises(ValueError, match="padding='same'; expected an int"):
        ConvTranspose.init(2, 2, (3, 3), padding="same")
    with pytest.raises(ValueError, match="groups=4 does not divide c_out=6"):
        ConvTranspose.init(8, 6, (3, 3), groups=4)
    with pytest.raises(ValueError, match=r"axis 0 of `x` .* has size 1, which gives output size -2"):
        forward(ConvTranspose.init(1, 1, (2,), padding=2), torch.randn(1, 1, 1))
    with pytest.raises(ValueError, match=r"output_size 9 on spatial axis 0 is outside \[7, 7\]"):
        forward(ConvTranspose.init(1, 1, (3,)), torch.randn(1, 1, 5), output_size=(9,))


def test_from_torch_keeps_layout():
    module = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=1, output_padding=(1, 0), groups=2)
    m = from_torch(module)
    assert m.W.shape == (4, 3, 3, 2) and m.W.dtype == torch.float32
    torch.testing.assert_close(m.W, module.weight.detach())
    assert (m.stride, m.padding, m.output_padding, m.groups) == ((2, 1), ((1, 1), (1, 1)), (1, 0), 2)
