"""RMSprop against torch.optim.RMSprop, step for step, in float64."""

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from zerotoml import step
from zerotoml.layers import Linear
from zerotoml.optim import RMSprop
from zerotoml.testing import assert_optimizer_matches_torch
from zerotoml.tree import params, replace_params

TOL = dict(atol=1e-12, rtol=1e-12)


def linear(seed=0):
    return Linear.init(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-4, 0.5),
    alpha=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    eps=st.sampled_from([1e-8, 1e-3, 0.1]),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.3]),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    centered=st.booleans(),
    seed=st.integers(0, 99),
)
def test_rmsprop_matches_torch(lr, alpha, eps, weight_decay, momentum, centered, seed):
    # alpha = 0 makes the centred variance g² − g² = 0 up to rounding: sqrt of ±1e-17 is noise
    assume(not (centered and alpha == 0.0))
    hyper = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)
    model = linear(seed)
    assert_optimizer_matches_torch(RMSprop.init(model, **hyper), model, torch.optim.RMSprop, seed=seed, **hyper)


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_lr_override_matches_torch(centered):
    model = linear()
    hyper = dict(lr=1e-2, momentum=0.9, weight_decay=0.05, centered=centered)
    lrs = [1e-2, 3e-2, 0.0, 5e-3, 0.1, 2e-2]
    assert_optimizer_matches_torch(RMSprop.init(model, **hyper), model, torch.optim.RMSprop, lrs=lrs, **hyper)


def test_rmsprop_keeps_only_the_state_it_uses():
    model = linear()
    plain = RMSprop.init(model)
    assert len(plain.mean_square) == 2 and plain.mean_grad == [] and plain.momentum_buffer == []
    full = RMSprop.init(model, momentum=0.9, centered=True)
    assert len(full.mean_grad) == 2 and len(full.momentum_buffer) == 2
    missing = RMSprop(momentum=0.9, t=torch.zeros((), dtype=torch.int64), mean_square=list(plain.mean_square))
    grads = replace_params(model, [torch.zeros_like(p) for p in params(model)])
    with pytest.raises(ValueError, match=r"RMSprop.momentum_buffer has 0 tensors but model has 2 parameters"):
        step(missing, model, grads)
