"""SGD and Momentum against torch.optim.SGD, step for step, in float64."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zerotoml import step
from zerotoml.layers import Linear
from zerotoml.optim import SGD, Momentum
from zerotoml.testing import assert_optimizer_matches_torch
from zerotoml.tree import params, replace_params

TOL = dict(atol=1e-12, rtol=1e-12)


def linear(seed=0):
    return Linear.init(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=15, deadline=None)
@given(lr=st.floats(1e-3, 1.0), weight_decay=st.sampled_from([0.0, 1e-2, 0.3]), seed=st.integers(0, 99))
def test_sgd_matches_torch(lr, weight_decay, seed):
    model = linear(seed)
    opt = SGD.init(model, lr=lr, weight_decay=weight_decay)
    assert_optimizer_matches_torch(opt, model, torch.optim.SGD, seed=seed, lr=lr, weight_decay=weight_decay)


@settings(max_examples=30, deadline=None)
@given(
    lr=st.floats(1e-3, 1.0),
    momentum=st.sampled_from([0.5, 0.9, 0.99]),
    dampening=st.sampled_from([0.0, 0.1, 0.5]),
    nesterov=st.booleans(),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.3]),
    seed=st.integers(0, 99),
)
def test_momentum_matches_torch(lr, momentum, dampening, nesterov, weight_decay, seed):
    if nesterov:
        dampening = 0.0  # torch (and Momentum) require it
    hyper = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)
    model = linear(seed)
    assert_optimizer_matches_torch(Momentum.init(model, **hyper), model, torch.optim.SGD, seed=seed, **hyper)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_lr_override_matches_torch(nesterov):
    model = linear()
    hyper = dict(lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.05)
    lrs = [0.1, 0.3, 0.02, 0.0, 0.5, 0.25]
    assert_optimizer_matches_torch(Momentum.init(model, **hyper), model, torch.optim.SGD, lrs=lrs, **hyper)


def test_momentum_bad_hyper_parameters():
    with pytest.raises(ValueError, match=r"nesterov=True needs momentum > 0 and dampening == 0.*dampening=0.1"):
        Momentum(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"SGD: lr=-1"):
        SGD(lr=-1.0)


def test_momentum_state_of_another_model_is_refused():
    opt = Momentum.init(linear())
    other = Linear.init(4, 2, dtype=torch.float64)
    grads = replace_params(other, [torch.zeros_like(p) for p in params(other)])
    with pytest.raises(ValueError, match=r"Momentum.momentum_buffer\[0\] has shape \(4, 3\).*parameter 0 \('W'\) has shape \(4, 2\)"):
        step(opt, other, grads)
