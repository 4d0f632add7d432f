"""Batches: a seeded batch iterator whose position is explicit, resumable state.

Note: notes/training.md#batches.

Epoch ``e`` visits the examples in the order ``torch.randperm(n, generator)`` where
the generator is seeded with a number derived from the pair ``(seed, e)`` only, so
the order of any epoch can be recomputed from nothing but ``(seed, epoch)``. The
iterator's whole position is ``(epoch, index)`` (``index`` = batches already taken
from that epoch). `state` writes it as a JSON-able dict and `from_state` /
`load_state` put a fresh iterator at that exact position, so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would have seen.

Iteration is infinite, epoch after epoch, which is what a training loop counted in
steps wants (``next(batches)`` or ``itertools.islice(batches, steps)``);
`epoch` gives the rest of the current epoch only.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

import torch

__all__ = ["Batches", "epoch_seed"]

_FORMAT = "zerotoml.batches/1"


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of epoch ``epoch``: the first 63 bits of sha256("seed:epoch").

    A hash rather than ``seed + epoch`` so that runs with seeds 0 and 1 do not share
    all but one epoch order."""
    digest = hashlib.sha256(f"{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Batches:
    """Seeded mini-batches of ``tensors`` (all indexed along their first axis).

    ``Batches((x, y), batch_size=128, shuffle=True, seed=0, drop_last=True)``;
    ``next(b)`` returns a tuple ``(x[idx], y[idx])``. With ``drop_last`` (the
    default) every batch has ``batch_size`` rows and the ``n % batch_size`` rows
    left over are skipped that epoch (they are other rows next epoch); without it
    the last batch of an epoch is smaller. The position is ``(epoch, index)``.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...] | list[torch.Tensor] | torch.Tensor,
                 batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = True):
        if isinstance(tensors, torch.Tensor):
            tensors = (tensors,)
        tensors = tuple(tensors)
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            got = ", ".join(type(t).__name__ for t in tensors) or "nothing"
            raise TypeError(f"Batches: `tensors` must be a tuple of tensors, got ({got})")
        if any(t.dim() == 0 for t in tensors):
            raise ValueError("Batches: `tensors` must have a first (example) axis; got a 0-dim tensor")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) != 1:
            raise ValueError(f"Batches: `tensors` must share their first axis, got lengths {sizes}")
        n = sizes[0]
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Batches: `batch_size` must be a positive int, got {batch_size!r}")
        if drop_last and batch_size > n:
            raise ValueError(
                f"Batches: `batch_size`={batch_size} is larger than the {n} examples and "
                f"drop_last=True would give no batch at all; lower it or pass drop_last=False"
            )
        self.tensors = tensors
        self.n = n
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0  # the epoch the next batch comes from
        self.index = 0  # batches already taken from that epoch
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation) cache

    # ------------------------------------------------------------------ order

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The example order of ``epoch``: ``randperm(n)`` seeded by ``(seed, epoch)``."""
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            perm = torch.randperm(self.n, generator=g)
        else:
            perm = torch.arange(self.n)
        self._order = (epoch, perm)
        return perm

    def indices(self, epoch: int, index: int) -> torch.Tensor:
        """The example indices of batch ``index`` of ``epoch``."""
        lo = index * self.batch_size
        return self.order(epoch)[lo: lo + self.batch_size]

    # -------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        """The next batch, moving on to the next epoch when this one is spent (never stops)."""
        if self.index >= len(self):
            self.epoch, self.index = self.epoch + 1, 0
        idx = self.indices(self.epoch, self.index)
        self.index += 1
        return tuple(t[idx.to(t.device)] for t in self.tensors)

    def epoch_batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches left in the current epoch (all of it when at its start)."""
        if self.index >= len(self):
            self.epoch, self.index = self.epoch + 1, 0
        while self.index < len(self):
            yield next(self)

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, index)``: where the next batch comes from."""
        return self.epoch, self.index

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """The position and configuration as a JSON-able dict."""
        return {"format": _FORMAT, "epoch": self.epoch, "index": self.index, "n": self.n,
                "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed,
                "drop_last": self.drop_last}

    def load_state(self, state: dict[str, Any]) -> Batches:
        """Move this iterator to the position in ``state``. Mutates ``self`` and returns it.

        Refuses a state written for other data or another configuration (its ``n``,
        ``batch_size``, ``shuffle``, ``seed`` or ``drop_last`` differ), since the
        same position would then name other batches."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"Batches.load_state: not a Batches state ({_FORMAT}): {state!r:.200}")
        mine = self.state()
        diffs = [f"{k}={state.get(k)!r} in the state, {mine[k]!r} here"
                 for k in ("n", "batch_size", "shuffle", "seed", "drop_last") if state.get(k) != mine[k]]
        if diffs:
            raise ValueError("Batches.load_state: the state was written for other batches: " + "; ".join(diffs))
        epoch, index = state["epoch"], state["index"]
        if not (isinstance(epoch, int) and isinstance(index, int) and epoch >= 0 and 0 <= index <= len(self)):
            raise ValueError(f"Batches.load_state: bad position epoch={epoch!r} index={index!r} "
                             f"(expected epoch >= 0 and 0 <= index <= {len(self)})")
        self.epoch, self.index = epoch, index
        return self

    @classmethod
    def from_state(cls, tensors: tuple[torch.Tensor, ...], state: dict[str, Any]) -> Batches:
        """A new iterator over ``tensors`` at the position and with the configuration of ``state``."""
        if not isinstance(state, dict):
            raise ValueError(f"Batches.from_state: `state` must be a dict, got {type(state).__name__}")
        b = cls(tensors, state.get("batch_size"), shuffle=state.get("shuffle", True),
                seed=state.get("seed", 0), drop_last=state.get("drop_last", True))
        return b.load_state(state)

    def __repr__(self) -> str:
        return (f"Batches(n={self.n}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch}, index={self.index})")
