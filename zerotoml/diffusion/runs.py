"""What the diffusion examples share (examples/diffusion_2d.py, examples/ddpm_fashion_mnist.py):
options refused in one line before any work, and one training run per model, each in its own
folder of the example's run folder. Note: notes/ddpm.md#results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import torch

from ..devices import pick_device
from ..generic import loss
from ..optim import AdamW, Cosine
from ..train import train
from ..tree import set_training

__all__ = ["Parser", "add_run_options", "check_options", "begin", "Fit"]


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line of stderr (``prog: error: ...``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_run_options(p: Parser, *, out: str, device: tuple[str, str], threads: str) -> None:
    """--device, --out, --resume, --seed, --threads (default torch's choice; ``threads`` says when 1
    is better) and --no-progress."""
    p.add_argument("--device", default=device[0], help=device[1])
    p.add_argument("--out", default=out, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help=f"torch CPU threads (default 0: torch's choice; give 1 on a machine shared with busy "
                        f"processes: {threads})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_options(p: Parser, args: argparse.Namespace, counts: tuple[str, ...], models: tuple[str, ...]) -> None:
    """Refuse (through ``p.error``) counts below 1, fewer than 2 samples, a learning rate <= 0,
    negative threads, fewer reflow pairs than a batch, an absent device, and a run folder that
    already holds a run unless ``--resume``; ``args.device`` becomes a torch.device."""
    for k in counts:
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} {getattr(args, k)}: expected an integer >= 1")
    if args.samples < 2 or not args.lr > 0 or args.threads < 0:
        p.error(f"--samples {args.samples}, --lr {args.lr}, --threads {args.threads}: expected at least 2 "
                f"samples, a learning rate > 0 and threads >= 0")
    if args.pairs < args.batch_size:
        p.error(f"--pairs {args.pairs}: expected at least one batch (--batch-size {args.batch_size}) of reflow pairs")
    try:
        args.device = pick_device(args.device)
    except ValueError as e:
        p.error(f"--device: {e}")
    if not args.resume and any((Path(args.out) / m / "checkpoints").exists() for m in models):
        p.error(f"run folder {args.out!r} already holds a run; pass --resume to continue it, or choose another --out")


def begin(parse: Callable[[list[str] | None], argparse.Namespace], argv: list[str] | None
          ) -> argparse.Namespace | int:
    """The options ``parse(argv)`` reads, with torch's CPU threads set from ``--threads``; or the
    exit status (2 for a bad option, 0 for --help) when it stops."""
    try:
        args = parse(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


class Fit:
    """``fit(name, model, data, steps, eval_fn=..., loss_fn=...)`` trains ``model`` into
    ``<out>/<name>`` (AdamW without weight decay, a cosine schedule from ``lr`` down to lr/100
    after ``warmup`` steps at most a tenth of the run, gradients clipped to norm 1, evaluations and
    checkpoints every quarter) and returns it in evaluation mode; ``steps_run[name]`` is how many
    steps this call trained (0 when a resumed run had finished)."""

    def __init__(self, args: argparse.Namespace, out: Path, prefix: str, *, warmup: int, log_every: int):
        self.args, self.out, self.prefix, self.warmup, self.log_every = args, out, prefix, warmup, log_every
        self.steps_run: dict[str, int] = {}

    def __call__(self, name: str, model: Any, data: Any, steps: int, *, eval_fn: Callable | None = None,
                 loss_fn: Callable = loss) -> Any:
        a = self.args
        schedule = Cosine(a.lr, steps, min_lr=a.lr / 100, warmup_steps=min(self.warmup, steps // 10))
        r = train(model, AdamW.init(model, lr=a.lr, weight_decay=0.0), data, steps=steps, schedule=schedule,
                  clip=1.0, eval_every=max(steps // 4, 1), eval_fn=eval_fn, out=self.out / name, seed=a.seed,
                  device=a.device, checkpoint_every=max(steps // 4, 1), resume=a.resume, log_every=self.log_every,
                  progress=not a.no_progress, name=f"{self.prefix} {name}", loss_fn=loss_fn)
        self.steps_run[name] = r.steps_run
        return set_training(r.model, False)
