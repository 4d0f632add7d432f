"""Schedules against torch.optim.lr_scheduler: lr_at(s, t) is param_groups[0]["lr"]
during the (t+1)-th step, for every t of a run of >= 30 steps."""

import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

from zerotoml import lr_at, step
from zerotoml.layers import Linear
from zerotoml.optim import AdamW, Constant, Cosine, LinearWarmup
from zerotoml.tree import params, replace_params


def torch_lrs(make_scheduler, lr, steps):
    """The rate torch.optim uses at each of `steps` steps, read from param_groups."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    scheduler = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros_like(p)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return out


def assert_schedule(s, expected):
    ours = [lr_at(s, t) for t in range(len(expected))]
    assert len(ours) >= 30
    for t, (a, b) in enumerate(zip(ours, expected)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"t={t}: lr_at={a}, torch={b}"


def test_constant_matches_torch():
    assert_schedule(Constant(0.3), torch_lrs(lambda opt: None, 0.3, 30))


@pytest.mark.parametrize("lr, warmup_steps, start_factor", [(0.1, 10, 1 / 3), (1e-3, 1, 0.5), (2.0, 29, 0.01), (0.5, 7, 1.0)])
def test_linear_warmup_matches_torch_linear_lr(lr, warmup_steps, start_factor):
    expected = torch_lrs(lambda opt: LinearLR(opt, start_factor, 1.0, total_iters=warmup_steps), lr, 40)
    assert_schedule(LinearWarmup(lr, warmup_steps, start_factor), expected)


@pytest.mark.parametrize("warmup_steps", [0, 1, 12])
def test_linear_warmup_from_zero_matches_torch_lambda_lr(warmup_steps):
    # torch's LinearLR refuses start_factor=0; the same ramp as a LambdaLR (as in HF transformers)
    expected = torch_lrs(lambda opt: LambdaLR(opt, lambda e: min(1.0, e / warmup_steps) if warmup_steps else 1.0), 0.2, 35)
    assert_schedule(LinearWarmup(0.2, warmup_steps), expected)
    assert lr_at(LinearWarmup(0.2, 12), 0) == 0.0


@pytest.mark.parametrize("lr, total_steps, min_lr, warmup_steps", [
    (0.1, 40, 0.0, 0), (0.3, 35, 0.01, 5), (1.0, 31, 0.2, 1), (3e-4, 50, 3e-5, 10)])
def test_cosine_matches_torch(lr, total_steps, min_lr, warmup_steps):
    def make(opt):
        cosine = CosineAnnealingLR(opt, T_max=total_steps - warmup_steps, eta_min=min_lr)
        if warmup_steps == 0:
            return cosine
        warmup = LambdaLR(opt, lambda e: e / warmup_steps)
        return SequentialLR(opt, [warmup, cosine], milestones=[warmup_steps])

    expected = torch_lrs(make, lr, total_steps + 1)
    s = Cosine(lr, total_steps, min_lr, warmup_steps)
    assert_schedule(s, expected)
    assert lr_at(s, warmup_steps) == lr
    # torch's cosine climbs back after T_max; ours stays at min_lr
    assert [lr_at(s, t) for t in range(total_steps, total_steps + 20)] == [min_lr] * 20


def test_schedule_drives_adamw_like_torch_scheduler():
    """step(opt, model, grads, lr=lr_at(s, int(opt.t))) == torch AdamW + SequentialLR, step for step."""
    model = Linear.init(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = [p.detach().clone().requires_grad_() for p in params(model)]
    torch_opt = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.1)
    scheduler = SequentialLR(torch_opt, [LambdaLR(torch_opt, lambda e: e / 4),
                                         CosineAnnealingLR(torch_opt, T_max=8, eta_min=1e-3)], milestones=[4])
    s = Cosine(1e-2, total_steps=12, min_lr=1e-3, warmup_steps=4)
    opt = AdamW.init(model, lr=1e-2, weight_decay=0.1)
    gen = torch.Generator().manual_seed(1)
    for k in range(14):
        gs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params(model)]
        for p, g in zip(theirs, gs):
            p.grad = g.clone()
        torch_opt.step()
        scheduler.step()
        step(opt, model, replace_params(model, gs), lr=lr_at(s, int(opt.t)))
        if k < 12:  # after T_max torch's cosine turns back up; ours stays at min_lr
            for a, b in zip(params(model), theirs):
                torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=1e-12)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match=r"warmup_steps=10, total_steps=10; expected .* 0 <= warmup_steps < total_steps"):
        Cosine(0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match=r"start_factor=1.5"):
        LinearWarmup(0.1, 5, 1.5)
    with pytest.raises(ValueError, match=r"lr_at\(Cosine\): t=-1"):
        lr_at(Cosine(0.1, 10), -1)
