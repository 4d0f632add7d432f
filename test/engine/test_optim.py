"""zerotoml/engine/optim.py: the fast engine's Adam and AdamW (torch's fused kernel, or the
foreach form where it is missing) step for step equal to the reference listing of
zerotoml/optim/adam.py, float64, with a decay mask (two parameter groups), over five steps."""

import pytest
import torch

import zerotoml.optim as optim
from zerotoml import engine, step
from zerotoml.transformers import GPT
from zerotoml.tree import params, replace_params

f64 = torch.float64


def _five_steps(name, amsgrad, engine_name):
    with engine.use(engine_name):
        m = GPT.init(11, 8, 16, 1, 2, dropout=0.0, generator=torch.Generator().manual_seed(5), dtype=f64)
        opt = getattr(optim, name).init(m, lr=0.01, weight_decay=0.1, amsgrad=amsgrad,
                                        decay=lambda n, p: p.dim() >= 2)
        g = torch.Generator().manual_seed(6)
        for _ in range(5):
            grads = replace_params(m, [torch.randn(p.shape, generator=g, dtype=f64) for p in params(m)])
            m = step(opt, m, grads)
        return params(m), opt


def _equal(name, amsgrad):
    (p0, o0), (p1, o1) = _five_steps(name, amsgrad, "reference"), _five_steps(name, amsgrad, "fast")
    for a, b in zip(p0 + o0.m + o0.v, p1 + o1.m + o1.v):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10)
    assert int(o0.t) == int(o1.t) == 5


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_steps_equal_the_reference(name, amsgrad):
    _equal(name, amsgrad)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_foreach_steps_equal_the_reference_where_the_fused_kernel_is_missing(name, monkeypatch):
    monkeypatch.delattr(torch, "_fused_adam_")
    monkeypatch.delattr(torch, "_fused_adamw_")
    calls = []
    real = engine.optim.adam_foreach
    monkeypatch.setattr(engine.optim, "adam_foreach", lambda *a: calls.append(1) or real(*a))
    _equal(name, amsgrad=False)
    assert calls, "the foreach form did not run"


def test_the_reference_loop_where_neither_is_there(monkeypatch):
    monkeypatch.delattr(torch, "_fused_adamw_")
    monkeypatch.delattr(torch, "_foreach_addcdiv_")
    _equal("AdamW", amsgrad=False)
