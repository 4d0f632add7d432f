"""zerotoml/engine/kernels.py: every kernel the fast engine swaps in gives the reference
formula's values and gradients (float64, 1e-12), masked rows included; and a GPT's loss and
gradients are the same under both engines."""

import math

import pytest
import torch

from zerotoml import engine, forward, loss, value_and_grad
from zerotoml.layers.activation import gelu, log_softmax, silu, softmax
from zerotoml.layers.attention import attend, causal_additive
from zerotoml.layers.embedding import Embedding
from zerotoml.layers.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from zerotoml.losses import cross_entropy
from zerotoml.transformers import GPT

f64 = torch.float64


def _both(fn, *xs, tol=1e-12):
    """fn's output and gradients under the reference engine, then the fast one: equal."""
    out = []
    for name in ("reference", "fast"):
        with engine.use(name):
            inputs = [x.detach().requires_grad_(x.is_floating_point()) for x in xs]
            y = fn(*inputs)
            δ = torch.linspace(-1, 1, y.numel(), dtype=f64).reshape(y.shape)
            wants = [x for x in inputs if x.requires_grad]
            out.append((y, torch.autograd.grad(y, wants, δ)))
    (y0, g0), (y1, g1) = out
    torch.testing.assert_close(y1, y0, atol=tol, rtol=tol)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def _randn(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding(padding_idx):
    ids = torch.tensor([[0, 2, 4, 2], [1, 1, 3, 0]])
    _both(lambda W: forward(Embedding(W, padding_idx), ids), _randn(5, 3))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    _both(lambda x: gelu(x, approximate), 3 * _randn(4, 9))


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
def test_batch_norm_over_training_steps_then_eval(momentum, track):
    """Values, gradients and the running statistics after three training steps, then eval."""
    states = []
    for name in ("reference", "fast"):
        with engine.use(name):
            m = BatchNorm.init(3, momentum=momentum, track_running_stats=track, dtype=f64)
            for i in range(3):
                x = _randn(4, 3, 2, 2, seed=i).requires_grad_()
                w = m.weight.detach().requires_grad_()
                y = forward(BatchNorm(w, m.bias, m.running_mean, m.running_var, m.num_batches_tracked, m.eps,
                                      m.momentum, True), x)
                gx, gw = torch.autograd.grad((y * _randn(4, 3, 2, 2, seed=9)).sum(), (x, w))
            ev = forward(BatchNorm(m.weight, m.bias, m.running_mean, m.running_var, m.num_batches_tracked, m.eps,
                                   m.momentum, False), _randn(4, 3, 2, 2, seed=5))
            states.append((y, gx, gw, ev, m.running_mean, m.running_var, m.num_batches_tracked))
    for a, b in zip(*states):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)


def test_silu():
    _both(silu, 3 * _randn(4, 9))


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(affine):
    x = _randn(2, 6, 3, 4)
    if affine:
        _both(lambda x, w, b: forward(GroupNorm(w, b, 3), x), x, _randn(6, seed=1), _randn(6, seed=2))
    else:
        _both(lambda x: forward(GroupNorm(None, None, 2), x), x)


@pytest.mark.parametrize("eps", [None, 1e-5])
def test_rms_norm(eps):
    _both(lambda x, w: forward(RMSNorm(w, (2, 5), eps), x), _randn(3, 2, 5), _randn(2, 5, seed=1))
    _both(lambda x: forward(RMSNorm(None, (5,), eps), x), _randn(3, 5))


@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_and_log_softmax(dim):
    _both(lambda x: softmax(x, dim), _randn(4, 5))
    _both(lambda x: log_softmax(x, dim), _randn(4, 5))


def test_softmax_of_a_row_masked_everywhere_is_zero_in_both_engines():
    x = _randn(3, 4)
    x[1] = -math.inf
    for name in ("reference", "fast"):
        with engine.use(name):
            xr = x.clone().requires_grad_()
            p = softmax(xr, -1)
            (g,) = torch.autograd.grad((p * _randn(3, 4, seed=1)).sum(), xr)
        assert torch.equal(p[1], torch.zeros(4, dtype=f64)), name
        assert torch.isfinite(g).all() and torch.equal(g[1], torch.zeros(4, dtype=f64)), name
    _both(lambda x: softmax(x, -1), x)


@pytest.mark.parametrize("shape", [(6,), (3, 6)])
@pytest.mark.parametrize("affine", ["both", "gain", "none"])
def test_layer_norm(shape, affine):
    w = _randn(*shape, seed=1) if affine != "none" else None
    b = _randn(*shape, seed=2) if affine == "both" else None
    x = _randn(2, 5, *shape)
    if w is None:
        _both(lambda x: forward(LayerNorm(None, None, shape), x), x)
    elif b is None:
        _both(lambda x, w: forward(LayerNorm(w, None, shape), x), x, w)
    else:
        _both(lambda x, w, b: forward(LayerNorm(w, b, shape), x), x, w, b)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"reduction": "none"},
                                {"weight": True}])
def test_cross_entropy(kw):
    t = torch.tensor([[1, -100, 4], [0, 7, 2]])
    if kw.get("weight"):
        kw = {"weight": torch.rand(8, dtype=f64, generator=torch.Generator().manual_seed(3))}
    _both(lambda z: cross_entropy(z.transpose(1, 2), t, **kw), _randn(2, 3, 8))


def test_cross_entropy_refuses_bad_targets_and_reductions_under_the_fast_engine_too():
    with engine.use("fast"):
        with pytest.raises(IndexError, match="class 9, outside \\[0, 5\\)"):
            cross_entropy(torch.randn(2, 5), torch.tensor([1, 9]))
        with pytest.raises(ValueError, match="reduction='avg'"):
            cross_entropy(torch.randn(2, 5), torch.tensor([1, 2]), reduction="avg")


def _mask(kind, q, k):
    if kind is None:
        return None, False
    if kind == "causal":
        return causal_additive(q, k, f64), q == k
    m = torch.zeros(2, 1, q, k, dtype=f64)
    m[0, 0, :, -2:] = -math.inf
    m[1, 0, 1] = -math.inf  # a query row that sees no key
    return m, False


@pytest.mark.parametrize("kind", [None, "causal", "padding"])
@pytest.mark.parametrize("q,k", [(5, 5), (3, 5)])
def test_attention(kind, q, k):
    mask, is_causal = _mask(kind, q, k)

    def f(Q, K, V):
        return attend(Q, K, V, mask, need_weights=False, is_causal=is_causal)[0]

    _both(f, _randn(2, 3, q, 4), _randn(2, 3, k, 4, seed=1), _randn(2, 3, k, 6, seed=2))


def test_attention_with_weights_asked_for_stays_with_the_formula():
    with engine.use("fast"):
        o, w = attend(_randn(1, 2, 3, 4), _randn(1, 2, 3, 4, seed=1), _randn(1, 2, 3, 4, seed=2))
    assert w is not None and w.shape == (1, 2, 3, 3)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_a_gpt_loss_and_gradients(positions):
    m = GPT.init(11, 8, 16, 2, 2, dropout=0.0, positions=positions, generator=torch.Generator().manual_seed(1),
                 dtype=f64)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    results = []
    for name in ("reference", "fast"):
        with engine.use(name):
            results.append(value_and_grad(loss, m, idx[:, :-1], idx[:, 1:]))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, atol=1e-12, rtol=1e-12)
    for a, b in zip(torch.utils._pytree.tree_leaves(g1), torch.utils._pytree.tree_leaves(g0)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
