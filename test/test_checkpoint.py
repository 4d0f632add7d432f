"""Checkpoints: zerotoml/checkpoint.py (notes/training.md#checkpoints)."""

import hashlib
import json
import os
import random

import numpy as np
import pytest
import torch

from zerotoml import loss, step, value_and_grad
from zerotoml.checkpoint import (
    FORMAT,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from zerotoml.classifier import Classifier
from zerotoml.data import Batches
from zerotoml.layers import MLP
from zerotoml.optim import SGD, Adam, Cosine
from zerotoml.weights import state_dict


def setup(sizes=(4, 8, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Classifier(MLP.init(list(sizes), generator=g))
    x = torch.randn(40, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (40,), generator=g)
    return model, Adam.init(model, lr=1e-2), Batches((x, y), 8, seed=seed)


def trained(n=3):
    model, opt, data = setup()
    for _ in range(n):
        _, grads = value_and_grad(loss, model, *next(data))
        step(opt, model, grads)
    return model, opt, data


def snapshot(folder):
    """Every file under ``folder`` with its sha256 (to show nothing was written)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_round_trip_restores_tensors_position_and_rngs(tmp_path):
    model, opt, data = trained()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    path = save_checkpoint(tmp_path, 3, model, opt, schedule=Cosine(1e-2, 100), data=data, extra={"a": [1.5]})
    assert path.name == "step-00000003" and sorted(p.name for p in path.iterdir()) == ["state.json",
                                                                                      "tensors.safetensors"]
    after = (torch.rand(4), random.random(), np.random.rand())
    torch.manual_seed(99), random.seed(99), np.random.seed(99)

    fresh, fresh_opt, fresh_data = setup()
    ck = load_checkpoint(path, fresh, fresh_opt, schedule=Cosine(1e-2, 100), data=fresh_data)
    assert ck.step == 3 and ck.extra == {"a": [1.5]}
    for tree, loaded in ((model, ck.model), (opt, ck.optimizer)):
        a, b = state_dict(tree), state_dict(loaded)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert int(ck.optimizer.t) == 3
    assert fresh_data.position == (0, 0)  # validated on a copy; the caller applies it
    fresh_data.load_state(ck.data_state)
    assert torch.equal(next(fresh_data)[1], next(data)[1])
    set_rng_state(ck.rng)
    assert torch.equal(torch.rand(4), after[0]) and random.random() == after[1] and np.random.rand() == after[2]


def test_write_is_atomic_a_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    model, opt, data = trained()
    save_checkpoint(tmp_path, 3, model, opt, data=data)
    before = snapshot(tmp_path)
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 4, model, opt, data=data)
    assert snapshot(tmp_path) == before and [s for s, _ in list_checkpoints(tmp_path)] == [3]


def test_keep_deletes_old_checkpoints_and_temp_folders_are_not_checkpoints(tmp_path):
    model, opt, data = trained()
    for s in (1, 2, 3, 4):
        save_checkpoint(tmp_path, s, model, opt, data=data, keep=2)
    (tmp_path / ".tmp-step-00000005-123").mkdir()  # what a kill during a write leaves
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert latest_checkpoint(tmp_path).name == "step-00000004"


def corrupt_byte(path, offset=-10):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, match", [
    (lambda p: corrupt_byte(p / "tensors.safetensors"), r"tensors.safetensors' is corrupt: sha256"),
    (lambda p: (p / "tensors.safetensors").write_bytes((p / "tensors.safetensors").read_bytes()[:100]),
     r"tensors.safetensors' has 100 bytes, state.json recorded \d+ \(truncated"),
    (lambda p: (p / "state.json").write_text((p / "state.json").read_text()[:50]),
     r"state.json' is not valid JSON \(truncated or corrupt\?\)"),
    (lambda p: (p / "state.json").unlink(), r"state.json' is missing"),
    (lambda p: (p / "tensors.safetensors").unlink(), r"tensors.safetensors' is missing"),
    (lambda p: (p / "state.json").write_text(json.dumps({"format": "other/9"})),
     r"has format 'other/9', expected 'zerotoml.checkpoint/1'"),
])
def test_corrupt_or_truncated_checkpoint_is_refused_and_left_alone(tmp_path, damage, match):
    model, opt, data = trained()
    path = save_checkpoint(tmp_path, 3, model, opt, data=data)
    damage(path)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, *setup()[:2], data=setup()[2])
    assert snapshot(tmp_path) == before


def test_unreadable_safetensors_with_matching_hash_is_refused(tmp_path):
    model, opt, data = trained()
    path = save_checkpoint(tmp_path, 3, model, opt, data=data)
    t = path / "tensors.safetensors"
    t.write_bytes(b"\xff" * 64)
    state = json.loads((path / "state.json").read_text())
    state["tensors"].update(bytes=64, sha256=hashlib.sha256(b"\xff" * 64).hexdigest())
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"64 bytes\) is not a readable safetensors file"):
        load_checkpoint(path, *setup()[:2])


def test_foreign_checkpoints_are_refused(tmp_path):
    model, opt, data = trained()
    path = save_checkpoint(tmp_path, 3, model, opt, schedule=Cosine(1e-2, 100), data=data)
    other, other_opt, other_data = setup(sizes=(4, 16, 3))
    with pytest.raises(CheckpointError, match=r"layers\.0\.W: shape \(4, 8\) in checkpoint .*expects \(4, 16\)"):
        load_checkpoint(path, other, Adam.init(other, lr=1e-2), schedule=Cosine(1e-2, 100))
    m, _, d = setup()
    with pytest.raises(CheckpointError, match="its model is a zerotoml.classifier.Classifier, this run's model is a "
                                              "zerotoml.layers.chain.MLP"):
        load_checkpoint(path, m.body, Adam.init(m.body, lr=1e-2), schedule=Cosine(1e-2, 100))
    with pytest.raises(CheckpointError, match="its optimizer is a .*Adam, this run's optimizer is a .*SGD"):
        load_checkpoint(path, m, SGD.init(m), schedule=Cosine(1e-2, 100))
    with pytest.raises(CheckpointError, match=r"schedule was configured differently:\n  total_steps: 100 in "
                                              r"checkpoint, 200 here"):
        load_checkpoint(path, m, Adam.init(m, lr=1e-2), schedule=Cosine(1e-2, 200))
    with pytest.raises(CheckpointError, match=r"data iterator does not fit: .*batch_size=8 in the state, 4 here"):
        load_checkpoint(path, m, Adam.init(m, lr=1e-2), schedule=Cosine(1e-2, 100), data=Batches(d.tensors, 4))
    with pytest.raises(CheckpointError, match=r"lr: 0.01 in checkpoint, 0.001 here"):
        load_checkpoint(path, m, Adam.init(m, lr=1e-3), schedule=Cosine(1e-2, 100))


def test_files_are_safetensors_and_json_only_no_pickle(tmp_path):
    model, opt, data = trained()
    path = save_checkpoint(tmp_path, 3, model, opt, data=data)
    state = json.loads((path / "state.json").read_text())
    assert state["format"] == FORMAT and state["step"] == 3
    assert state["model"]["type"] == "zerotoml.classifier.Classifier"
    assert state["tensors"]["sha256"] == hashlib.sha256((path / "tensors.safetensors").read_bytes()).hexdigest()
    from safetensors import safe_open

    with safe_open(str(path / "tensors.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert fh.get_tensor("rng.torch").dtype == torch.uint8
    assert {"model.body.layers.0.W", "optimizer.t", "optimizer.m.0", "rng.torch"} <= keys
