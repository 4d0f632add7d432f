"""Positional encodings: sinusoidal (Vaswani et al. 2017, §3.5), learned (GPT-2) and rotary
(RoPE, Su et al. 2021, arXiv:2104.09864). Note: notes/transformers.md#positions.

Each takes an ``offset``: the position of the first token of ``x``, so that a decoder with a
KV cache can encode token ``t`` alone at position ``t``. A model asks its positions through
three generic functions, so that a new kind of positions is a new set of methods:
`add_positions` (the table added to the token embeddings, or nothing), `rotary_of` (the
rotation the attention applies to queries and keys, or None) and `n_positions`.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..einsum import einsum
from ..generic import forward, generic, method
from ..layers.embedding import Embedding
from ..shapes import Float, Tensor
from ..tree import buffer, struct

__all__ = ["sinusoidal", "SinusoidalEncoding", "LearnedPositions", "Rotary", "rope_angles", "add_positions",
           "rotary_of", "n_positions"]


@generic
def add_positions(positions, x, *, offset=0):
    """The token embeddings ``x`` ("b t d_model") with the positions ``offset .. offset + t − 1``
    in them: a table added, or ``x`` itself where the positions enter in the attention."""


@generic
def rotary_of(positions):
    """The rotation the attention applies to its queries and keys (a `Rotary`), or None."""


@generic
def n_positions(m):
    """The context length: the positions an encoding (or a model's) has."""


def _check_length(who: str, offset: int, t: int, n_positions: int) -> None:
    if offset < 0 or offset + t > n_positions:
        raise ValueError(f"{who}: a sequence of length {t} at offset {offset} needs positions up to "
                         f"{offset + t}, but the table has n_positions={n_positions}; build it with "
                         f"n_positions >= {offset + t}")


# ------------------------------------------------------------------- sinusoidal


def sinusoidal(n_positions: int, d_model: int, *, base: float = 10000.0, device=None,
               dtype=None) -> Float[Tensor, "n_positions d_model"]:
    """The table of §3.5; an odd ``d_model`` drops the last cosine."""
    pos = torch.arange(n_positions, device=device, dtype=torch.float64)
    two_i = torch.arange(0, d_model, 2, device=device, dtype=torch.float64)
    # PE(pos, 2i) = sin(pos / 10000^{2i/d_model}),  PE(pos, 2i+1) = cos(pos / 10000^{2i/d_model})   (§3.5)
    angle = einsum(pos, base ** (-two_i / d_model), "t, half -> t half")
    table = rearrange([torch.sin(angle), torch.cos(angle)], "two t half -> t (half two)")
    return table[:, :d_model].to(dtype or torch.get_default_dtype())


@struct
class SinusoidalEncoding:
    """Adds the fixed table of §3.5 to its input; the table is a buffer (not trained)."""

    table: Float[Tensor, "n_positions d_model"] = buffer()

    @classmethod
    def init(cls, n_positions: int, d_model: int, *, base: float = 10000.0, device=None,
             dtype=None) -> SinusoidalEncoding:
        return cls(sinusoidal(n_positions, d_model, base=base, device=device, dtype=dtype))


@method
def forward(m: SinusoidalEncoding, x: Float[Tensor, "b t d_model"], *, offset: int = 0
            ) -> Float[Tensor, "b t d_model"]:
    t = x.shape[1]
    _check_length("SinusoidalEncoding", offset, t, n_positions(m))
    # x + PE(pos)   for pos = offset .. offset + t - 1
    return x + m.table[offset:offset + t]


# ---------------------------------------------------------------------- learned


@struct
class LearnedPositions:
    """A trained vector per position (GPT-2's ``wpe``): an `Embedding` indexed by position."""

    table: Embedding

    @classmethod
    def init(cls, n_positions: int, d_model: int, *, std: float = 0.02, generator=None, device=None,
             dtype=None) -> LearnedPositions:
        """GPT-2's initialiser, N(0, 0.02²) (torch.nn.Embedding would use N(0, 1))."""
        W = torch.randn(n_positions, d_model, generator=generator, device=device, dtype=dtype) * std
        return cls(Embedding(W))


@method
def forward(m: LearnedPositions, x: Float[Tensor, "b t d_model"], *, offset: int = 0
            ) -> Float[Tensor, "b t d_model"]:
    t = x.shape[1]
    _check_length("LearnedPositions", offset, t, n_positions(m))
    # h_0 = U W_e + W_p: the rows of positions offset .. offset + t − 1, a slice of the table
    return x + m.table.W[offset:offset + t]


# ----------------------------------------------------------------------- rotary


def rope_angles(n_positions: int, d_head: int, *, base: float = 10000.0, device=None,
                dtype=None) -> Float[Tensor, "n_positions half"]:
    """``m θ_i`` for every position m and pair i."""
    if d_head % 2:
        raise ValueError(f"Rotary: d_head={d_head} must be even (the features rotate in pairs)")
    i = torch.arange(d_head // 2, device=device, dtype=torch.float64)
    # θ_i = 10000^{−2(i−1)/d},  i ∈ [1, 2, ..., d/2]          (RoPE eq. 15, i counted from 0 here)
    θ = base ** (-2 * i / d_head)
    m = torch.arange(n_positions, device=device, dtype=torch.float64)
    return einsum(m, θ, "t, half -> t half").to(dtype or torch.get_default_dtype())


@struct
class Rotary:
    """Rotates each pair of features of q or k by the angle ``m θ_i`` of its position m, so
    that ``<R_m q, R_n k>`` depends on ``m − n`` only. ``interleaved=True`` pairs features
    (x_1, x_2), (x_3, x_4), ... as the paper (eq. 34); False pairs (x_i, x_{i + d/2}), the
    "rotate-half" form of GPT-NeoX and LLaMA."""

    cos: Float[Tensor, "n_positions half"] = buffer()
    sin: Float[Tensor, "n_positions half"] = buffer()
    interleaved: bool = True

    @classmethod
    def init(cls, n_positions: int, d_head: int, *, base: float = 10000.0, interleaved: bool = True,
             device=None, dtype=None) -> Rotary:
        a = rope_angles(n_positions, d_head, base=base, device=device, dtype=torch.float64)
        dtype = dtype or torch.get_default_dtype()
        return cls(torch.cos(a).to(dtype), torch.sin(a).to(dtype), interleaved)


@method
def forward(m: Rotary, x: Float[Tensor, "*batch t d_head"], *, offset: int = 0) -> Float[Tensor, "*batch t d_head"]:
    """``R^d_{Θ,m} x`` for the position ``m = offset + index`` of each row of ``x``."""
    t = x.shape[-2]
    _check_length("Rotary", offset, t, n_positions(m))
    c, s = m.cos[offset:offset + t], m.sin[offset:offset + t]
    pairs = "(half two)" if m.interleaved else "(two half)"
    xp = rearrange(x, f"... t {pairs} -> ... t half two", two=2)
    # f(x_m, m) = [[cos mθ, −sin mθ], [sin mθ, cos mθ]] x_m, for each pair     (RoPE eq. 13, 34)
    R = rearrange([c, -s, s, c], "(r col) t half -> t half r col", r=2)
    y = einsum(R, xp, "t half r col, ... t half col -> ... t half r")
    return rearrange(y, f"... t half two -> ... t {pairs}")


# ------------------------------------------------- what a model asks of its positions


@method
def add_positions(p: SinusoidalEncoding | LearnedPositions, x: Float[Tensor, "b t d_model"], *, offset: int = 0
                  ) -> Float[Tensor, "b t d_model"]:
    return forward(p, x, offset=offset)


@method
def add_positions(p: Rotary, x: Float[Tensor, "b t d_model"], *, offset: int = 0) -> Float[Tensor, "b t d_model"]:
    """Nothing is added (the attention rotates q and k instead); only the length is checked."""
    _check_length("Rotary", offset, x.shape[1], n_positions(p))
    return x


@method
def rotary_of(p: SinusoidalEncoding | LearnedPositions) -> None:
    return None


@method
def rotary_of(p: Rotary) -> Rotary:
    return p


@method
def n_positions(m: SinusoidalEncoding) -> int:
    return m.table.shape[0]


@method
def n_positions(m: LearnedPositions) -> int:
    return m.table.W.shape[0]


@method
def n_positions(m: Rotary) -> int:
    return m.cos.shape[0]
