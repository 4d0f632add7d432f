"""Dataclasses as pytrees: zerotoml/tree.py (notes/dispatch.md#types-are-data)."""

import json
import os

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
    named_params,
    param_count,
    params,
    replace_params,
    set_training,
    struct,
    to,
    value_and_grad,
)
from zerotoml.weights import CheckpointError, load, save, state_dict


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


def test_save_load_round_trip(tmp_path):
    net = make_net()
    path = tmp_path / "net.safetensors"
    save(net, path)
    fresh = Net([Linear.init(3, 4), Linear.init(4, 2, bias=False)],
                Stats(torch.zeros(2), torch.ones(2), torch.tensor(7)))
    back = load(fresh, path)
    for (n1, a), (n2, b) in zip(state_dict(net).items(), state_dict(back).items()):
        assert n1 == n2 and torch.equal(a, b)
    assert torch.equal(fresh.stats.count, torch.tensor(7))  # the template is not modified


def test_load_refuses_another_model_type(tmp_path):
    path = tmp_path / "lin.safetensors"
    save(Linear.init(3, 4), path)
    with pytest.raises(CheckpointError, match=r"holds a zerotoml.layers.linear.Linear, but the model is a .*Net"):
        load(make_net(), path)


def test_load_refuses_other_shapes_naming_each(tmp_path):
    path = tmp_path / "lin.safetensors"
    save(Linear.init(3, 4), path)
    with pytest.raises(CheckpointError) as info:
        load(Linear.init(5, 4), path)
    assert "W: shape (3, 4) in checkpoint" in str(info.value) and "model expects (5, 4)" in str(info.value)
    with pytest.raises(CheckpointError, match="missing tensors: b|b: .*absent"):
        load(Linear.init(3, 4), _without_bias(tmp_path))


def _without_bias(tmp_path):
    path = tmp_path / "nobias.safetensors"
    save(Linear.init(3, 4, bias=False), path)
    return path


def test_load_refuses_other_static_config(tmp_path):
    net = make_net()
    path = tmp_path / "net.safetensors"
    save(net, path)
    other = make_net()
    other.stats.eps = 1e-3
    with pytest.raises(CheckpointError, match=r"stats.eps: 1e-05 in checkpoint, model has 0.001"):
        load(other, path)


def test_load_refuses_dtype_mismatch(tmp_path):
    path = tmp_path / "lin.safetensors"
    save(Linear.init(3, 4), path)
    with pytest.raises(CheckpointError, match="dtype torch.float32 in checkpoint.*expects torch.float64"):
        load(Linear.init(3, 4, dtype=torch.float64), path)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "missing", "foreign"])
def test_load_refuses_corrupt_files_and_changes_nothing(tmp_path, damage):
    path = tmp_path / "lin.safetensors"
    save(Linear.init(3, 4), path)
    if damage == "garbage":
        path.write_bytes(b"\x00" * 40)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "missing":
        os.remove(path)
    elif damage == "foreign":  # a valid safetensors file not written by zerotoml
        from safetensors.torch import save_file

        save_file({"W": torch.zeros(3, 4), "b": torch.zeros(4)}, str(path))
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(CheckpointError, match=str(path.name)):
        load(Linear.init(3, 4), path)
    assert (path.read_bytes() if path.exists() else None) == before


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "x.safetensors"
    save(make_net(), path)
    save(make_net(), path)  # overwrite by rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    statics = json.loads(meta["zerotoml.static"])
    assert statics["stats.eps"] == "1e-05" and meta["zerotoml.type"].endswith("Net")
