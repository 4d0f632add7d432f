"""Learning-rate schedules: ``lr_at(schedule, t)`` is the rate of the (t+1)-th step.

A schedule is plain data; a training loop asks it for the rate and passes it on:
``step(opt, model, grads, lr=lr_at(schedule, int(opt.t)))``. ``t`` is 0-based: the
number of steps already taken, so ``lr_at(s, 0)`` is the rate of the first step.
Note: notes/optimizers.md#schedules
"""

from __future__ import annotations

import math

from ..generic import lr_at, method
from ..tree import struct


def _check_t(name: str, t: int) -> None:
    if t < 0:
        raise ValueError(f"lr_at({name}): t={t}; expected a step count >= 0")


@struct
class Constant:
    """The same rate at every step."""

    lr: float

    def __post_init__(self):
        if self.lr < 0:
            raise ValueError(f"Constant: lr={self.lr}; expected >= 0")


@struct
class LinearWarmup:
    """A linear ramp from ``start_factor · lr`` at t = 0 to ``lr`` at t = warmup_steps,
    then constant (torch's LinearLR with end_factor=1, total_iters=warmup_steps)."""

    lr: float
    warmup_steps: int
    start_factor: float = 0.0

    def __post_init__(self):
        if self.lr < 0 or self.warmup_steps < 0 or not 0 <= self.start_factor <= 1:
            raise ValueError(
                f"LinearWarmup: lr={self.lr}, warmup_steps={self.warmup_steps}, start_factor="
                f"{self.start_factor}; expected lr >= 0, warmup_steps >= 0, 0 <= start_factor <= 1"
            )


@struct
class Cosine:
    """Linear warmup from 0 over ``warmup_steps``, then half a cosine from ``lr`` at
    t = warmup_steps down to ``min_lr`` at t = total_steps, then ``min_lr``."""

    lr: float
    total_steps: int
    min_lr: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self):
        if not (0 <= self.min_lr <= self.lr and 0 <= self.warmup_steps < self.total_steps):
            raise ValueError(
                f"Cosine: lr={self.lr}, min_lr={self.min_lr}, warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}; expected 0 <= min_lr <= lr and "
                f"0 <= warmup_steps < total_steps"
            )


@method
def lr_at(s: Constant, t: int) -> float:
    _check_t("Constant", t)
    # η_t = η   (the same at every step)
    return float(s.lr)


@method
def lr_at(s: LinearWarmup, t: int) -> float:
    _check_t("LinearWarmup", t)
    if s.warmup_steps == 0:
        return float(s.lr)
    # η_t = η · (s + (1 − s) · min(t, W) / W)
    return s.lr * (s.start_factor + (1 - s.start_factor) * min(t, s.warmup_steps) / s.warmup_steps)


@method
def lr_at(s: Cosine, t: int) -> float:
    _check_t("Cosine", t)
    W, T = s.warmup_steps, s.total_steps
    if t < W:
        # η_t = η · t / W
        return s.lr * t / W
    if t >= T:
        return float(s.min_lr)
    # η_t = η_min + ½ (η_max − η_min) (1 + cos(π T_cur / T_i))   (Loshchilov & Hutter 2017, SGDR eq. 5)
    # with T_cur = t − W and T_i = T − W
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * (t - W) / (T - W)))
