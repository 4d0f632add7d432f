"""zerotoml/kernels.py: with FUSED on, torch's kernels give the default path's values and
gradients (float64, 1e-12), and the switch reads its environment variables strictly."""

import pytest
import torch

from zerotoml import forward, kernels, loss, step, value_and_grad
from zerotoml.kernels import read_switch
from zerotoml.layers.activation import gelu
from zerotoml.layers.norm import LayerNorm
from zerotoml.losses import cross_entropy
from zerotoml.transformers import GPT
from zerotoml.tree import params as zt_params, replace_params as zt_replace

f64 = torch.float64


def _both(fn, *xs, monkeypatch):
    """fn's output and gradients with FUSED off, then on."""
    out = []
    for fused in (False, True):
        monkeypatch.setattr(kernels, "FUSED", fused)
        inputs = [x.detach().requires_grad_(x.is_floating_point()) for x in xs]
        y = fn(*inputs)
        δ = torch.linspace(-1, 1, y.numel(), dtype=f64).reshape(y.shape)
        wants = [x for x in inputs if x.requires_grad]
        out.append((y, torch.autograd.grad(y, wants, δ)))
    (y0, g0), (y1, g1) = out
    torch.testing.assert_close(y1, y0, atol=1e-12, rtol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_layer_norm_gelu_and_cross_entropy(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=f64, generator=g)
    w, b = torch.randn(8, dtype=f64, generator=g), torch.randn(8, dtype=f64, generator=g)
    _both(lambda x, w, b: forward(LayerNorm(w, b, (8,)), x), x, w, b, monkeypatch=monkeypatch)
    _both(lambda x: gelu(x, "tanh"), 3 * x, monkeypatch=monkeypatch)
    _both(lambda x: gelu(x), 3 * x, monkeypatch=monkeypatch)
    t = torch.tensor([[1, -100, 4], [0, 7, 2]])
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"weight": torch.rand(8, dtype=f64, generator=g)}):
        _both(lambda z: cross_entropy(z.transpose(1, 2), t, **kw), x, monkeypatch=monkeypatch)


def test_a_gpt_loss_and_gradients(monkeypatch):
    m = GPT.init(11, 8, 16, 2, 2, dropout=0.0, generator=torch.Generator().manual_seed(1), dtype=f64)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    results = []
    for fused in (False, True):
        monkeypatch.setattr(kernels, "FUSED", fused)
        results.append(value_and_grad(loss, m, idx[:, :-1], idx[:, 1:]))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, atol=1e-12, rtol=1e-12)
    for a, b in zip(torch.utils._pytree.tree_leaves(g1), torch.utils._pytree.tree_leaves(g0)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_bad_targets_are_refused_on_the_fused_path_too(monkeypatch):
    monkeypatch.setattr(kernels, "FUSED", True)
    with pytest.raises(IndexError, match="class 9, outside \\[0, 5\\)"):
        cross_entropy(torch.randn(2, 5), torch.tensor([1, 9]))


def test_switch_reads_its_variables(monkeypatch):
    monkeypatch.setenv("ZEROTOML_FUSED", "on")
    monkeypatch.delenv("ZEROTOML_FUSED_ATTENTION", raising=False)
    assert read_switch("ZEROTOML_FUSED", "ZEROTOML_FUSED_ATTENTION")
    monkeypatch.setenv("ZEROTOML_FUSED", "0")
    monkeypatch.setenv("ZEROTOML_FUSED_ATTENTION", "1")
    assert read_switch("ZEROTOML_FUSED", "ZEROTOML_FUSED_ATTENTION")
    monkeypatch.setenv("ZEROTOML_FUSED", "fast")
    with pytest.raises(ValueError, match="ZEROTOML_FUSED='fast': expected 1/0"):
        read_switch("ZEROTOML_FUSED")


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_adam_steps_equal_the_default_path(name, amsgrad, monkeypatch):
    """torch's fused kernel against the listing of notes/optimizers.md, float64, with a decay
    mask (two parameter groups), over five steps."""
    import zerotoml.optim as optim

    cls = getattr(optim, name)
    results = []
    for fused in (False, True):
        monkeypatch.setattr(kernels, "FUSED", fused)
        m = GPT.init(11, 8, 16, 1, 2, dropout=0.0, generator=torch.Generator().manual_seed(5), dtype=f64)
        opt = cls.init(m, lr=0.01, weight_decay=0.1, amsgrad=amsgrad, decay=lambda n, p: p.dim() >= 2)
        g = torch.Generator().manual_seed(6)
        for _ in range(5):
            grads = zt_replace(m, [torch.randn(p.shape, generator=g, dtype=f64) for p in zt_params(m)])
            m = step(opt, m, grads)
        results.append(zt_params(m))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_fused_switch_turns_on_the_convolution_fast_path(monkeypatch):
    """kernels.FUSED selects torch's conv kernels too; values and gradients as the einsum's."""
    import zerotoml.layers.conv as conv
    from zerotoml.layers import Conv, ConvTranspose

    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 7, 6, dtype=f64, generator=g)
    for layer in (Conv.init(4, 6, (3, 2), stride=2, padding=((1, 0), (1, 1)), groups=2, generator=g, dtype=f64),
                  ConvTranspose.init(4, 6, (3, 3), stride=2, padding=1, generator=g, dtype=f64)):
        monkeypatch.setattr(conv, "FAST", False)
        monkeypatch.setattr(kernels, "FUSED", False)
        assert not conv.fast()
        _both(lambda x, W: forward(type(layer)(**{**vars(layer), "W": W}), x), x, layer.W, monkeypatch=monkeypatch)
    monkeypatch.setattr(kernels, "FUSED", True)
    assert conv.fast()
