"""The run folder of `train`, and where a run starts: fresh, or resumed from a checkpoint.

Note: notes/training.md#the-loop.

    <out>/metrics.jsonl      one JSON record per log or evaluation (`read_metrics`)
    <out>/run.json           the configuration of the run
    <out>/checkpoints/       step-N/ folders (`zerotoml.checkpoint`)
    <out>/loss_curve.png     the train loss and every eval metric ending in "loss"

`find_start` decides where a run starts and reads (and checks) everything it needs
before anything is written: a fresh run seeds the global RNGs and refuses a folder
that already holds a run (`RunExistsError`); a resumed run loads its checkpoint,
restores the RNGs and the data position, and keeps the records logged up to it.
`write_run_folder` then writes the folder and `MetricsLog` appends to metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any

import torch

from .checkpoint import latest_checkpoint, load_checkpoint
from .rng import set_rng_state

__all__ = ["RunExistsError", "read_metrics", "find_start", "Start", "write_run_folder", "MetricsLog",
           "plot_run", "METRICS", "CHECKPOINTS"]

METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


class RunExistsError(FileExistsError):
    """A fresh run was asked to write into a run folder that already holds one."""


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file; a line cut short by a kill is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(rec)
    return out


def _write_metrics(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


@dataclasses.dataclass
class Start:
    """Where a run starts: the model and optimizer to train, the steps already taken,
    the records kept from metrics.jsonl and the step losses not yet logged."""

    model: Any
    optimizer: Any
    step: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    window: list[float] = dataclasses.field(default_factory=list)


def find_start(run: Path | None, model: Any, optimizer: Any, data: Any = None, *, schedule: Any = None,
               resume: bool | str | os.PathLike = False, seed: int = 0, steps: int = 0) -> Start:
    """Where the run in folder ``run`` starts; writes nothing. ``resume=True`` continues from
    the newest checkpoint in ``run`` (a fresh start if there is none), a path from that
    checkpoint folder; False starts fresh, seeding torch, Python and NumPy with ``seed``,
    and refuses a folder that already holds a run (`RunExistsError`). Resuming loads the
    checkpoint into copies of ``model`` and ``optimizer`` (`CheckpointError` if it does not
    fit), restores the RNGs and moves ``data`` (when given) to its position; the records
    kept are those up to the checkpoint, less the ``"final"`` ones when it ends before ``steps``."""
    ckpt_root = run / CHECKPOINTS if run is not None else None
    metrics_path = run / METRICS if run is not None else None
    ckpt_path = None
    if resume is True:
        ckpt_path = latest_checkpoint(ckpt_root)
    elif resume is not False:
        ckpt_path = Path(resume)
    elif run is not None and (latest_checkpoint(ckpt_root) is not None or read_metrics(metrics_path)):
        last = latest_checkpoint(ckpt_root)
        raise RunExistsError(
            f"train: run folder {str(run)!r} already holds a run"
            + (f" (checkpoint {last.name})" if last else f" ({METRICS})")
            + "; pass resume=True to continue it, or choose another `out`")
    if ckpt_path is None:
        _seed_everything(seed)
        return Start(model, optimizer)
    ck = load_checkpoint(ckpt_path, model, optimizer, schedule=schedule, data=data)
    if data is not None:
        data.load_state(ck.data_state)
    set_rng_state(ck.rng)
    history = []
    if metrics_path is not None:
        history = [r for r in read_metrics(metrics_path) if r["step"] <= ck.step
                   and not (r.get("final") and ck.step < steps)]
    return Start(ck.model, ck.optimizer, ck.step, history, [float(v) for v in ck.extra.get("window", [])])


def write_run_folder(run: Path, history: list[dict], config: dict[str, Any]) -> None:
    """Create ``run``, rewrite metrics.jsonl with ``history`` (dropping what a killed run
    logged after its checkpoint) and write ``config`` as run.json."""
    run.mkdir(parents=True, exist_ok=True)
    _write_metrics(run / METRICS, history)
    (run / "run.json").write_text(json.dumps(config, indent=1) + "\n")


class MetricsLog:
    """Logs a record: appends it to ``history`` and, with a run folder, to its metrics.jsonl."""

    def __init__(self, run: Path | None, history: list[dict]):
        self.history = history
        self._file = open(run / METRICS, "a") if run is not None else None

    def __call__(self, record: dict) -> None:
        self.history.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def plot_run(run: Path, history: list[dict], title: str) -> None:
    """``loss_curve.png``: the train loss and every eval metric ending in "loss" (needs matplotlib)."""
    if not any("loss" in r for r in history):
        return
    try:
        from .plots import loss_curves

        keys = ["loss"] + sorted({k for r in history if r.get("kind") == "eval" for k in r if k.endswith("loss")})
        loss_curves(history, run / "loss_curve.png", keys=keys, title=title)
    except ImportError:  # matplotlib is an optional dependency
        pass
