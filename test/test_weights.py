"""Saving and loading with safetensors: zerotoml/weights.py (notes/dispatch.md#the-pieces)."""

import json
import os

import pytest
import torch

from zerotoml.layers.linear import Linear
from zerotoml.shapes import Float, Int, Tensor
from zerotoml.tree import buffer, struct
from zerotoml.weights import CheckpointError, load, save, state_dict


@struct
class Stats:
    w: Float[Tensor, "d"]
    running: Float[Tensor, "d"] = buffer()
    count: Int[Tensor, ""] = buffer()
    eps: float = 1e-5


@struct
class Net:
    layers: list[Linear]
    stats: Stats
    name: str = "net"


def make_net():
    g = torch.Generator().manual_seed(0)
    layers = [Linear.init(3, 4, generator=g), Linear.init(4, 2, bias=False, generator=g)]
    return Net(layers, Stats(torch.ones(2), torch.zeros(2), torch.tensor(0)))


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
