"""Losses: zerotoml/losses.py (notes/layers.md#losses). Values and gradients against
torch.nn.functional in float64, over several configurations each."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from zerotoml import losses as L

f64 = torch.float64


def compare(ours, theirs, tensors, kwargs, torch_kwargs=None, atol=1e-12, rtol=1e-10):
    """Values and the gradients of every floating input agree; returns our value."""
    a = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    b = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    yo = ours(*a, **kwargs)
    yt = theirs(*b, **(kwargs if torch_kwargs is None else torch_kwargs))
    assert yo.shape == yt.shape
    torch.testing.assert_close(yo, yt, atol=atol, rtol=rtol, equal_nan=True)
    wrt = [i for i, t in enumerate(a) if t.requires_grad]
    if yt.requires_grad and torch.isfinite(yt).all():
        cot = torch.randn(yt.shape, generator=torch.Generator().manual_seed(0), dtype=f64)
        go = torch.autograd.grad(yo, [a[i] for i in wrt], cot, allow_unused=True)
        gt = torch.autograd.grad(yt, [b[i] for i in wrt], cot, allow_unused=True)
        for i, x, y in zip(wrt, go, gt):
            x = torch.zeros_like(a[i]) if x is None else x
            y = torch.zeros_like(b[i]) if y is None else y
            torch.testing.assert_close(x, y, atol=atol, rtol=rtol, msg=lambda m, i=i: f"gradient {i}: {m}")
    return yo


def scores_and_targets(shape, C, seed, ignore):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape[0], C, *shape[1:], generator=g, dtype=f64) * 3
    y = torch.randint(0, C, shape, generator=g)
    if ignore and y.numel() > 1:
        y.view(-1)[:: 2] = -7
    return z, y


REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


@settings(max_examples=30, deadline=None)
@given(shape=st.sampled_from([(4,), (3, 2), (2, 2, 3)]), C=st.integers(2, 5), reduction=REDUCTIONS,
       smoothing=st.sampled_from([0.0, 0.1, 0.3]), weighted=st.booleans(), ignore=st.booleans(),
       seed=st.integers(0, 1000))
def test_cross_entropy_class_indices_matches_torch(shape, C, reduction, smoothing, weighted, ignore, seed):
    z, y = scores_and_targets(shape, C, seed, ignore)
    weight = torch.rand(C, generator=torch.Generator().manual_seed(seed), dtype=f64) + 0.5 if weighted else None
    kw = dict(weight=weight, ignore_index=-7, reduction=reduction, label_smoothing=smoothing)
    compare(L.cross_entropy, F.cross_entropy, [z, y], kw)


def test_cross_entropy_unbatched_and_all_ignored():
    z = torch.randn(5, dtype=f64)
    compare(L.cross_entropy, F.cross_entropy, [z, torch.tensor(3)], dict(label_smoothing=0.2))
    zz, yy = torch.randn(2, 4, dtype=f64), torch.full((2,), -100)
    out = compare(L.cross_entropy, F.cross_entropy, [zz, yy], dict(label_smoothing=0.1))
    assert torch.isnan(out)  # 0/0, as torch


@settings(max_examples=15, deadline=None)
@given(shape=st.sampled_from([(4,), (3, 2), (2, 2, 3)]), C=st.integers(2, 5), reduction=REDUCTIONS,
       smoothing=st.sampled_from([0.0, 0.25]), weighted=st.booleans(), seed=st.integers(0, 1000))
def test_cross_entropy_probability_targets_matches_torch(shape, C, reduction, smoothing, weighted, seed):
    z, _ = scores_and_targets(shape, C, seed, False)
    q = torch.softmax(torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=f64), dim=1)
    weight = torch.linspace(0.5, 2, C, dtype=f64) if weighted else None
    compare(L.cross_entropy, F.cross_entropy, [z, q],
            dict(weight=weight, reduction=reduction, label_smoothing=smoothing))


@settings(max_examples=15, deadline=None)
@given(shape=st.sampled_from([(5,), (3, 2), (2, 1, 3)]), C=st.integers(2, 4), reduction=REDUCTIONS,
       weighted=st.booleans(), ignore=st.booleans(), seed=st.integers(0, 1000))
def test_nll_loss_matches_torch(shape, C, reduction, weighted, ignore, seed):
    z, y = scores_and_targets(shape, C, seed, ignore)
    logp = torch.log_softmax(z, dim=1)
    weight = torch.linspace(0.5, 2, C, dtype=f64) if weighted else None
    compare(L.nll_loss, F.nll_loss, [logp, y], dict(weight=weight, ignore_index=-7, reduction=reduction))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_mse_loss_matches_torch(reduction, shape):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(shape, generator=g, dtype=f64), torch.randn(shape, generator=g, dtype=f64)
    compare(L.mse_loss, F.mse_loss, [a, b], dict(reduction=reduction))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted,pos", [(False, False), (True, False), (False, True), (True, True)])
def test_bce_with_logits_matches_torch_with_extreme_logits(reduction, weighted, pos):
    g = torch.Generator().manual_seed(1)
    x = torch.tensor([[-800.0, -30.0, -1.0, 0.0], [0.0, 2.0, 30.0, 800.0], [0.3, -0.2, 5.0, -5.0]], dtype=f64)
    y = torch.rand(x.shape, generator=g, dtype=f64)
    y[0, :2] = 1.0
    y[1, 2:] = 0.0
    kw = dict(reduction=reduction,
              weight=torch.rand(3, 1, generator=g, dtype=f64) if weighted else None,
              pos_weight=torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=f64) if pos else None)
    out = compare(L.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, [x, y], kw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction, log_target):
    g = torch.Generator().manual_seed(2)
    logp = torch.log_softmax(torch.randn(4, 5, generator=g, dtype=f64), dim=-1)
    q = torch.softmax(torch.randn(4, 5, generator=g, dtype=f64), dim=-1)
    target = q.log() if log_target else q
    compare(L.kl_div, F.kl_div, [logp, target], dict(reduction=reduction, log_target=log_target))


def test_kl_div_batchmean_is_the_kl_divergence():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=f64)
    q = torch.tensor([[0.25, 0.75], [0.9, 0.1]], dtype=f64)
    kl = (q * (q / p).log()).sum(-1).mean()  # KL(q || p) per row, averaged
    torch.testing.assert_close(L.kl_div(p.log(), q, reduction="batchmean"), kl)
    torch.testing.assert_close(L.kl_div(p.log(), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=f64),
                                        reduction="sum"), -(p[0, 1].log() + p[1, 0].log()))


def test_label_smoothing_matches_the_smoothed_distribution():
    z = torch.randn(3, 4, dtype=f64)
    y = torch.tensor([0, 3, 1])
    q = torch.full((3, 4), 0.2 / 4, dtype=f64)
    q[torch.arange(3), y] += 0.8
    torch.testing.assert_close(L.cross_entropy(z, y, label_smoothing=0.2), L.cross_entropy(z, q))


@pytest.mark.parametrize("fn", [L.cross_entropy, L.nll_loss])
@pytest.mark.parametrize("bad", [5, -1, 9])
def test_targets_out_of_range_name_value_and_classes(fn, bad):
    with pytest.raises(IndexError, match=rf"class {bad}, outside \[0, 5\) for 5 classes"):
        fn(torch.randn(3, 5), torch.tensor([0, bad, 2]))


def test_bad_arguments_are_named():
    z = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"`target` has shape \(2, 3\).*expected \(2, 4\)"):
        L.cross_entropy(z, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="dtype torch.bool"):
        L.nll_loss(torch.randn(2, 3), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="reduction='avg'"):
        L.mse_loss(torch.zeros(2), torch.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match=r"`weight` has shape \(2,\); expected \(3,\)"):
        L.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), weight=torch.ones(2))
    with pytest.raises(ValueError, match=r"`target` has shape \(3,\); expected the shape of `input`, \(2,\)"):
        L.binary_cross_entropy_with_logits(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="label_smoothing=1.5"):
        L.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), label_smoothing=1.5)
