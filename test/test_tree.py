"""Dataclasses as pytrees: zerotoml/tree.py (notes/dispatch.md#trees-parameters-buffers-and-static-fields)."""

from collections import namedtuple

import pytest
import torch
import torch.utils._pytree as pytree

from zerotoml import forward
from zerotoml.layers.linear import Linear
from zerotoml.shapes import Float, Int, Tensor
from zerotoml.tree import (
    buffer,
    buffers,
    grad,
    map_tensors,
    named_params,
    named_tensors,
    param_count,
    params,
    replace_params,
    set_training,
    struct,
    to,
    value_and_grad,
)


@struct
class Stats:
    """A layer with a parameter, a buffer, an integer buffer and static fields."""

    w: Float[Tensor, "d"]
    running: Float[Tensor, "d"] = buffer()
    count: Int[Tensor, ""] = buffer()
    eps: float = 1e-5
    training: bool = True


@struct
class Net:
    layers: list[Linear]
    stats: Stats
    name: str = "net"


def make_net(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    layers = [Linear.init(3, 4, generator=g, dtype=dtype), Linear.init(4, 2, bias=False, generator=g, dtype=dtype)]
    stats = Stats(torch.ones(2, dtype=dtype), torch.zeros(2, dtype=dtype), torch.tensor(0))
    return Net(layers, stats)


def net_loss(net, x):
    h = forward(net.layers[1], torch.tanh(forward(net.layers[0], x)))
    return (h * net.stats.w).pow(2).sum()


def test_params_skip_buffers_and_statics_in_field_order():
    net = make_net()
    assert list(named_params(net)) == ["layers.0.W", "layers.0.b", "layers.1.W", "stats.w"]
    assert list(buffers(net)) == ["stats.running", "stats.count"]
    assert param_count(net) == 3 * 4 + 4 + 4 * 2 + 2
    assert len(params(net)) == 4


def test_pytree_round_trip_keeps_statics():
    net = make_net()
    leaves, spec = pytree.tree_flatten(net)
    assert len(leaves) == 6  # 4 params + 2 buffers; the None bias is no leaf
    back = pytree.tree_unflatten(leaves, spec)
    assert type(back) is Net and back.name == "net" and back.stats.eps == 1e-5
    assert back.layers[1].b is None
    doubled = pytree.tree_map(lambda t: t * 2, net)
    torch.testing.assert_close(doubled.layers[0].W, net.layers[0].W * 2)


def test_to_casts_floats_only_and_is_pure():
    net = make_net()
    net64 = to(net, dtype=torch.float64)
    assert net64.layers[0].W.dtype == torch.float64
    assert net64.stats.running.dtype == torch.float64
    assert net64.stats.count.dtype == torch.int64
    assert net.layers[0].W.dtype == torch.float32  # original untouched
    assert to(net, device="meta").layers[0].W.device.type == "meta"


def test_grad_is_the_same_type_and_matches_autograd():
    net = make_net(torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    value, g = value_and_grad(net_loss, net, x)
    assert type(g) is Net and type(g.layers[0]) is Linear
    assert g.stats.running is None and g.stats.count is None  # buffers get no gradient
    ps = [p.detach().clone().requires_grad_() for p in params(net)]
    expected = torch.autograd.grad(net_loss(replace_params(net, ps), x), ps)
    for a, b in zip(params(g), expected):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(value, net_loss(net, x))


def test_unused_parameters_get_zero_gradients():
    net = make_net(torch.float64)
    g = grad(lambda n, x: forward(n.layers[0], x).sum(), net, torch.ones(1, 3, dtype=torch.float64))
    assert torch.count_nonzero(g.layers[1].W) == 0 and g.layers[1].W.shape == (4, 2)


def test_grad_needs_a_scalar():
    with pytest.raises(ValueError, match=r"scalar tensor, got Tensor of shape \(1, 4\)"):
        grad(lambda n, x: forward(n.layers[0], x), make_net(), torch.ones(1, 3))


def test_set_training_flips_every_mode_field():
    net = make_net()
    ev = set_training(net, False)
    assert ev.stats.training is False and net.stats.training is True


Point = namedtuple("Point", "t n")


@struct
class Holder:
    """Tensors in a dict, a tuple holding a namedtuple, and a struct in a buffer field."""

    by_name: dict
    pair: tuple
    inner: Stats = buffer()


def test_one_walk_names_kinds_and_rebuilds_every_container():
    h = Holder({"a": torch.ones(1)}, (torch.ones(2), Point(torch.ones(3), 1)), make_net().stats)
    assert [(n, k) for n, _, k in named_tensors(h)] == [
        ("by_name.a", "param"), ("pair.0", "param"), ("pair.1.0", "param"),
        ("inner.w", "buffer"), ("inner.running", "buffer"), ("inner.count", "buffer")]
    assert [id(t) for t in params(h)] == [id(h.by_name["a"]), id(h.pair[0]), id(h.pair[1].t)]
    doubled = map_tensors(lambda t, k: t * 2, h, kind="buffer")
    assert doubled.by_name["a"] is h.by_name["a"] and type(doubled.pair[1]) is Point and doubled.pair[1].n == 1
    assert doubled.inner.w.tolist() == [2.0, 2.0] and h.inner.w.tolist() == [1.0, 1.0]
    off = set_training(h, False)
    assert off.inner.training is False and h.inner.training is True and off.inner.eps == h.inner.eps
