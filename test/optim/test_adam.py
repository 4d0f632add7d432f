"""Adam and AdamW against torch.optim.Adam / AdamW, step for step, in float64;
bad gradients and foreign state refused; a checkpoint resumes exactly."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zerotoml import step
from zerotoml.layers import Linear
from zerotoml.optim import Adam, AdamW
from zerotoml.shapes import Tensor
from zerotoml.testing import assert_optimizer_matches_torch
from zerotoml.tree import params, replace_params, struct
from zerotoml.weights import load, save

TOL = dict(atol=1e-12, rtol=1e-12)


@struct
class Pair:
    a: Tensor
    s: Tensor


def linear(seed=0, d_in=4, d_out=3):
    return Linear.init(d_in, d_out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def pair(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Pair(torch.randn(5, generator=gen, dtype=torch.float64), torch.randn((), generator=gen, dtype=torch.float64))


hyper = dict(
    lr=st.floats(1e-4, 0.5),
    betas=st.tuples(st.sampled_from([0.0, 0.5, 0.9]), st.sampled_from([0.9, 0.99, 0.999])),
    eps=st.sampled_from([1e-8, 1e-3, 0.0]),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.5]),
    amsgrad=st.booleans(),
    seed=st.integers(0, 99),
    use_pair=st.booleans(),
)


@pytest.mark.parametrize("ours, theirs", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)], ids=["Adam", "AdamW"])
@settings(max_examples=30, deadline=None)
@given(**hyper)
def test_adam_matches_torch(ours, theirs, lr, betas, eps, weight_decay, amsgrad, seed, use_pair):
    kw = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    model = pair(seed) if use_pair else linear(seed)
    assert_optimizer_matches_torch(ours.init(model, **kw), model, theirs, seed=seed, **kw)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("ours, theirs", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)], ids=["Adam", "AdamW"])
def test_decay_on_some_parameters_matches_torch_parameter_groups(ours, theirs, amsgrad):
    """decay(name, p) = p.dim() >= 2: torch's two groups, the second with weight_decay 0."""
    model = linear(3)

    def two_groups(ps, **kw):
        return theirs([{"params": [p for p in ps if p.dim() >= 2]},
                       {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0}], **kw)

    kw = dict(lr=3e-2, betas=(0.9, 0.99), weight_decay=0.3, amsgrad=amsgrad)
    opt = ours.init(model, decay=lambda name, p: p.dim() >= 2, **kw)
    assert opt.decay == (True, False)  # W decays, b does not
    assert_optimizer_matches_torch(opt, model, two_groups, **kw)


@pytest.mark.parametrize("ours, theirs", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)], ids=["Adam", "AdamW"])
def test_adam_lr_override_matches_torch(ours, theirs):
    model = linear()
    kw = dict(lr=1e-2, weight_decay=0.1, amsgrad=True)
    lrs = [1e-2, 3e-2, 0.0, 5e-3, 0.1, 2e-2, 1e-3]
    assert_optimizer_matches_torch(ours.init(model, **kw), model, theirs, steps=len(lrs), lrs=lrs, **kw)


def test_adamw_default_weight_decay_is_torchs():
    assert AdamW().weight_decay == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"] == 0.01
    assert Adam().weight_decay == 0.0


def test_grads_that_do_not_fit_the_model_are_refused():
    model = pair()
    opt = Adam.init(model)
    wrong_shape = Pair(torch.zeros(4, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"grads parameter 0 \('a'\) has shape \(4,\), model parameter 'a' has shape \(5,\)"):
        step(opt, model, wrong_shape)
    missing = Pair(torch.zeros(5, dtype=torch.float64), None)
    with pytest.raises(ValueError, match=r"grads is a Pair with 1 parameter tensors \(a\) but model is a Pair with 2 \(a, s\)"):
        step(opt, model, missing)
    assert int(opt.t) == 0  # nothing was changed


def test_optimizer_state_of_another_model_is_refused():
    opt = Adam.init(linear(d_in=4, d_out=3))
    other = linear(d_in=5, d_out=3)
    grads = replace_params(other, [torch.zeros_like(p) for p in params(other)])
    with pytest.raises(ValueError, match=r"Adam.m\[0\] has shape \(4, 3\), float64 but model parameter 0 \('W'\) has shape \(5, 3\)"):
        step(opt, other, grads)
    no_bias = Linear.init(4, 3, bias=False, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Adam.m has 2 tensors but model has 1 parameters.*Adam.init\(model\)"):
        step(opt, no_bias, replace_params(no_bias, [torch.zeros(4, 3, dtype=torch.float64)]))
    with pytest.raises(ValueError, match=r"no state \(t is None\).*AdamW.init\(model\)"):
        step(AdamW(), other, grads)


def test_bad_betas_are_refused():
    with pytest.raises(ValueError, match=r"betas=\(0.9, 1.0\); expected two numbers in \[0, 1\)"):
        Adam.init(linear(), betas=(0.9, 1.0))


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_optimizer_state_save_load_resumes_exactly(cls, tmp_path):
    gen = torch.Generator().manual_seed(1)
    model = linear()
    opt = cls.init(model, lr=1e-2, amsgrad=True)
    grads = [replace_params(model, [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params(model)])
             for _ in range(6)]
    for g in grads[:3]:
        step(opt, model, g)
    save(opt, tmp_path / "opt.safetensors")
    save(model, tmp_path / "model.safetensors")
    model2 = load(linear(seed=7), tmp_path / "model.safetensors")
    opt2 = load(cls.init(model2, lr=1e-2, amsgrad=True), tmp_path / "opt.safetensors")
    assert opt2.t.dtype == torch.int64 and int(opt2.t) == 3
    for g in grads[3:]:
        step(opt, model, g)
        step(opt2, model2, g)
    for a, b in zip(params(model) + opt.m + opt.v + opt.v_max, params(model2) + opt2.m + opt2.v + opt2.v_max):
        assert torch.equal(a, b)
    assert int(opt2.t) == 6
