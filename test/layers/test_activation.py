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
