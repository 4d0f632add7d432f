"""The training loop: zerotoml/train.py and zerotoml/devices.py (notes/training.md)."""

import math
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from zerotoml import loss, lr_at
from zerotoml.checkpoint import list_checkpoints
from zerotoml.classifier import Classifier, accuracy
from zerotoml.data import Batches
from zerotoml.data.digits import digits
from zerotoml.devices import available_devices, pick_device
from zerotoml.layers import MLP
from zerotoml.optim import Adam, AdamW, Cosine
from zerotoml.train import NonFiniteLossError, read_metrics, train
from zerotoml.weights import state_dict


def setup(dropout=0.1, seed=0, n=48):
    g = torch.Generator().manual_seed(seed)
    model = Classifier(MLP.init([5, 12, 3], dropout=dropout, generator=g))
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, AdamW.init(model, lr=1e-2), Batches((x, y), 8, seed=seed)


KW = dict(schedule=Cosine(1e-2, 40, warmup_steps=4), clip=1.0, progress=False, plot=False)


def losses(result_or_path):
    history = result_or_path.history if hasattr(result_or_path, "history") else read_metrics(result_or_path)
    return [(r["step"], r["loss"]) for r in history if r["kind"] == "train"]


def same_tensors(a, b):
    a, b = state_dict(a), state_dict(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_losses_other_seed_other_losses():
    runs = [train(*setup(), steps=40, seed=s, log_every=1, **KW) for s in (7, 7, 8)]
    assert losses(runs[0]) == losses(runs[1]) and len(losses(runs[0])) == 40
    assert same_tensors(runs[0].model, runs[1].model)
    assert losses(runs[0]) != losses(runs[2])  # the seed drives the dropout masks


def test_loss_falls_and_inputs_are_untouched():
    model, opt, data = setup(dropout=0.0)
    before = {k: v.clone() for k, v in state_dict(model).items()}
    r = train(model, opt, data, steps=40, log_every=1, **KW)
    assert all(torch.equal(v, state_dict(model)[k]) for k, v in before.items()) and int(opt.t) == 0
    assert int(r.optimizer.t) == 40 and data.position == (6, 4)  # data advanced: 40 batches of 6 per epoch
    first, last = losses(r)[0][1], sum(v for _, v in losses(r)[-5:]) / 5
    assert last < 0.8 * first


def test_logged_loss_is_the_mean_of_the_window_and_lr_follows_the_schedule():
    every = train(*setup(), steps=20, log_every=1, **KW).history
    windowed = train(*setup(), steps=20, log_every=6, **KW).history
    per_step = [r["loss"] for r in every]
    got = [(r["step"], r["loss"], r.get("final", False)) for r in windowed]
    want = [(6, math.fsum(per_step[0:6]) / 6, False), (12, math.fsum(per_step[6:12]) / 6, False),
            (18, math.fsum(per_step[12:18]) / 6, False), (20, math.fsum(per_step[18:20]) / 2, True)]
    assert got == want
    assert [r["lr"] for r in every] == [lr_at(KW["schedule"], t) for t in range(20)]


def test_resume_after_a_normal_stop_equals_an_uninterrupted_run(tmp_path):
    evals = lambda m: {"val_loss": loss(m, *setup()[2].tensors).item()}  # noqa: E731
    kw = dict(KW, log_every=3, eval_every=10, eval_fn=evals, checkpoint_every=8)
    whole = train(*setup(), steps=40, out=tmp_path / "whole", **kw)
    train(*setup(), steps=25, out=tmp_path / "split", **kw)  # ends off-schedule: "final" records
    resumed = train(*setup(), steps=40, out=tmp_path / "split", resume=True, **kw)
    assert resumed.steps_run == 15
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("time", "examples_per_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    assert strip(read_metrics(tmp_path / "split" / "metrics.jsonl")) == strip(whole.history)
    assert same_tensors(resumed.model, whole.model) and same_tensors(resumed.optimizer, whole.optimizer)


KILL_SCRIPT = """
import sys, time, torch
from zerotoml import loss
from zerotoml.classifier import Classifier
from zerotoml.data import Batches
from zerotoml.layers import MLP
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import train

STEPS = 90

def run(out, resume=False, delay=0.0):
    g = torch.Generator().manual_seed(0)
    model = Classifier(MLP.init([6, 16, 3], dropout=0.2, generator=g))
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 3, (50,), generator=g)

    def slow_loss(m, x, y):
        time.sleep(delay)
        return loss(m, x, y)

    return train(model, AdamW.init(model, lr=1e-2), Batches((x, y), 8, seed=1), steps=STEPS,
                 schedule=Cosine(1e-2, STEPS, warmup_steps=5), clip=1.0, out=out, checkpoint_every=10,
                 log_every=1, resume=resume, seed=3, loss_fn=slow_loss, progress=False, plot=False)

if __name__ == "__main__":
    run(sys.argv[1], delay=float(sys.argv[2]))
"""


@pytest.mark.slow
def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    script = tmp_path / "kill_me.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.02"], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list_checkpoints(killed / "checkpoints")) < 3:
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read().decode()}"
        assert time.time() < deadline, "no checkpoints appeared in 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reached = list_checkpoints(killed / "checkpoints")[-1][0]
    assert 30 <= reached < 90

    run = runpy.run_path(str(script))["run"]  # resumed here, in the test process
    resumed = run(killed, resume=True)
    whole = run(tmp_path / "whole")
    got, want = losses(killed / "metrics.jsonl"), losses(tmp_path / "whole" / "metrics.jsonl")
    assert [s for s, _ in got] == list(range(1, 91))
    assert got == want  # every loss, bit for bit (JSON floats round-trip exactly)
    assert [v for s, v in losses(resumed) if s > reached] == [v for s, v in want if s > reached]
    assert same_tensors(resumed.model, whole.model)


def test_nan_loss_raises_naming_the_step():
    model = Classifier(MLP.init([5, 3]))  # one Linear layer: nothing between input and loss masks a NaN
    opt = Adam.init(model)
    x, y = torch.randn(10, 5), torch.zeros(10, dtype=torch.int64)
    x[5, 2] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"the loss is nan at step 6 ") as e:
        train(model, opt, Batches((x, y), 1, shuffle=False), steps=10, progress=False)
    assert e.value.step == 6


def test_eval_sees_the_model_in_eval_mode():
    seen = []
    model, opt, data = setup(dropout=0.5)
    train(model, opt, data, steps=4, eval_every=2, progress=False,
          eval_fn=lambda m: seen.append([getattr(layer, "training", None) for layer in m.body.layers]) or 0.0)
    assert len(seen) == 2 and all(False in s and True not in s for s in seen)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="`steps` must be an int >= 0, got -1"):
        train(*setup(), steps=-1)
    with pytest.raises(ValueError, match="`checkpoint_every` needs a run folder `out`"):
        train(*setup(), steps=1, checkpoint_every=1)
    with pytest.raises(TypeError, match="`data` must be an iterator of batches"):
        train(*setup()[:2], [1, 2], steps=1)


def test_devices():
    assert pick_device("auto") == torch.device(available_devices()[0])
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device='gpu0' is not a device name"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available here"):
            pick_device("cuda")


def test_mlp_on_digits_reaches_97_percent():
    x, y = digits("train", flat=True)
    x_test, y_test = digits("test", flat=True)
    model = Classifier(MLP.init([64, 128, 10], generator=torch.Generator().manual_seed(0)))
    r = train(model, Adam.init(model, lr=3e-3), Batches((x, y), 64, seed=0), steps=500, progress=False)
    assert accuracy(r.model, x_test, y_test) >= 0.97
