"""LayerNorm, RMSNorm, BatchNorm, GroupNorm: zerotoml/layers/norm.py (notes/layers.md#normalisation).
Level 3 against torch.nn in float64, running statistics included."""

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch
from zerotoml.layers.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import buffers, params


def randomise(module, seed=0):
    """Non-trivial weights, so that the gain and bias are really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def x64(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 1


# ------------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize("shape,normalized", [((4, 5), (5,)), ((2, 3, 5), (5,)), ((2, 3, 5), (3, 5)),
                                              ((5,), (5,)), ((2, 2, 3, 4), (3, 4))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layernorm_matches_torch(shape, normalized, affine, bias):
    module = randomise(nn.LayerNorm(normalized, eps=1e-3, elementwise_affine=affine, bias=bias).double())
    assert_matches_torch(module, [x64(*shape)])


def test_layernorm_init_and_shape_error():
    m = LayerNorm.init(5, bias=False)
    assert m.normalized_shape == (5,) and torch.all(m.weight == 1) and m.bias is None
    with pytest.raises(ValueError, match=r"shape \(2, 4\); expected it to end with normalized_shape=\(5,\)"):
        forward(m, torch.randn(2, 4))


# --------------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("shape,normalized", [((4, 5), (5,)), ((2, 3, 5), (3, 5)), ((6,), (6,))])
@pytest.mark.parametrize("eps", [None, 1e-2])
@pytest.mark.parametrize("affine", [True, False])
def test_rmsnorm_matches_torch(shape, normalized, eps, affine):
    module = randomise(nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine).double())
    x = x64(*shape) * 1e-7  # small inputs: the default eps (finfo(float64).eps) matters
    assert_matches_torch(module, [x], atol=1e-9, rtol=1e-9)


def test_rmsnorm_default_eps_follows_dtype_in_float32():
    module = randomise(nn.RMSNorm(4))
    x = torch.randn(3, 4) * 1e-4  # float32: eps = 1.19e-7 is visible at this scale
    torch.testing.assert_close(forward(from_torch(module), x), module(x), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("make,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                        (nn.BatchNorm2d, (2, 3, 4, 5))])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_then_eval_matches_torch(make, shape, momentum, affine):
    module = randomise(make(3, eps=1e-3, momentum=momentum, affine=affine).double())
    ours = from_torch(module)
    # training: batch statistics; running statistics updated in place, three steps
    for step in range(3):
        assert_matches_torch(module, [x64(*shape, seed=step)], ours=ours)
    assert int(ours.num_batches_tracked) == 3
    # eval: the running statistics
    module.eval()
    ours = from_torch(module)
    assert ours.training is False
    before = {k: v.clone() for k, v in buffers(ours).items()}
    assert_matches_torch(module, [x64(*shape, seed=9)], ours=ours)
    for k, v in buffers(ours).items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_without_running_stats_matches_torch(training):
    module = randomise(nn.BatchNorm2d(3, track_running_stats=False).double()).train(training)
    ours = assert_matches_torch(module, [x64(2, 3, 2, 2)])
    assert ours.running_mean is None and buffers(ours) == {}


def test_batchnorm_without_bias_matches_torch():
    module = randomise(nn.BatchNorm1d(4).double())
    module.bias = None  # torch>=2.13: nn.BatchNorm1d(4, bias=False)
    ours = assert_matches_torch(module, [x64(5, 4)])
    assert ours.bias is None and len(params(ours)) == 1


def test_batchnorm_from_torch_keeps_dtype_and_mode():
    m = from_torch(nn.BatchNorm2d(3).eval())
    assert m.training is False and m.weight.dtype == torch.float32
    assert m.running_var.dtype == torch.float32 and m.num_batches_tracked.dtype == torch.int64
    assert from_torch(nn.BatchNorm1d(3)).training is True
    init = BatchNorm.init(3, dtype=torch.float64)
    assert torch.all(init.running_var == 1) and init.running_mean.dtype == torch.float64


def test_batchnorm_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match=r"shape \(1, 3\); training needs more than 1 value per channel"):
        forward(BatchNorm.init(3), torch.randn(1, 3))


# ------------------------------------------------------------------- GroupNorm


@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("shape", [(3, 6), (2, 6, 5), (2, 6, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_matches_torch(groups, shape, affine):
    module = randomise(nn.GroupNorm(groups, 6, eps=1e-3, affine=affine).double())
    assert_matches_torch(module, [x64(*shape)])


def test_groupnorm_errors_and_dtype():
    with pytest.raises(ValueError, match="num_channels=5 is not divisible by num_groups=2"):
        GroupNorm.init(2, 5)
    m = from_torch(nn.GroupNorm(2, 4))
    assert m.weight.dtype == torch.float32 and m.num_groups == 2
    with pytest.raises(ValueError, match=r"num_groups=4"):
        forward(GroupNorm(None, None, 4), torch.randn(2, 6))


def test_layernorm_from_torch_keeps_dtype():
    m = from_torch(nn.LayerNorm((2, 3)))
    assert m.weight.dtype == torch.float32 and m.normalized_shape == (2, 3)
    assert from_torch(nn.RMSNorm(3)).eps is None


# ------------------------------------------------------- the hand-derived gradient

from zerotoml.layers.norm import layer_norm_vjp  # noqa: E402


@pytest.mark.parametrize("affine", ["both", "gain", "none"])
@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_layer_norm_vjp_is_autograds_first_and_second_derivative(affine, shape):
    f64 = torch.float64
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, *shape, dtype=f64, generator=gen).requires_grad_()
    w = torch.randn(shape, dtype=f64, generator=gen).requires_grad_() if affine != "none" else None
    b = torch.randn(shape, dtype=f64, generator=gen).requires_grad_() if affine == "both" else None
    m = LayerNorm(w, b, shape)
    g = torch.randn(x.shape, dtype=f64, generator=gen)
    wants = [t for t in (x, w, b) if t is not None]
    auto = torch.autograd.grad(forward(m, x), wants, g, create_graph=True)
    hand = [t for t in layer_norm_vjp(g, x, m) if t is not None]
    for a, h in zip(auto, hand):
        torch.testing.assert_close(h, a, atol=1e-12, rtol=1e-12)
    # second derivatives: the gradient of a weighted sum of ∂L/∂x with respect to x (and the gain)
    r = torch.randn(x.shape, dtype=f64, generator=gen)
    wants2 = [t for t in (x, w) if t is not None]
    auto2 = torch.autograd.grad((auto[0] * r).sum(), wants2)
    hand2 = torch.autograd.grad((hand[0] * r).sum(), wants2)
    for a, h in zip(auto2, hand2):
        torch.testing.assert_close(h, a, atol=1e-10, rtol=1e-10)
