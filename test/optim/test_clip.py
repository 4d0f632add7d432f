"""clip_grad_norm against torch.nn.utils.clip_grad_norm_, in float64."""

import math

import pytest
import torch

from zerotoml.layers import Linear
from zerotoml.optim import clip_grad_norm
from zerotoml.tree import params, replace_params


def grads_struct(seed=0, scale=1.0):
    model = Linear.init(5, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    return replace_params(model, [scale * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params(model)])


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])
@pytest.mark.parametrize("seed", [0, 1])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, seed):
    grads = grads_struct(seed)
    before = [g.clone() for g in params(grads)]
    theirs = [torch.nn.Parameter(torch.zeros_like(g)) for g in before]
    for p, g in zip(theirs, before):
        p.grad = g.clone()
    total_theirs = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)

    clipped, total = clip_grad_norm(grads, max_norm, norm_type=norm_type)
    torch.testing.assert_close(total, total_theirs, atol=1e-12, rtol=1e-12)
    for a, p in zip(params(clipped), theirs):
        torch.testing.assert_close(a, p.grad, atol=1e-12, rtol=1e-12)
    for a, b in zip(params(grads), before):  # pure: the input is untouched
        assert torch.equal(a, b)
    assert type(clipped) is type(grads)
    if max_norm < total:
        assert math.isclose(float(clip_grad_norm(clipped, math.inf, norm_type=norm_type)[1]), max_norm, rel_tol=1e-5)


def test_clip_grad_norm_refuses_bad_norm_type():
    with pytest.raises(ValueError, match=r"norm_type=0.5; expected p >= 1 or math.inf"):
        clip_grad_norm(grads_struct(), 1.0, norm_type=0.5)
