"""Activations: zerotoml/layers/activation.py (notes/layers.md#activations). Level 3 against torch."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zerotoml import forward, from_torch
from zerotoml.layers import activation as A
from zerotoml.testing import assert_matches_torch

EXTREME = torch.tensor([-1000.0, -40.0, -1.0, -1e-8, 0.0, 1e-8, 0.5, 3.0, 40.0, 1000.0], dtype=torch.float64)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([EXTREME, torch.randn(30, generator=g, dtype=torch.float64) * 4]).reshape(5, 8)


FUNCTIONS = [
    (A.relu, F.relu, {}),
    (A.sigmoid, torch.sigmoid, {}),
    (A.tanh, torch.tanh, {}),
    (A.silu, F.silu, {}),
    (A.gelu, F.gelu, {}),
    (A.gelu, F.gelu, {"approximate": "tanh"}),
    (A.softmax, F.softmax, {"dim": -1}),
    (A.softmax, F.softmax, {"dim": 0}),
    (A.log_softmax, F.log_softmax, {"dim": -1}),
    (A.log_softmax, F.log_softmax, {"dim": 0}),
]


@pytest.mark.parametrize("ours,theirs,kw", FUNCTIONS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_function_values_and_gradients_match_torch_with_extreme_inputs(ours, theirs, kw):
    x = inputs()
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yt = ours(xo, **kw), theirs(xt, **kw)
    torch.testing.assert_close(yo, yt, atol=1e-12, rtol=1e-12)
    cot = torch.randn(yt.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (go,), (gt,) = torch.autograd.grad(yo, xo, cot), torch.autograd.grad(yt, xt, cot)
    assert torch.isfinite(go).all()
    torch.testing.assert_close(go, gt, atol=1e-12, rtol=1e-12)


def test_softmax_of_huge_logits_is_finite_and_sums_to_one():
    z = torch.tensor([[1e4, 1e4 - 1.0, -1e4]], dtype=torch.float64)
    p = A.softmax(z)
    torch.testing.assert_close(p.sum(-1), torch.ones(1, dtype=torch.float64))
    assert torch.isfinite(A.log_softmax(z)).all()


@pytest.mark.parametrize("module", [nn.ReLU(), nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Sigmoid(), nn.Tanh(),
                                    nn.Softmax(dim=1), nn.Softmax(dim=-1), nn.LogSoftmax(dim=2)],
                         ids=repr)
def test_layers_match_torch(module):
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    assert_matches_torch(module, [x], atol=1e-12, rtol=1e-12)


def test_float32_keeps_float32():
    x = torch.randn(4, 3)
    y = forward(from_torch(nn.GELU()), x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.gelu(x))


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="approximate='fast'"):
        A.gelu(torch.zeros(2), "fast")
    with pytest.raises(ValueError, match="dim=None"):
        from_torch(nn.Softmax())
    with pytest.raises(ValueError, match="unknown name 'swish'"):
        A.activation("swish")
    assert A.activation("silu") == A.SiLU()


# ------------------------------------------------------- the hand-derived gradients

from zerotoml.layers.activation import gelu, gelu_vjp, log_softmax, log_softmax_vjp, softmax, softmax_vjp  # noqa: E402

_f64 = torch.float64


def _first_and_second(f, vjp, x):
    """The hand-derived vjp against autograd's: first derivatives, and the second (the
    gradient of a function of the first derivative), float64."""
    x = x.detach().requires_grad_()
    g = torch.randn(x.shape, dtype=_f64, generator=torch.Generator().manual_seed(3))
    (auto,) = torch.autograd.grad(f(x), x, g, create_graph=True)
    hand = vjp(g, x)
    torch.testing.assert_close(hand, auto, atol=1e-12, rtol=1e-12)
    w = torch.randn(x.shape, dtype=_f64, generator=torch.Generator().manual_seed(4))
    (auto2,) = torch.autograd.grad((auto * w).sum(), x)
    (hand2,) = torch.autograd.grad((hand * w).sum(), x)
    torch.testing.assert_close(hand2, auto2, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_vjp_is_autograds_first_and_second_derivative(approximate):
    x = 3 * torch.randn(5, 7, dtype=_f64, generator=torch.Generator().manual_seed(0))
    _first_and_second(lambda x: gelu(x, approximate), lambda g, x: gelu_vjp(g, x, approximate), x)


@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_and_log_softmax_vjps_are_autograds_derivatives(dim):
    x = torch.randn(4, 6, dtype=_f64, generator=torch.Generator().manual_seed(1))
    _first_and_second(lambda x: softmax(x, dim), lambda g, x: softmax_vjp(g, softmax(x, dim), dim), x)
    _first_and_second(lambda x: log_softmax(x, dim), lambda g, x: log_softmax_vjp(g, log_softmax(x, dim), dim), x)


def test_softmax_of_a_fully_masked_row_is_zero_with_zero_gradient():
    x = torch.randn(3, 4, dtype=_f64, generator=torch.Generator().manual_seed(2))
    x[1] = -float("inf")
    x.requires_grad_()
    p = softmax(x)
    assert torch.equal(p[1].detach(), torch.zeros(4, dtype=_f64))
    torch.testing.assert_close(p[0], torch.softmax(x[0], -1), atol=1e-15, rtol=1e-15)
    (g,) = torch.autograd.grad((p * torch.arange(12.0, dtype=_f64).reshape(3, 4)).sum(), x)
    assert torch.isfinite(g).all() and torch.equal(g[1], torch.zeros(4, dtype=_f64))
