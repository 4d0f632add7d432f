"""A decoder-only language model, GPT-2 style (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners"): token embedding + learned positions, pre-norm blocks with
causal self-attention and no cross-attention, a final LayerNorm, and an LM head tied to the
token embedding. With a `KVCache` it runs one new token at a time.
Note: notes/transformers.md#gpt.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from ..einsum import einsum
from ..generic import forward, loss, method
from ..layers.activation import GELU
from ..layers.attention import MultiheadAttention
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from ..losses import cross_entropy
from ..shapes import Float, Int, Tensor
from ..tree import buffer, struct
from .encoder import EncoderLayer
from .positional import LearnedPositions, Rotary, _check_length, add_positions, n_positions, rotary_of

__all__ = ["GPT", "KVCache", "n_positions"]


@struct
class GPT:
    """A GPT block is a pre-norm `EncoderLayer` run with a causal mask."""

    wte: Embedding              # "vocab d_model": token table, and the LM head (tied)
    wpe: LearnedPositions | Rotary  # added to the input, or RoPE in every block (add_positions, rotary_of)
    drop: Dropout               # on token + position embeddings
    blocks: list[EncoderLayer]  # norm_first=True
    ln_f: LayerNorm

    def __post_init__(self):
        if any(not b.norm_first for b in self.blocks):
            raise ValueError("GPT: every block must be pre-norm (EncoderLayer with norm_first=True)")

    @classmethod
    def init(cls, vocab_size: int, n_positions: int = 1024, d_model: int = 768, n_layer: int = 12,
             n_head: int = 12, dim_feedforward: int | None = None, dropout: float = 0.1,
             layer_norm_eps: float = 1e-5, bias: bool = True, positions: str = "learned", *,
             generator=None, device=None, dtype=None) -> GPT:
        """GPT-2's initialiser: every weight N(0, 0.02²), the residual projections (attention
        output, second feed-forward layer) N(0, (0.02/sqrt(2 n_layer))²), biases zero, norms one.
        GELU with the tanh approximation, as GPT-2. ``bias=False`` drops every bias of the
        projections and the norms (nanoGPT's default). ``positions="rotary"`` replaces the
        learned position table by RoPE on the queries and keys of every block."""
        if positions not in ("learned", "rotary"):
            raise ValueError(f"GPT: positions={positions!r}; expected 'learned' or 'rotary'")
        d_ff = 4 * d_model if dim_feedforward is None else dim_feedforward
        h, dh = n_head, d_model // n_head
        if d_model % n_head:
            raise ValueError(f"GPT: d_model={d_model} is not divisible by n_head={n_head}")
        kw = dict(device=device, dtype=dtype)
        σ, σ_res = 0.02, 0.02 / math.sqrt(2 * n_layer)
        N = lambda std, *s: torch.randn(*s, generator=generator, **kw) * std  # noqa: E731
        Z = lambda *s: torch.zeros(*s, **kw) if bias else None  # noqa: E731

        def block() -> EncoderLayer:
            attn = MultiheadAttention(N(σ, d_model, h, dh), N(σ, d_model, h, dh), N(σ, d_model, h, dh),
                                      N(σ_res, h, dh, d_model), Z(h, dh), Z(h, dh), Z(h, dh), Z(d_model),
                                      Dropout(dropout))
            norm = lambda: LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, **kw)  # noqa: E731
            ffn1, ffn2 = Linear(N(σ, d_model, d_ff), Z(d_ff)), Linear(N(σ_res, d_ff, d_model), Z(d_model))
            drops = (Dropout(dropout), Dropout(dropout), Dropout(dropout))
            return EncoderLayer(attn, ffn1, ffn2, norm(), norm(), GELU("tanh"), *drops, norm_first=True)

        wpe = (LearnedPositions(Embedding(N(σ, n_positions, d_model))) if positions == "learned"
               else Rotary.init(n_positions, dh, device=device, dtype=dtype))
        return cls(Embedding(N(σ, vocab_size, d_model)), wpe,
                   Dropout(dropout), [block() for _ in range(n_layer)],
                   LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, **kw))


@struct
class KVCache:
    """Keys and values of the positions seen so far, per block, and the position of the next
    token (``offset``). `forward(gpt, idx, cache)` returns a new cache; nothing is mutated."""

    k: list[Float[Tensor, "b h t_cache d_head"]] = buffer()
    v: list[Float[Tensor, "b h t_cache d_head"]] = buffer()
    offset: int = 0

    @classmethod
    def init(cls, gpt: GPT, batch_size: int) -> KVCache:
        """An empty cache (no positions yet) for ``gpt``."""
        W = gpt.blocks[0].self_attn.W_k if gpt.blocks else gpt.wte.W.new_zeros(0, 0, 0)
        empty = lambda: W.new_zeros(batch_size, W.shape[1], 0, W.shape[2])  # noqa: E731
        return cls([empty() for _ in gpt.blocks], [empty() for _ in gpt.blocks], 0)


def _embed(m: GPT, idx: Tensor, offset: int, generator) -> Tensor:
    _check_length("GPT", offset, idx.shape[1], n_positions(m))
    # h_0 = U W_e + W_p                                                (GPT-1 eq. 2; GPT-2 adds dropout)
    x = add_positions(m.wpe, forward(m.wte, idx), offset=offset)  # RoPE: nothing added, see rotary_of
    return forward(m.drop, x, generator=generator)


@method
def n_positions(m: GPT) -> int:
    """The context length: the positions of its table (learned or rotary)."""
    return n_positions(m.wpe)


def _logits(m: GPT, x: Tensor) -> Tensor:
    # P(u) = softmax(h_n W_e^T): the LM head is the token table          (GPT-1 eq. 2)
    return einsum(forward(m.ln_f, x), m.wte.W, "b t d_model, vocab d_model -> b t vocab")


@method
def forward(m: GPT, idx: Int[Tensor, "b t"], *, generator: torch.Generator | None = None
            ) -> Float[Tensor, "b t vocab"]:
    """Next-token logits at every position, all positions at once (causal self-attention)."""
    x = _embed(m, idx, 0, generator)
    for block in m.blocks:
        # h_l = transformer_block(h_{l−1})
        x = forward(block, x, is_causal=True, generator=generator, rotary=rotary_of(m.wpe))
    return _logits(m, x)


@method
def forward(m: GPT, idx: Int[Tensor, "b t"], cache: KVCache, *, generator: torch.Generator | None = None
            ) -> tuple[Float[Tensor, "b t vocab"], KVCache]:
    """Logits for ``idx`` at positions ``cache.offset ..``, attending to the cached keys and
    values too; returns ``(logits, updated cache)``. Same numbers as the full forward."""
    if cache.k and cache.k[0].shape[0] != idx.shape[0]:
        raise ValueError(f"GPT: argument `idx` has batch {idx.shape[0]} but the cache holds batch "
                         f"{cache.k[0].shape[0]}")
    x = _embed(m, idx, cache.offset, generator)
    ks, vs = [], []
    for block, k, v in zip(m.blocks, cache.k, cache.v, strict=True):
        # the same block, its new keys and values appended to the cached ones; new query i sits at
        # position offset + i and sees keys 0 .. offset + i (the causal mask aligned at the bottom right)
        x, (k, v) = forward(block, x, is_causal=True, generator=generator, rotary=rotary_of(m.wpe),
                            past=(k, v), offset=cache.offset)
        ks.append(k)
        vs.append(v)
    return _logits(m, x), KVCache(ks, vs, cache.offset + idx.shape[1])


@method
def loss(m: GPT, idx: Int[Tensor, "b t"], targets: Int[Tensor, "b t"], *, ignore_index: int = -100,
         generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy: ``targets`` is ``idx`` shifted left by one."""
    z = forward(m, idx, generator=generator)
    # L = −1/N Σ_i log P(u_i | u_<i)
    return cross_entropy(rearrange(z, "b t vocab -> (b t) vocab"), rearrange(targets, "b t -> (b t)"),
                         ignore_index=ignore_index)
