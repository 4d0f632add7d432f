"""Batches of sentence pairs for an encoder-decoder (Vaswani et al. 2017, §5.1): token ids padded
to a rectangle, the target shifted for teacher forcing, and the padding masks the model needs.
Note: notes/translation.md#batches.

A pair of id lists ``(x, y)`` becomes three rows

    src     = x_1 .. x_m                 <pad> ..
    tgt_in  = <bos> y_1 .. y_n           <pad> ..     what the decoder reads
    tgt_out = y_1 .. y_n <eos>           -100  ..     what it must predict (-100: no loss)

so that position i of ``tgt_in`` predicts position i of ``tgt_out``, and the decoder learns
to stop by predicting ``<eos>``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..generic import loss
from ..shapes import Bool, Float, Int, Tensor
from .encoder_decoder import EncoderDecoder

__all__ = ["pad_pairs", "padding_masks", "trim_padding", "seq2seq_loss", "IGNORE"]

IGNORE = -100  # the target of a padded position (torch's ignore_index)


def pad_pairs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, pad_id: int, bos_id: int, eos_id: int,
              device=None) -> tuple[Int[Tensor, "b s"], Int[Tensor, "b t"], Int[Tensor, "b t"]]:
    """``(src, tgt_in, tgt_out)`` for a list of ``(source ids, target ids)``, padded to the longest
    source (``s``) and the longest target + 1 (``t``) of the list (see the module docstring)."""
    if not pairs:
        raise ValueError("pad_pairs: argument `pairs` is empty; expected at least one (source, target) pair")
    for i, (x, y) in enumerate(pairs):
        if len(x) == 0:
            raise ValueError(f"pad_pairs: pair {i} has an empty source; every source needs at least one token")
    s = max(len(x) for x, _ in pairs)
    t = max(len(y) for _, y in pairs) + 1
    src = torch.full((len(pairs), s), pad_id, dtype=torch.long)
    tgt_in = torch.full((len(pairs), t), pad_id, dtype=torch.long)
    tgt_out = torch.full((len(pairs), t), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        y = list(y)
        src[i, :len(x)] = torch.as_tensor(list(x), dtype=torch.long)
        tgt_in[i, :len(y) + 1] = torch.as_tensor([bos_id] + y, dtype=torch.long)
        tgt_out[i, :len(y) + 1] = torch.as_tensor(y + [eos_id], dtype=torch.long)
    return src.to(device), tgt_in.to(device), tgt_out.to(device)


def padding_masks(src: Int[Tensor, "b s"], tgt_in: Int[Tensor, "b t"], *, pad_id: int
                  ) -> tuple[Bool[Tensor, "b s"], Bool[Tensor, "b t"]]:
    """``(src_key_padding_mask, tgt_key_padding_mask)``: True at padding, as torch's masks."""
    src_pad, tgt_pad = src == pad_id, tgt_in == pad_id
    if bool(src_pad.all(dim=1).any()):
        row = int(src_pad.all(dim=1).nonzero()[0])
        raise ValueError(f"padding_masks: row {row} of argument `src` is all padding (pad_id={pad_id}); "
                         f"its attention would have no key to look at")
    return src_pad, tgt_pad


def trim_padding(src: Int[Tensor, "b s"], tgt_in: Int[Tensor, "b t"], tgt_out: Int[Tensor, "b t"], *,
                 pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """The same batch without the trailing columns that are padding in every row (a batch drawn
    from a dataset padded to its longest pair is mostly such columns)."""
    def width(real: Tensor) -> int:
        cols = real.any(dim=0).nonzero()
        return int(cols[-1]) + 1 if len(cols) else 1
    s, t = width(src != pad_id), width(tgt_out != IGNORE)
    return src[:, :s], tgt_in[:, :t], tgt_out[:, :t]


def seq2seq_loss(m: EncoderDecoder, src: Int[Tensor, "b s"], tgt_in: Int[Tensor, "b t"],
                 tgt_out: Int[Tensor, "b t"], *, pad_id: int, label_smoothing: float = 0.0,
                 generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """Teacher-forced cross-entropy of a padded batch: trims the all-padding columns, masks the
    padded keys of the encoder (and, as memory, of the cross-attention) and of the decoder,
    and ignores the padded targets (`EncoderDecoder`'s ``loss``)."""
    src, tgt_in, tgt_out = trim_padding(src, tgt_in, tgt_out, pad_id=pad_id)
    src_pad, tgt_pad = padding_masks(src, tgt_in, pad_id=pad_id)
    return loss(m, src, tgt_in, tgt_out, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                label_smoothing=label_smoothing, generator=generator)
