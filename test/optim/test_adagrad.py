"""Adagrad against torch.optim.Adagrad, step for step, in float64."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zerotoml.layers import Linear
from zerotoml.optim import Adagrad
from zerotoml.testing import assert_optimizer_matches_torch

TOL = dict(atol=1e-12, rtol=1e-12)


def linear(seed=0):
    return Linear.init(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(
    lr=st.floats(1e-3, 1.0),
    lr_decay=st.sampled_from([0.0, 1e-2, 0.5]),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.3]),
    initial_accumulator_value=st.sampled_from([0.0, 0.1, 2.0]),
    eps=st.sampled_from([1e-10, 1e-3, 0.0]),
    seed=st.integers(0, 99),
)
def test_adagrad_matches_torch(lr, lr_decay, weight_decay, initial_accumulator_value, eps, seed):
    hyper = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                 initial_accumulator_value=initial_accumulator_value, eps=eps)
    model = linear(seed)
    assert_optimizer_matches_torch(Adagrad.init(model, **hyper), model, torch.optim.Adagrad, seed=seed, **hyper)


def test_adagrad_lr_override_matches_torch():
    model = linear()
    hyper = dict(lr=0.1, lr_decay=0.1, weight_decay=0.05, initial_accumulator_value=0.5)
    lrs = [0.1, 0.3, 0.02, 0.0, 0.5, 0.25]
    assert_optimizer_matches_torch(Adagrad.init(model, **hyper), model, torch.optim.Adagrad, lrs=lrs, **hyper)


def test_adagrad_initial_accumulator_value_fills_the_state():
    opt = Adagrad.init(linear(), initial_accumulator_value=0.25)
    assert all(bool((G == 0.25).all()) for G in opt.G)
    with pytest.raises(ValueError, match=r"Adagrad: lr_decay=-0.1; expected >= 0"):
        Adagrad(lr_decay=-0.1)
