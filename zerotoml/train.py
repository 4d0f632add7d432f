"""The generic training loop: gradients, clipping, schedule, progress, logs, checkpoints.

Note: notes/training.md#the-loop.

    result = train(model, Adam.init(model, lr=1e-3), Batches((x, y), 128), steps=2000,
                   eval_every=500, eval_fn=lambda m: loss(m, x_val, y_val).item(),
                   out="runs/mlp", checkpoint_every=500)
    result.model, result.history

Every step is ``L, g = value_and_grad(loss, model, *batch)`` -- the model's own
``loss`` method, found by dispatch --, an optional clip of the global gradient norm,
and ``step(optimizer, model, g, lr=lr_at(schedule, t))`` with ``t`` the number of
steps already taken. The loop is pure towards its arguments except ``data``, whose
position advances: it trains copies of ``model`` and ``optimizer``, on ``device``.
The run folder, and where a run starts (fresh or from a checkpoint), are
`zerotoml.run_folder`'s.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .generic import loss, lr_at, step
from .checkpoint import save_checkpoint
from .devices import describe_device, pick_device, synchronize
from .optim import clip_grad_norm
from .run_folder import CHECKPOINTS, MetricsLog, RunExistsError, find_start, plot_run, read_metrics, write_run_folder
from .tree import map_tensors, param_count, params, set_training, value_and_grad

__all__ = ["train", "RunResult", "NonFiniteLossError", "RunExistsError", "read_metrics"]


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite; ``.step`` is the step."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass
class RunResult:
    """What `train` returns: the trained model and optimizer, the step reached, every
    logged record (``kind`` "train" or "eval", as in metrics.jsonl), the run folder,
    the seconds spent in training steps (evaluation and checkpoints excluded) and the
    number of steps this call ran."""

    model: Any
    optimizer: Any
    step: int
    history: list[dict]
    out: Path | None = None
    train_seconds: float = 0.0
    steps_run: int = 0

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of the records that have ``key`` (e.g. "loss", "val_loss")."""
        pts = [(r["step"], r[key]) for r in self.history if key in r]
        return [s for s, _ in pts], [v for _, v in pts]


# ----------------------------------------------------------------- helpers


def _fresh_copy(tree: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Tensors moved to ``device``, floating ones cast to ``dtype``, always copied."""

    def move(t: torch.Tensor, _kind: str) -> torch.Tensor:
        d = dtype if (dtype is not None and t.is_floating_point()) else None
        return t.detach().to(device=device, dtype=d, copy=True)

    return map_tensors(move, tree)


def _batch_to(batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple:
    if not isinstance(batch, (tuple, list)):
        batch = (batch,)
    return tuple(
        b.to(device=device, dtype=dtype if (dtype is not None and b.is_floating_point()) else None,
             non_blocking=True) if isinstance(b, torch.Tensor) else b
        for b in batch
    )


def _as_metrics(value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {"val_loss": float(value)}


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


# -------------------------------------------------------------------- the loop


def train(model: Any, optimizer: Any, data: Any, *, steps: int, schedule: Any = None,
          clip: float | None = None, eval_every: int | None = None,
          eval_fn: Callable[[Any], float | dict[str, float]] | None = None,
          out: str | os.PathLike | None = None, seed: int = 0, device: str | torch.device = "auto",
          dtype: torch.dtype | None = None, checkpoint_every: int | None = None, keep_checkpoints: int = 3,
          resume: bool | str | os.PathLike = False, log_every: int = 10, progress: bool = True,
          loss_fn: Callable[..., torch.Tensor] = loss, name: str | None = None,
          plot: bool = True) -> RunResult:
    """Train copies of ``model`` and ``optimizer`` for ``steps`` steps (counted from the
    start of the run, so a resumed run stops at the same step) on batches
    ``next(data)``; mutates ``data`` (a `zerotoml.data.Batches`: its position advances).

    * ``schedule``: ``lr_at(schedule, t)`` for step ``t`` (0-based); None keeps ``optimizer.lr``.
    * ``clip``: clip the global gradient norm to this value (`zerotoml.optim.clip_grad_norm`).
    * ``eval_fn(model_in_eval_mode) -> float | dict`` every ``eval_every`` steps and at the
      end, under ``torch.no_grad``; a float is logged as ``val_loss``.
    * ``out``: the run folder: ``metrics.jsonl`` (one JSON record per log/eval),
      ``run.json`` (configuration), ``checkpoints/step-N/`` every ``checkpoint_every``
      steps and at the end (the newest ``keep_checkpoints`` are kept), ``loss_curve.png``.
    * ``resume``: True continues from the newest checkpoint in ``out`` (or starts fresh
      if there is none); a path continues from that checkpoint folder. A fresh run
      refuses a folder that already holds a run (`RunExistsError`); a bad checkpoint
      is refused (`CheckpointError`) before anything is written.
    * ``seed`` seeds torch, Python and NumPy's global RNGs of a fresh run (a resumed run
      restores them instead). On CPU two runs with one seed give identical losses.
    * ``device``: "auto" picks cuda, then mps, then cpu; ``dtype`` casts the floating
      tensors of model, optimizer state and batches.
    * ``log_every``: the logged ``loss`` is the mean of the last ``log_every`` step losses.
      Records written only because the run ends off-schedule (the last partial window,
      the closing evaluation) carry ``"final": true`` and are replaced when it is resumed.

    Raises `NonFiniteLossError` naming the step when the loss (or, with ``clip``, the
    gradient norm) is NaN or infinite, before that step changes anything."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"train: `steps` must be an int >= 0, got {steps!r}")
    for arg, v in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every), ("log_every", log_every)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"train: `{arg}` must be a positive int or None, got {v!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"train: `clip` must be > 0 or None, got {clip!r}")
    stateful = hasattr(data, "state") and hasattr(data, "load_state")
    if not hasattr(data, "__next__"):
        raise TypeError(f"train: `data` must be an iterator of batches such as zerotoml.data.Batches, "
                        f"got {type(data).__name__}")
    if out is not None and not stateful:
        raise TypeError(f"train: `data` ({type(data).__name__}) has no state()/load_state(), so a run "
                        f"folder's checkpoints could not resume it; use zerotoml.data.Batches")
    if checkpoint_every is not None and out is None:
        raise ValueError("train: `checkpoint_every` needs a run folder `out`")
    if resume is True and out is None:
        raise ValueError("train: `resume=True` needs the run folder `out` (or pass a checkpoint path)")

    dev = pick_device(device)
    run = Path(out) if out is not None else None
    ckpt_root = run / CHECKPOINTS if run is not None else None
    # where to start: everything is read (and checked) before anything is written
    begin = find_start(run, _fresh_copy(model, dev, dtype), _fresh_copy(optimizer, dev, dtype),
                       data if stateful else None, schedule=schedule, resume=resume, seed=seed, steps=steps)
    model, optimizer, start, history = begin.model, begin.optimizer, begin.step, begin.history
    window = begin.window  # step losses since the last log record
    if run is not None:
        write_run_folder(run, history, {
            "name": name or run.name, "model": type(model).__qualname__, "params": param_count(model),
            "optimizer": type(optimizer).__qualname__,
            "schedule": None if schedule is None else repr(schedule), "steps": steps, "clip": clip,
            "seed": seed, "device": describe_device(dev), "dtype": str(dtype) if dtype else None,
            "data": data.state() if stateful else None, "resumed_from": start, "torch": torch.__version__,
        })

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=name or (run.name if run else "train"), unit="step",
               disable=not progress, dynamic_ncols=True, mininterval=0.5, smoothing=0.05)
    if progress and start < steps:
        bar.write(f"training {type(model).__qualname__} ({param_count(model):,} parameters) on "
                  f"{describe_device(dev)}: steps {start + 1}..{steps}"
                  + (f", run folder {run}" if run else "") + (f" (resumed from step {start})" if start else ""))
    log = MetricsLog(run, history)
    postfix: dict[str, str] = {}
    train_seconds, win_time, win_examples = 0.0, 0.0, 0
    float_dtype = dtype or next((p.dtype for p in params(model) if p.is_floating_point()), None)

    def log_train(s: int, lr: float | None, gnorm: float | None, final: bool = False) -> None:
        nonlocal window, win_time, win_examples
        record = {"kind": "train", "step": s, "loss": math.fsum(window) / len(window),
                  "lr": lr if lr is not None else getattr(optimizer, "lr", None)}
        if gnorm is not None:
            record["grad_norm"] = gnorm
        if stateful:
            record["epoch"] = data.epoch + data.index / max(len(data), 1)
        record["examples_per_s"] = win_examples / win_time if win_time > 0 else None
        record["time"] = time.time()
        log({**record, "final": True} if final else record)
        window, win_time, win_examples = [], 0.0, 0
        postfix.update(loss=_fmt(record["loss"]))
        if record["lr"] is not None:
            postfix["lr"] = f"{record['lr']:.2e}"
        if record["examples_per_s"]:
            postfix["ex/s"] = f"{record['examples_per_s']:,.0f}"
        bar.set_postfix(postfix, refresh=False)

    def evaluate(s: int, final: bool = False) -> None:
        with torch.no_grad():
            metrics = _as_metrics(eval_fn(set_training(model, False)))
        log({"kind": "eval", "step": s, **metrics, "time": time.time(), **({"final": True} if final else {})})
        if progress:  # one line per evaluation stays on screen above the bar
            last = next((r["loss"] for r in reversed(history) if r.get("kind") == "train"), None)
            shown = [f"loss {_fmt(last)}"] if last is not None else []
            bar.write(f"step {s}: " + ", ".join(shown + [f"{k} {_fmt(v)}" for k, v in metrics.items()]))
        postfix.update({k: _fmt(v) for k, v in metrics.items()})
        bar.set_postfix(postfix, refresh=False)

    try:
        for s in range(start + 1, steps + 1):
            t0 = time.perf_counter()
            batch = _batch_to(next(data), dev, float_dtype)
            value, grads = value_and_grad(loss_fn, model, *batch)
            v = value.item()
            if not math.isfinite(v):
                raise NonFiniteLossError(
                    f"train: the loss is {v} at step {s} of {steps} (last logged loss "
                    f"{history[-1].get('loss') if history else None}); nothing was updated at this step. "
                    f"Lower the learning rate, clip gradients (clip=1.0) or check the data and the loss.", s)
            gnorm = None
            if clip is not None:
                grads, gnorm_t = clip_grad_norm(grads, clip)
                gnorm = gnorm_t.item()
                if not math.isfinite(gnorm):
                    raise NonFiniteLossError(f"train: the gradient norm is {gnorm} at step {s} (loss {v}); "
                                             f"nothing was updated at this step", s)
            lr = None if schedule is None else float(lr_at(schedule, s - 1))
            step(optimizer, model, grads, lr=lr)
            if s % log_every == 0:
                synchronize(dev)  # so the window's time is the work, not its launch
            dt = time.perf_counter() - t0
            n_ex = batch[0].shape[0] if batch and isinstance(batch[0], torch.Tensor) and batch[0].dim() else 1
            train_seconds += dt
            win_time, win_examples = win_time + dt, win_examples + n_ex
            window.append(v)
            bar.update(1)

            # on schedule: log, evaluate, checkpoint -- an uninterrupted run does the same
            if s % log_every == 0:
                log_train(s, lr, gnorm)
            scheduled_eval = eval_fn is not None and eval_every is not None and s % eval_every == 0
            if scheduled_eval:
                evaluate(s)
            if ckpt_root is not None and ((checkpoint_every and s % checkpoint_every == 0) or s == steps):
                save_checkpoint(ckpt_root, s, model, optimizer, schedule=schedule, data=data,
                                extra={"window": window, "seed": seed}, keep=keep_checkpoints)
            # only because the run ends here: marked "final", dropped when the run is resumed,
            # and after the checkpoint, so that it holds what an uninterrupted run would hold
            if s == steps:
                if window:
                    log_train(s, lr, gnorm, final=True)
                if eval_fn is not None and not scheduled_eval:
                    evaluate(s, final=True)
    finally:
        bar.close()
        log.close()

    if run is not None and plot:
        plot_run(run, history, name or run.name)
    return RunResult(model, optimizer, max(start, steps), history, run, train_seconds, max(steps - start, 0))

