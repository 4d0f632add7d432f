"""The original Transformer (Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762):
`Transformer`, the encoder-decoder core that torch.nn.Transformer is, and `EncoderDecoder`, the
paper's whole model: shared embeddings scaled by sqrt(d_model), sinusoidal positions, the core,
and a pre-softmax projection tied to the target embedding (§3.4).
Note: notes/transformers.md#the-encoder-decoder.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from ..einsum import einsum
from ..generic import forward, from_torch, loss, method
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..losses import cross_entropy
from ..shapes import Float, Int, Tensor
from ..tree import struct
from .decoder import Decoder
from .encoder import Encoder
from .positional import SinusoidalEncoding, n_positions

__all__ = ["Transformer", "EncoderDecoder", "encode", "decode"]


@struct
class Transformer:
    """torch.nn.Transformer (batch-first): an encoder stack and a decoder stack, each with a final norm."""

    encoder: Encoder
    decoder: Decoder

    @classmethod
    def init(cls, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
             dim_feedforward: int = 2048, dropout: float = 0.1, activation: str | object = "relu",
             layer_norm_eps: float = 1e-5, norm_first: bool = False, bias: bool = True, *, generator=None,
             device=None, dtype=None) -> Transformer:
        """The paper's base model by default (N = 6, d_model = 512, h = 8, d_ff = 2048, P_drop = 0.1).
        Each part keeps its own torch default initialiser (torch.nn.Transformer re-draws every
        matrix Xavier-uniform; the paper does not say)."""
        args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias, True)
        kw = dict(generator=generator, device=device, dtype=dtype)
        return cls(Encoder.init(num_encoder_layers, *args, **kw), Decoder.init(num_decoder_layers, *args, **kw))


@method
def forward(m: Transformer, src: Float[Tensor, "b s d_model"], tgt: Float[Tensor, "b t d_model"], *,
            src_mask: Tensor | None = None, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
            src_key_padding_mask: Tensor | None = None, tgt_key_padding_mask: Tensor | None = None,
            memory_key_padding_mask: Tensor | None = None, src_is_causal: bool = False,
            tgt_is_causal: bool = False, memory_is_causal: bool = False,
            generator: torch.Generator | None = None) -> Float[Tensor, "b t d_model"]:
    memory = forward(m.encoder, src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                     is_causal=src_is_causal, generator=generator)
    return forward(m.decoder, tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                   tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                   tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal, generator=generator)


@method
def from_torch(module: torch.nn.Transformer) -> Transformer:
    """Same weights and mode; our layout is always batch-first."""
    return Transformer(from_torch(module.encoder), from_torch(module.decoder))


# ---------------------------------------------------------------- the whole model


@struct
class EncoderDecoder:
    """Token ids in, next-token logits out. ``src_embed=None`` shares the target table with
    the source (one vocabulary, as the paper's byte-pair vocabulary for English-German)."""

    tgt_embed: Embedding            # "vocab d_model": target table and pre-softmax weights (tied)
    src_embed: Embedding | None     # None: shared with tgt_embed
    positions: SinusoidalEncoding
    dropout: Dropout                # on the sums of embeddings and positional encodings (§5.4)
    transformer: Transformer

    @classmethod
    def init(cls, src_vocab: int, tgt_vocab: int | None = None, d_model: int = 512, nhead: int = 8,
             num_encoder_layers: int = 6, num_decoder_layers: int = 6, dim_feedforward: int = 2048,
             dropout: float = 0.1, n_positions: int = 1024, norm_first: bool = False, *, generator=None,
             device=None, dtype=None) -> EncoderDecoder:
        """``tgt_vocab=None``: one shared vocabulary and one table. Tables are N(0, 1/d_model), so
        that the scaled embedding sqrt(d_model) E has unit variance (the paper does not say)."""
        kw = dict(device=device, dtype=dtype)
        def table(v: int) -> Embedding:
            return Embedding(torch.randn(v, d_model, generator=generator, **kw) / math.sqrt(d_model))

        tgt = table(src_vocab if tgt_vocab is None else tgt_vocab)
        src = None if tgt_vocab is None else table(src_vocab)
        core = Transformer.init(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout,
                                norm_first=norm_first, generator=generator, **kw)
        return cls(tgt, src, SinusoidalEncoding.init(n_positions, d_model, **kw), Dropout(dropout), core)


def _embed(m: EncoderDecoder, table: Embedding, ids: Tensor, generator) -> Tensor:
    d_model = table.W.shape[1]
    # Dropout(sqrt(d_model) · E[ids] + PE)                            (§3.4, §3.5, §5.4)
    x = forward(table, ids) * math.sqrt(d_model)
    return forward(m.dropout, forward(m.positions, x), generator=generator)


def encode(m: EncoderDecoder, src: Int[Tensor, "b s"], *, src_mask: Tensor | None = None,
           src_key_padding_mask: Tensor | None = None, generator=None) -> Float[Tensor, "b s d_model"]:
    """The memory: the encoder's output for the source ids."""
    table = m.tgt_embed if m.src_embed is None else m.src_embed
    return forward(m.transformer.encoder, _embed(m, table, src, generator), mask=src_mask,
                   src_key_padding_mask=src_key_padding_mask, generator=generator)


def decode(m: EncoderDecoder, tgt: Int[Tensor, "b t"], memory: Float[Tensor, "b s d_model"], *,
           tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
           tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
           tgt_is_causal: bool = True, generator=None) -> Float[Tensor, "b t vocab"]:
    """Next-token logits for the target ids given the memory; causal unless told otherwise."""
    y = forward(m.transformer.decoder, _embed(m, m.tgt_embed, tgt, generator), memory, tgt_mask=tgt_mask,
                memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal, generator=generator)
    # logits = y E^T: the pre-softmax projection is the target embedding          (§3.4)
    return einsum(y, m.tgt_embed.W, "b t d_model, vocab d_model -> b t vocab")


@method
def forward(m: EncoderDecoder, src: Int[Tensor, "b s"], tgt: Int[Tensor, "b t"], *,
            src_mask: Tensor | None = None, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
            src_key_padding_mask: Tensor | None = None, tgt_key_padding_mask: Tensor | None = None,
            memory_key_padding_mask: Tensor | None = None, tgt_is_causal: bool = True,
            generator: torch.Generator | None = None) -> Float[Tensor, "b t vocab"]:
    """Logits for every target position; ``tgt_is_causal=True`` (the default) masks the future
    when no ``tgt_mask`` is given. ``memory_key_padding_mask`` defaults to ``src_key_padding_mask``."""
    if memory_key_padding_mask is None:
        memory_key_padding_mask = src_key_padding_mask
    memory = encode(m, src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask, generator=generator)
    return decode(m, tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                  tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                  tgt_is_causal=tgt_is_causal, generator=generator)


@method
def loss(m: EncoderDecoder, src: Int[Tensor, "b s"], tgt_in: Int[Tensor, "b t"], tgt_out: Int[Tensor, "b t"], *,
         src_key_padding_mask: Tensor | None = None, tgt_key_padding_mask: Tensor | None = None,
         ignore_index: int = -100, label_smoothing: float = 0.0,
         generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """Teacher forcing: cross-entropy of the logits for ``tgt_in`` against ``tgt_out`` (the
    same sequence shifted left by one). The paper trains with label_smoothing=0.1 (§5.4)."""
    z = forward(m, src, tgt_in, src_key_padding_mask=src_key_padding_mask,
                tgt_key_padding_mask=tgt_key_padding_mask, generator=generator)
    return cross_entropy(rearrange(z, "b t vocab -> (b t) vocab"), rearrange(tgt_out, "b t -> (b t)"),
                         ignore_index=ignore_index, label_smoothing=label_smoothing)


@method
def n_positions(m: EncoderDecoder) -> int:
    """The longest source or target it reads: the rows of its position table."""
    return n_positions(m.positions)
