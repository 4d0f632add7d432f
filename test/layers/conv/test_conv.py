"""Conv: zerotoml/layers/conv/conv.py (notes/cnn.md#convolution). Level 3 against
torch.nn.Conv{1,2,3}d in float64: values, input gradients and weight gradients, over random
configurations, under whichever engine the environment selects (ZEROTOML_ENGINE)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotoml import engine, forward, from_torch, load, save
from zerotoml.layers.conv import Conv
from zerotoml.layers.conv.arithmetic import effective_kernel_size
from zerotoml.testing import assert_matches_torch

CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}


@st.composite
def conv_configs(draw, max_dims=3):
    """Small random convolutions: odd sizes, dilation, groups (depthwise too), stride > kernel,
    padding as an int, per-axis ints, "same" or "valid"; inputs just large enough."""
    n = draw(st.integers(1, max_dims))
    kmax = {1: 4, 2: 3, 3: 2}[n]
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(n))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    if draw(st.booleans()):  # depthwise: one input channel per group
        c_in, c_out = groups, groups * draw(st.integers(1, 2))
    else:
        c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(n)) if kind != "same" else (1,) * n
    padding = {"int": draw(st.integers(0, 2)), "tuple": tuple(draw(st.integers(0, 2)) for _ in range(n)),
               "same": "same", "valid": "valid"}[kind]
    pads = (padding,) * n if isinstance(padding, int) else padding if isinstance(padding, tuple) else (0,) * n
    spatial = tuple(max(1, effective_kernel_size(k, d) - 2 * (p if kind in ("int", "tuple") else 0)) +
                    draw(st.integers(0, 4 if n < 3 else 2)) for k, d, p in zip(kernel, dilation, pads))
    return dict(n=n, c_in=c_in, c_out=c_out, kernel=kernel, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=draw(st.booleans()), batch=draw(st.integers(1, 2)),
                spatial=spatial, seed=draw(st.integers(0, 2**16)))


def torch_conv(c):
    torch.manual_seed(c["seed"])
    return CONV[c["n"]](c["c_in"], c["c_out"], c["kernel"], c["stride"], c["padding"], c["dilation"],
                        c["groups"], bias=c["bias"]).double()


def x64(c):
    g = torch.Generator().manual_seed(c["seed"] + 1)
    return torch.randn(c["batch"], c["c_in"], *c["spatial"], generator=g, dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@settings(max_examples=60, deadline=None)
@given(c=conv_configs())
def test_conv_matches_torch(c):
    """Autograd through the window view and the einsum gives torch's values, input gradients
    and weight/bias gradients."""
    assert_matches_torch(torch_conv(c), [x64(c)])


@st.composite
def asymmetric_configs(draw):
    c = draw(conv_configs(max_dims=2).filter(lambda c: c["padding"] not in ("same",)))
    pairs = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(c["n"]))
    spatial = tuple(max(1, effective_kernel_size(k, d) - lo - hi) + draw(st.integers(0, 3))
                    for k, d, (lo, hi) in zip(c["kernel"], c["dilation"], pairs))
    return {**c, "pairs": pairs, "spatial": spatial, "padding": 0}


def pad_then_conv(n, pairs):
    """The torch twin of per-side padding: F.pad, then an unpadded nn.Conv (whose weights
    from_torch reads as for any nn.Conv{n}d)."""
    flat = tuple(p for lo_hi in reversed(pairs) for p in lo_hi)
    return type(f"PadThenConv{n}d", (CONV[n],), {"forward": lambda self, x: CONV[n].forward(self, F.pad(x, flat))})


@settings(max_examples=40, deadline=None)
@given(c=asymmetric_configs())
def test_conv_asymmetric_padding_matches_torch(c):
    module = torch_conv(c)
    twin = pad_then_conv(c["n"], c["pairs"])(c["c_in"], c["c_out"], c["kernel"], c["stride"], 0, c["dilation"],
                                              c["groups"], bias=c["bias"]).double()
    twin.load_state_dict(module.state_dict())
    ours = Conv(module.weight.detach().clone(), None if module.bias is None else module.bias.detach().clone(),
                c["stride"], c["pairs"], c["dilation"], c["groups"])
    assert ours.padding == c["pairs"]
    assert_matches_torch(twin, [x64(c)], ours=ours)


@pytest.mark.parametrize("n,kernel,stride,padding,dilation,groups,c_in,c_out", [
    (2, (3, 3), (1, 1), 1, (1, 1), 4, 4, 8),        # depthwise, channel multiplier 2
    (2, (2, 3), (5, 4), 0, (1, 1), 1, 2, 3),        # stride larger than the kernel
    (1, (3,), (1,), "same", (3,), 1, 2, 2),         # "same" with dilation
    (2, (4, 2), (1, 1), "same", (1, 2), 1, 2, 2),   # "same", even kernel: the extra zero on the high side
    (3, (2, 3, 1), (2, 1, 3), (1, 0, 2), (2, 1, 1), 2, 4, 2),
    (2, (1, 1), (1, 1), "valid", (1, 1), 1, 3, 5),  # a 1x1 convolution is a Linear over channels
])
def test_conv_named_cases_match_torch(n, kernel, stride, padding, dilation, groups, c_in, c_out):
    torch.manual_seed(0)
    module = CONV[n](c_in, c_out, kernel, stride, padding, dilation, groups).double()
    x = torch.randn(2, c_in, *(7 + j for j in range(n)), dtype=torch.float64)
    assert_matches_torch(module, [x])


@pytest.mark.parametrize("groups,bias,padding", [(1, False, ((1, 0), (0, 2))), (2, True, ((2, 1), (1, 0)))])
def test_conv_second_derivatives(groups, bias, padding):
    """Autograd through the window view and the einsum (or torch's kernel) differentiates
    twice: gradcheck and gradgradcheck pass."""
    torch.manual_seed(0)
    m = Conv.init(groups, 2 * groups, (2, 3), stride=(2, 1), padding=padding, dilation=(1, 2), groups=groups,
                  bias=bias, dtype=torch.float64)
    x = torch.randn(1, groups, 4, 5, dtype=torch.float64, requires_grad=True)
    W = m.W.clone().requires_grad_()
    b = None if m.b is None else m.b.clone().requires_grad_()

    def f(x, W, *b):
        return forward(Conv(W, b[0] if b else None, m.stride, m.padding, m.dilation, m.groups), x)

    args = (x, W) if b is None else (x, W, b)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize("wanted", ["x", "W", "b", "x W"])
def test_any_subset_of_the_gradients_matches_torch(wanted):
    """Any subset of the gradients equals torch's (no ∂L/∂x for a network's input, no ∂L/∂W
    for a frozen weight)."""
    torch.manual_seed(1)
    module = torch.nn.Conv2d(4, 6, 3, stride=(1, 2), padding=(2, 1), groups=2).double()
    m = from_torch(module)
    x = torch.randn(3, 4, 7, 8, dtype=torch.float64)
    ours = {"x": x.clone(), "W": m.W.clone(), "b": m.b.clone()}
    theirs = {"x": x.clone(), "W": module.weight.detach().clone(), "b": module.bias.detach().clone()}
    for t in (*ours.values(), *theirs.values()):
        t.requires_grad_(any(t is d[k] for d in (ours, theirs) for k in wanted.split()))
    y = forward(Conv(ours["W"], ours["b"], m.stride, m.padding, m.dilation, m.groups), ours["x"])
    y_torch = F.conv2d(theirs["x"], theirs["W"], theirs["b"], module.stride, module.padding, 1, 2)
    torch.testing.assert_close(y, y_torch, atol=1e-12, rtol=1e-12)
    δ = torch.randn_like(y)
    names = wanted.split()
    got = torch.autograd.grad(y, [ours[k] for k in names], δ)
    want = torch.autograd.grad(y_torch, [theirs[k] for k in names], δ)
    for k, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=lambda msg, k=k: f"∂L/∂{k}: {msg}")


@pytest.mark.parametrize("name", engine.ENGINES)
def test_a_1x1_convolution_without_grad_leaves_its_input_alone(name):
    """A 1x1 convolution of a batch of one under no_grad, then another call: the caller's
    input is unchanged (the input is never taken as memory to write into)."""
    torch.manual_seed(7)
    c = from_torch(torch.nn.Conv2d(8, 8, 1))
    x = torch.randn(1, 8, 16, 16)
    x0 = x.clone()
    with engine.use(name), torch.no_grad():
        forward(c, x)
        forward(c, torch.randn(1, 8, 16, 16))
    assert torch.equal(x, x0)


def test_conv_init_is_torch_default():
    g = torch.Generator().manual_seed(0)
    m = Conv.init(12, 40, (3, 5), groups=4, generator=g, dtype=torch.float64)
    bound = 1 / math.sqrt(12 // 4 * 3 * 5)
    assert m.W.shape == (40, 3, 3, 5) and m.b.shape == (40,) and m.W.dtype == torch.float64
    assert m.W.abs().max() <= bound and m.b.abs().max() <= bound and m.W.abs().max() > 0.95 * bound
    assert abs(m.W.var().item() - bound**2 / 3) < 0.1 * bound**2 / 3
    assert m.stride == (1, 1) and m.padding == ((0, 0), (0, 0)) and m.dilation == (1, 1) and m.groups == 4
    t = torch.nn.Conv2d(12, 40, (3, 5), groups=4)
    assert t.weight.abs().max() <= bound  # the same bound torch draws from
    assert Conv.init(2, 2, 3, dims=1, bias=False).b is None
    assert Conv.init(2, 2, 3, dims=3).W.shape == (2, 2, 3, 3, 3)


def test_from_torch_keeps_dtype_layout_and_hyper_parameters():
    module = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding="valid", dilation=(1, 2), groups=2)
    m = from_torch(module)
    assert m.W.dtype == torch.float32 and m.W.shape == (6, 2, 3, 2)
    torch.testing.assert_close(m.W, module.weight.detach())  # the same layout: a copy
    assert (m.stride, m.padding, m.dilation, m.groups) == ((2, 1), ((0, 0), (0, 0)), (1, 2), 2)
    assert from_torch(torch.nn.Conv1d(1, 1, 4, padding="same")).padding == ((1, 2),)


def test_save_and_load_round_trip(tmp_path):
    m = Conv.init(3, 4, (3, 3), stride=2, padding=((1, 0), (2, 1)), dtype=torch.float64)
    save(m, tmp_path / "conv.safetensors")
    back = load(Conv.init(3, 4, (3, 3), stride=2, padding=((1, 0), (2, 1)), dtype=torch.float64),
                tmp_path / "conv.safetensors")
    torch.testing.assert_close(back.W, m.W, atol=0, rtol=0)
    assert back.padding == m.padding


# ------------------------------------------------------------------------- errors


def test_errors_name_the_sizes():
    m = Conv.init(4, 6, (3, 3), groups=2)
    with pytest.raises(ValueError, match=r"has 3 channels .* expects c_in=4"):
        forward(m, torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(1, 4, 8\); expected \(batch, c_in, 2 spatial axes\)"):
        forward(m, torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match=r"axis 1 of `x` .* has size 4, padded \(2, 2\) to 8, smaller than the "
                                         r"kernel: size 3 with dilation 4 spans 9"):
        forward(Conv.init(1, 1, (3, 3), padding=2, dilation=(1, 4)), torch.randn(1, 1, 8, 4))
    with pytest.raises(ValueError, match="groups=4 does not divide c_in=6"):
        Conv.init(6, 8, (3, 3), groups=4)
    with pytest.raises(ValueError, match=r"groups=3 must be a positive int dividing the channels \(W has shape \(4, 2, 3\)"):
        Conv(torch.randn(4, 2, 3), None, groups=3)
    with pytest.raises(ValueError, match="padding='half'; expected 'same', 'valid'"):
        Conv.init(1, 1, (3, 3), padding="half")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        Conv.init(1, 1, (3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="kernel_size=3 is an int"):
        Conv.init(1, 1, 3)
    with pytest.raises(ValueError, match=r"b has shape \(3,\); expected \(4,\)"):
        Conv(torch.randn(4, 2, 3), torch.randn(3))
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        from_torch(torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
