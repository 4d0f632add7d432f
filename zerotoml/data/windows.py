"""Windows of a token stream, what a language model reads: the fixed windows that score a text,
and seeded, resumable random batches of windows to train on. Note:
notes/transformers.md#results-a-gpt-on-shakespeare.

    x, y = next_token_windows(ids, 64)          # every token but the first predicted once
    data = Windows(ids, 64, batch_size=16)      # next(data): 16 windows at random starts
    blocks(ids, 32)                             # "(n 32)": non-overlapping, unshifted (BERT)
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from ..shapes import Int, Tensor
from .batches import Batches

__all__ = ["blocks", "next_token_windows", "Windows"]


def _check_fits(who: str, n: int, length: int) -> None:
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"{who}: the window length must be an int >= 1, got {length!r}")
    if n < length:
        raise ValueError(f"{who}: {n} tokens are too few for one window of {length}")


def blocks(ids: Int[Tensor, "n"], length: int) -> Int[Tensor, "w length"]:
    """The ``n // length`` non-overlapping windows ``ids[k L : (k + 1) L]``; the tail that does
    not fill one is dropped."""
    _check_fits("blocks", len(ids), length)
    w = len(ids) // length
    return rearrange(ids[: w * length], "(w t) -> w t", t=length)


def next_token_windows(ids: Int[Tensor, "n"], context: int, starts: Int[Tensor, "w"] | None = None
                       ) -> tuple[Int[Tensor, "w context"], Int[Tensor, "w context"]]:
    """Inputs ``x = ids[s : s + T]`` and their next tokens ``y = ids[s + 1 : s + T + 1]`` for
    every start ``s`` (``T = context``). ``starts=None``: ``0, T, 2T, ...``, the ``(n − 1) // T``
    whole windows, so that the targets are ``ids[1 : W T + 1]``, each token predicted once."""
    _check_fits("next_token_windows", len(ids), context + 1)
    if starts is None:
        starts = torch.arange(0, len(ids) - context, context, device=ids.device)
    elif len(starts) and (int(starts.min()) < 0 or int(starts.max()) + context + 1 > len(ids)):
        raise ValueError(f"next_token_windows: starts run from {int(starts.min())} to {int(starts.max())}, "
                         f"but windows of {context} + 1 tokens fit at 0 .. {len(ids) - context - 1}")
    return _cut(ids, context, starts)


def _cut(ids: Tensor, context: int, starts: Tensor) -> tuple[Tensor, Tensor]:
    # window i holds ids[s_i], ids[s_i + 1], ..., ids[s_i + T]
    w = ids[starts[:, None].to(ids.device) + torch.arange(context + 1, device=ids.device)]
    return w[:, :-1], w[:, 1:]


class Windows(Batches):
    """Random training windows of one token stream: ``next()`` gives the `next_token_windows`
    ``(x, y)`` at ``batch_size`` starts. The starts are drawn by `Batches` (every start once per
    epoch, in an order seeded by ``(seed, epoch)``), so a run resumed from its state sees the
    batches an uninterrupted run would have."""

    def __init__(self, ids: Int[Tensor, "n"], context: int, batch_size: int, seed: int = 0):
        _check_fits("Windows", len(ids), context + 1)
        super().__init__(torch.arange(len(ids) - context, device=ids.device), batch_size, seed=seed)
        self.ids, self.context = ids, context

    def __next__(self) -> tuple[Tensor, Tensor]:
        (starts,) = super().__next__()
        return _cut(self.ids, self.context, starts)  # valid starts by construction: no check, no sync

    @classmethod
    def from_state(cls, ids: Tensor, context: int, state: dict[str, Any]) -> Windows:
        """New windows of ``ids`` at the position and with the configuration of ``state``."""
        return cls(ids, context, state.get("batch_size"), seed=state.get("seed", 0)).load_state(state)

    def __repr__(self) -> str:
        return (f"Windows(n_tokens={len(self.ids)}, context={self.context}, batch_size={self.batch_size}, "
                f"seed={self.seed}, epoch={self.epoch}, index={self.index})")
