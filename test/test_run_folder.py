"""The run folder and where a run starts: zerotoml/run_folder.py (notes/training.md#the-loop)."""

import json

import pytest
import torch

from zerotoml import loss
from zerotoml.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, save_checkpoint
from zerotoml.classifier import Classifier
from zerotoml.data import Batches
from zerotoml.layers import MLP
from zerotoml.optim import AdamW
from zerotoml.run_folder import RunExistsError, find_start, read_metrics
from zerotoml.train import train

QUIET = dict(progress=False, plot=False)


def setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Classifier(MLP.init([5, 12, 3], dropout=0.1, generator=g))
    x, y = torch.randn(48, 5, generator=g), torch.randint(0, 3, (48,), generator=g)
    return model, AdamW.init(model, lr=1e-2), Batches((x, y), 8, seed=seed)


def files(folder):
    """Every file under ``folder`` with its bytes (to show nothing was written)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_run_folder_holds_metrics_config_checkpoints_and_curve(tmp_path):
    model, opt, data = setup()
    r = train(model, opt, data, steps=12, out=tmp_path, checkpoint_every=5, log_every=2, eval_every=6,
              eval_fn=lambda m: loss(m, *data.tensors).item(), progress=False)
    assert read_metrics(tmp_path / "metrics.jsonl") == json.loads(json.dumps(r.history))
    assert [r_["step"] for r_ in r.history if r_["kind"] == "eval"] == [6, 12]
    assert "val_loss" in r.history[-1]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [5, 10, 12]
    assert json.loads((tmp_path / "run.json").read_text())["params"] == 5 * 12 + 12 + 12 * 3 + 3
    png = (tmp_path / "loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(RunExistsError, match="already holds a run .*pass resume=True"):
        train(*setup(), steps=12, out=tmp_path, progress=False)


def test_read_metrics_skips_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == []
    path.write_text('{"kind": "train", "step": 1, "loss": 2.0}\n[1, 2]\n{"kind": "eval", "step": 1}\n{"kind": "tr')
    assert read_metrics(path) == [{"kind": "train", "step": 1, "loss": 2.0}, {"kind": "eval", "step": 1}]


def test_a_fresh_start_seeds_the_rngs_and_refuses_a_folder_with_a_run(tmp_path):
    model, opt, _ = setup()
    begin = find_start(tmp_path, model, opt, seed=3)
    assert (begin.model, begin.optimizer, begin.step, begin.history, begin.window) == (model, opt, 0, [], [])
    drawn = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.rand(3))
    assert find_start(tmp_path, model, opt, resume=True).step == 0  # nothing to resume: fresh
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 1.0}\n')
    with pytest.raises(RunExistsError, match=r"already holds a run \(metrics.jsonl\)"):
        find_start(tmp_path, model, opt)


def test_a_resumed_start_keeps_the_records_up_to_its_checkpoint(tmp_path):
    model, opt, data = setup()
    next(data), next(data)
    save_checkpoint(tmp_path / "checkpoints", 4, model, opt, data=data, extra={"window": [0.5, 0.25]})
    records = [{"kind": "train", "step": 2, "loss": 1.0}, {"kind": "train", "step": 4, "loss": 0.9, "final": True},
               {"kind": "train", "step": 6, "loss": 0.8}]  # step 6 was logged after the checkpoint
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fresh, fresh_opt, fresh_data = setup()
    begin = find_start(tmp_path, fresh, fresh_opt, fresh_data, resume=True, steps=10)
    assert begin.step == 4 and begin.window == [0.5, 0.25] and begin.history == records[:1]
    assert begin.model is not fresh and fresh_data.position == data.position == (0, 2)
    assert find_start(tmp_path, fresh, fresh_opt, resume=True, steps=4).history == records[:2]


def test_resume_with_a_corrupt_latest_checkpoint_refuses_and_writes_nothing(tmp_path):
    model, opt, data = setup()
    train(model, opt, data, steps=6, out=tmp_path, checkpoint_every=3, **QUIET)
    path = latest_checkpoint(tmp_path / "checkpoints") / "tensors.safetensors"
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0xFF
    path.write_bytes(bytes(raw))
    before = files(tmp_path)
    with pytest.raises(CheckpointError, match=r"step-00000006/tensors.safetensors' is corrupt"):
        train(*setup(), steps=9, out=tmp_path, checkpoint_every=3, resume=True, progress=False)
    assert files(tmp_path) == before
