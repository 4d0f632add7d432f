"""Embedding: a lookup table, row ``i`` of ``W`` is the vector of token ``i``.
Note: notes/layers.md#embedding."""

from __future__ import annotations

import torch

from .. import engine

from ..generic import forward, from_torch, method
from ..shapes import Float, Int, Tensor
from ..tree import struct


@struct
class Embedding:
    """``y[..., :] = W[ids[...], :]``. With ``padding_idx`` set, that row gets no gradient
    (as torch.nn.Embedding), so it keeps its value, zero from `init`."""

    W: Float[Tensor, "vocab d"]
    padding_idx: int | None = None

    @classmethod
    def init(cls, vocab: int, d: int, *, padding_idx: int | None = None,
             generator=None, device=None, dtype=None) -> Embedding:
        """torch's default: W ~ N(0, 1), the padding row zero."""
        W = torch.randn(vocab, d, generator=generator, device=device, dtype=dtype)
        if padding_idx is not None:
            padding_idx = _padding_idx(padding_idx, vocab)
            W[padding_idx] = 0
        return cls(W, padding_idx)


def _padding_idx(padding_idx: int, vocab: int) -> int:
    if not -vocab <= padding_idx < vocab:
        raise ValueError(f"Embedding: padding_idx={padding_idx} is outside [-{vocab}, {vocab}) for vocab={vocab}")
    return padding_idx % vocab


@method
def forward(m: Embedding, ids: Int[Tensor, "*batch"]) -> Float[Tensor, "*batch d"]:
    vocab = m.W.shape[0]
    if ids.numel() > 0:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            raise IndexError(f"Embedding: argument `ids` holds id {bad}, outside [0, {vocab}) for vocab={vocab}")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.embedding(m.W, ids, m.padding_idx)
    # y = W[ids]  (a gather: indexing, not a contraction)
    y = m.W[ids]
    if m.padding_idx is not None:
        # the padding row reaches the output but takes no gradient
        pad = (ids == m.padding_idx)[..., None]
        y = torch.where(pad, y.detach(), y)
    return y


@method
def from_torch(module: torch.nn.Embedding) -> Embedding:
    if module.max_norm is not None or module.scale_grad_by_freq or module.sparse:
        raise NotImplementedError(
            f"from_torch(nn.Embedding): max_norm={module.max_norm}, scale_grad_by_freq="
            f"{module.scale_grad_by_freq}, sparse={module.sparse}; only the defaults (None, False, False) are supported"
        )
    return Embedding(module.weight.detach().clone(), module.padding_idx)
