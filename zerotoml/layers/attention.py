"""Scaled dot-product and multi-head attention (Vaswani et al. 2017, arXiv:1706.03762, §3.2).
Note: notes/transformers.md#attention.

Layout is always batch-first, ``"b t d"``. Masks follow torch.nn.MultiheadAttention:
a boolean mask is True where attention is NOT allowed, a float mask is added to the
scores. A query row whose keys are all masked gets zero weights (never NaN).
"""

from __future__ import annotations

import functools
import math

import torch
from einops import rearrange

from .. import engine
from ..einsum import einsum
from ..generic import forward, from_torch, method
from ..shapes import Bool, Float, Tensor
from ..tree import struct
from .activation import softmax
from .dropout import Dropout

__all__ = ["MultiheadAttention", "attend", "causal_mask", "additive_mask", "heads", "self_heads", "merge_heads"]



@struct
class MultiheadAttention:
    """Multi-head attention with a head axis on every projection (no per-head loops):
    ``W_q: "d_model h d_head"``; torch stores ``(h d_head) d_model`` stacked in ``in_proj_weight``."""

    W_q: Float[Tensor, "d_model h d_head"]
    W_k: Float[Tensor, "d_key h d_head"]
    W_v: Float[Tensor, "d_value h d_head"]
    W_o: Float[Tensor, "h d_head d_model"]
    b_q: Float[Tensor, "h d_head"] | None
    b_k: Float[Tensor, "h d_head"] | None
    b_v: Float[Tensor, "h d_head"] | None
    b_o: Float[Tensor, "d_model"] | None
    dropout: Dropout  # on the attention weights

    @classmethod
    def init(cls, embed_dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True,
             kdim: int | None = None, vdim: int | None = None, generator=None, device=None,
             dtype=None) -> MultiheadAttention:
        """torch's default: Xavier-uniform in-projections (over the stacked ``(3 d_model, d_model)``
        matrix when kdim = vdim = d_model), output projection U(±1/sqrt(d_model)), biases zero."""
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        kdim, vdim = kdim or embed_dim, vdim or embed_dim
        h, dh = num_heads, embed_dim // num_heads
        kw = dict(generator=generator, device=device, dtype=dtype)
        packed = kdim == embed_dim and vdim == embed_dim

        def xavier(d_in: int) -> Tensor:
            fan_out = 3 * embed_dim if packed else embed_dim
            bound = math.sqrt(6.0 / (d_in + fan_out))
            return (torch.rand(d_in, h, dh, **kw) * 2 - 1) * bound

        W_q, W_k, W_v = xavier(embed_dim), xavier(kdim), xavier(vdim)
        W_o = (torch.rand(h, dh, embed_dim, **kw) * 2 - 1) / math.sqrt(embed_dim)
        zeros = lambda *s: torch.zeros(*s, device=device, dtype=dtype) if bias else None  # noqa: E731
        return cls(W_q, W_k, W_v, W_o, zeros(h, dh), zeros(h, dh), zeros(h, dh), zeros(embed_dim),
                   Dropout(dropout))


# ------------------------------------------------------------------ the pieces


def heads(x: Float[Tensor, "b t d_in"], W: Float[Tensor, "d_in h d_head"],
          b: Float[Tensor, "h d_head"] | None) -> Float[Tensor, "b h t d_head"]:
    """Project and split into heads in one einsum: ``x W_i`` for every head ``i`` at once."""
    # Q W_i^Q  for i = 1..h
    y = einsum(x, W, "b t d_in, d_in h d_head -> b h t d_head")
    return y if b is None else y + rearrange(b, "h d_head -> h 1 d_head")


def self_heads(x: Float[Tensor, "b t d"], m: MultiheadAttention) -> tuple[Tensor, Tensor, Tensor]:
    """Self-attention's Q, K and V from one einsum over the three stacked projections (one
    matmul of width 3 h d_head instead of three): the same numbers as three `heads` calls."""
    W = torch.stack([m.W_q, m.W_k, m.W_v], dim=1)  # d s h d_head, contiguous: no copy for the matmul
    b = None if m.b_q is None else torch.stack([m.b_q, m.b_k, m.b_v])
    y = einsum(x, W, "b t d, d s h d_head -> b t s h d_head", plus=b)  # one addmm
    y = rearrange(y, "b t s h d_head -> s b h t d_head")
    return y.unbind(0)


def merge_heads(o: Float[Tensor, "b h t d_head"], W_o: Float[Tensor, "h d_head d_model"],
                b_o: Float[Tensor, "d_model"] | None) -> Float[Tensor, "b t d_model"]:
    """``Concat(head_1, ..., head_h) W^O = Σ_i head_i W^O_i``: the concat is the sum over ``h``."""
    # MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O
    return einsum(o, W_o, "b h t d_head, h d_head d_model -> b t d_model", plus=b_o)


def causal_mask(q_len: int, k_len: int | None = None, *, device=None) -> Bool[Tensor, "q k"]:
    """True where query ``i`` may NOT see key ``j``: ``j > i + (k_len - q_len)``. Aligned at the
    bottom right, so the last query sees every key (what a KV cache needs); square when k_len = q_len."""
    k_len = q_len if k_len is None else k_len
    i = torch.arange(q_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return j > i + (k_len - q_len)


@functools.lru_cache(maxsize=64)
def causal_additive(q: int, k: int, dtype=None, device=None) -> Float[Tensor, "1 1 q k"]:
    """`causal_mask` as the float mask added to the scores (0 or −inf), made once per size,
    dtype and device: a training step asks for the same one in every block. Read only."""
    return _as_float(rearrange(causal_mask(q, k, device=device), "q k -> 1 1 q k"), dtype)


def additive_mask(attn_mask: Tensor | None, key_padding_mask: Tensor | None, *, b: int, h: int,
                  q: int, k: int, is_causal: bool = False, dtype=None, device=None
                  ) -> Float[Tensor, "#b #h #q k"] | None:
    """One float mask added to the scores, from torch's masks: ``attn_mask`` of shape (q, k),
    (b*h, q, k) or (b, h, q, k); ``key_padding_mask`` of shape (b, k). Booleans are True where
    attention is NOT allowed (-> -inf), floats are added. ``is_causal`` builds `causal_mask`
    when no ``attn_mask`` is given; with one, it is only a hint (as torch)."""
    if attn_mask is None and is_causal:
        if key_padding_mask is None:
            return causal_additive(q, k, dtype, device)
        attn_mask = causal_mask(q, k, device=device)
    out = None
    if attn_mask is not None:
        shape = tuple(attn_mask.shape)
        if shape == (q, k):
            m = rearrange(attn_mask, "q k -> 1 1 q k")
        elif shape == (b * h, q, k):
            m = rearrange(attn_mask, "(b h) q k -> b h q k", b=b)
        elif attn_mask.dim() == 4 and shape[2:] == (q, k) and shape[0] in (1, b) and shape[1] in (1, h):
            m = attn_mask
        else:
            raise ValueError(f"attn_mask has shape {shape}; expected (q, k) = {(q, k)}, (b*h, q, k) = "
                             f"{(b * h, q, k)} or (b, h, q, k) = {(b, h, q, k)} for queries of length "
                             f"{q} and keys of length {k}")
        out = _as_float(m, dtype)
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (b, k):
            raise ValueError(f"key_padding_mask has shape {tuple(key_padding_mask.shape)}; expected "
                             f"(b, k) = {(b, k)}: one flag per key, keys of length {k}")
        m = _as_float(rearrange(key_padding_mask, "b k -> b 1 1 k"), dtype)
        out = m if out is None else out + m
    return out


def _as_float(mask: Tensor, dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    if not mask.is_floating_point():
        raise TypeError(f"a mask must be bool (True = masked out) or float (added); got {mask.dtype}")
    return mask.to(dtype)


def attend(q: Float[Tensor, "b h q d_head"], k: Float[Tensor, "b h k d_head"], v: Float[Tensor, "b h k d_v"],
           mask: Tensor | None = None, *, dropout: Dropout | None = None, generator=None,
           need_weights: bool = True, is_causal: bool = False
           ) -> tuple[Float[Tensor, "b h q d_v"], Float[Tensor, "b h q k"] | None]:
    """Scaled dot-product attention on heads already split (what a KV cache calls).
    ``mask`` broadcasts to ``"b h q k"``: bool True = masked out, or float added;
    ``is_causal`` says that it is the causal mask and nothing else. Returns ``(output,
    weights)``; the weights are None when ``need_weights=False`` and the fast engine runs."""
    if mask is not None and mask.dtype == torch.bool:
        mask = _as_float(mask, q.dtype)
    p = dropout.p if (dropout is not None and dropout.training) else 0.0
    if engine.fast() and not need_weights:  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.attention(q, k, v, mask, p, is_causal), None
    # Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V            (eq. 1), d_k = d_head
    s = einsum(q, k, "b h q d_head, b h k d_head -> b h q k") / math.sqrt(q.shape[-1])
    s = s if mask is None else s + mask
    w = softmax(s)
    if p > 0:
        w = forward(dropout, w, generator=generator)
    o = einsum(w, v, "b h q k, b h k d_v -> b h q d_v")
    return o, w


# ---------------------------------------------------------------------- forward


# a KV cache's keys and values of the earlier positions; what forward returns: the weights averaged
# over heads or not (None unless need_weights), and with a cache the keys and values of every position
Past = tuple[Float[Tensor, "b h t_past d_head"], Float[Tensor, "b h t_past d_head"]]
Weights = Float[Tensor, "b q k"] | Float[Tensor, "b h q k"] | None
KV = tuple[Float[Tensor, "b h k d_head"], Float[Tensor, "b h k d_head"]]


@method
def forward(m: MultiheadAttention, query: Float[Tensor, "b q d_model"], key: Float[Tensor, "b k_new d_key"],
            value: Float[Tensor, "b k_new d_value"], *, key_padding_mask: Tensor | None = None,
            need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
            is_causal: bool = False, generator: torch.Generator | None = None, rotary: object | None = None,
            past: Past | None = None, offset: int = 0
            ) -> tuple[Float[Tensor, "b q d_model"], Weights] | tuple[Float[Tensor, "b q d_model"], Weights, KV]:
    """torch.nn.MultiheadAttention(batch_first=True): returns ``(output, weights)``; weights are
    averaged over heads unless ``average_attn_weights=False``, None unless ``need_weights``.
    ``rotary`` (a `zerotoml.transformers.Rotary`) rotates the queries and keys by their
    positions ``offset``, ``offset + 1``, ... before the scores (RoPE). ``past = (K, V)``, the
    heads of earlier positions (a KV cache), puts them before the new keys and values (masks then
    cover ``k = t_past + k_new`` keys; `causal_mask` is aligned at the bottom right) and returns
    ``(output, weights, (K, V))`` with the new rows appended; nothing is mutated."""
    b, n_q, _ = query.shape
    h = m.W_q.shape[1]
    # head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    if query is key and key is value and m.W_q.shape == m.W_k.shape == m.W_v.shape:
        q, k, v = self_heads(query, m)
    else:
        q, k, v = heads(query, m.W_q, m.b_q), heads(key, m.W_k, m.b_k), heads(value, m.W_v, m.b_v)
    if rotary is not None:
        # <R_m q_m, R_n k_n> = <q_m, R_{n−m} k_n>: the scores see relative positions only   (RoPE eq. 16)
        q, k = forward(rotary, q, offset=offset), forward(rotary, k, offset=offset)
    if past is not None:  # the new rows of K and V after the cached ones
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    n_k = k.shape[2]
    mask = additive_mask(attn_mask, key_padding_mask, b=b, h=h, q=n_q, k=n_k, is_causal=is_causal,
                         dtype=query.dtype, device=query.device)
    plain_causal = is_causal and attn_mask is None and key_padding_mask is None and n_q == n_k
    o, w = attend(q, k, v, mask, dropout=m.dropout, generator=generator, need_weights=need_weights,
                  is_causal=plain_causal)
    out = merge_heads(o, m.W_o, m.b_o)
    w = None if not need_weights else w.mean(dim=1) if average_attn_weights else w
    return (out, w) if past is None else (out, w, (k, v))


@method
def from_torch(module: torch.nn.MultiheadAttention) -> MultiheadAttention:
    """Same weights and mode. torch's ``batch_first=False`` modules are accepted too: the weights
    do not depend on the layout, but our inputs are always ``"b t d"`` (rearrange "t b d -> b t d")."""
    if module.bias_k is not None or module.bias_v is not None or module.add_zero_attn:
        raise NotImplementedError("from_torch(nn.MultiheadAttention): add_bias_kv=True and add_zero_attn=True "
                                  "are not supported; build the module with the defaults (False)")
    h = module.num_heads
    split = lambda W: rearrange(W.detach(), "(h d_head) d_in -> d_in h d_head", h=h).contiguous()  # noqa: E731
    if module._qkv_same_embed_dim:
        Wq, Wk, Wv = module.in_proj_weight.chunk(3)
    else:
        Wq, Wk, Wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    if module.in_proj_bias is None:
        bq = bk = bv = None
    else:
        bq, bk, bv = (rearrange(x.detach(), "(h d_head) -> h d_head", h=h).clone()
                      for x in module.in_proj_bias.chunk(3))
    W_o = rearrange(module.out_proj.weight.detach(), "d_model (h d_head) -> h d_head d_model", h=h).contiguous()
    b_o = None if module.out_proj.bias is None else module.out_proj.bias.detach().clone()
    return MultiheadAttention(split(Wq), split(Wk), split(Wv), W_o, bq, bk, bv, b_o,
                              Dropout(module.dropout, module.training))
