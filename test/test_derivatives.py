"""zerotoml/derivatives.py: the hand-derived gradients equal autograd's through torch's own
kernels (first and second derivatives, float64); without autograd the plain value runs."""

import math

import pytest
import torch
import torch.nn.functional as F

from zerotoml import forward
from zerotoml.derivatives import derived
from zerotoml.layers.activation import gelu, log_softmax, softmax
from zerotoml.layers.attention import _softmax as masked_softmax
from zerotoml.layers.norm import LayerNorm

f64 = torch.float64


def _x(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def _layer_norm(x, w, b):
    return forward(LayerNorm(w, b, (x.shape[-1],)), x)


CASES = {  # ours, torch's, inputs
    "gelu tanh": (lambda x: gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh"), lambda: [_x(3, 7) * 3]),
    "gelu erf": (lambda x: gelu(x), F.gelu, lambda: [_x(3, 7) * 3]),
    "softmax": (lambda x: softmax(x, 0), lambda x: torch.softmax(x, 0), lambda: [_x(4, 5)]),
    "log_softmax": (lambda x: log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), lambda: [_x(4, 5)]),
    "layer norm": (_layer_norm, lambda x, w, b: F.layer_norm(x, (6,), w, b),
                   lambda: [_x(2, 3, 6), _x(6, seed=1), _x(6, seed=2)]),
}


@pytest.mark.parametrize("name", CASES)
def test_first_and_second_derivatives_equal_torch(name):
    ours, theirs, make = CASES[name]
    xs = [x.detach().requires_grad_() for x in make()]
    y1, y2 = ours(*xs), theirs(*xs)
    torch.testing.assert_close(y1, y2, atol=1e-12, rtol=1e-12)
    δ = torch.randn(y1.shape, dtype=f64, generator=torch.Generator().manual_seed(9))
    g1 = torch.autograd.grad(y1, xs, δ, create_graph=True)
    g2 = torch.autograd.grad(y2, xs, δ, create_graph=True)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    # second derivatives: the gradient of Σ (∂L/∂x)² with respect to every input
    # (a layer norm's bias does not reach them: None on both sides)
    h1 = torch.autograd.grad(sum((g * g).sum() for g in g1), xs, allow_unused=True)
    h2 = torch.autograd.grad(sum((g * g).sum() for g in g2), xs, allow_unused=True)
    for a, b in zip(h1, h2):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert torch.autograd.gradgradcheck(ours, xs)


def test_attention_softmax_zeroes_dead_rows_with_zero_gradient():
    s = _x(2, 3, 4)
    mask = torch.zeros(2, 3, 4, dtype=f64)
    mask[1, 2] = -math.inf  # a row with every key masked
    w = masked_softmax(s + mask)
    assert torch.equal(w[1, 2], torch.zeros(4, dtype=f64))
    live = torch.softmax((s + mask)[0], -1)
    torch.testing.assert_close(w[0], live, atol=1e-12, rtol=1e-12)
    (g,) = torch.autograd.grad((w * torch.arange(24.0, dtype=f64).reshape(2, 3, 4)).sum(), s)
    assert torch.equal(g[1, 2], torch.zeros(4, dtype=f64)) and torch.isfinite(g).all()


def test_without_autograd_the_value_runs_and_arguments_pass_through():
    calls = []

    def value(x, k):
        calls.append(k)
        return x * k, ()

    f = derived(value, lambda g, y, extras, x, k: (g * k, None))
    x = torch.ones(3, dtype=f64)
    assert torch.equal(f(x, 2.0), 2 * x) and calls == [2.0]
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(xr, 3.0).sum(), xr)
    assert torch.equal(g, torch.full((3,), 3.0, dtype=f64))
    with torch.no_grad():
        assert not f(xr, 3.0).requires_grad


def test_changing_a_saved_input_in_place_is_caught():
    x = _x(5)
    y = gelu(x, "tanh")
    with torch.no_grad():
        x.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
