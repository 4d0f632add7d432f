"""The parts of the DDPM U-Net (Ho et al. 2020, appendix B): the residual block with the time
added, self-attention over the pixels, down and up sampling, and the levels they make.
Note: notes/unet.md#the-architecture.

Each part is an existing zerotoml layer put together (GroupNorm, SiLU, Conv, Linear,
MultiheadAttention, Dropout), so both engines run it with no code here.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat

from ..generic import forward, method
from ..layers.activation import silu
from ..layers.attention import MultiheadAttention
from ..layers.conv import Conv
from ..layers.dropout import Dropout
from ..layers.linear import Linear
from ..layers.norm import GroupNorm
from ..shapes import Float, Tensor
from ..tree import struct

__all__ = ["ResnetBlock", "AttentionBlock", "Upsample", "nearest_upsample", "downsample", "DownLevel",
           "MidLevel", "UpLevel"]


def _kw(generator, device, dtype) -> dict:
    return dict(generator=generator, device=device, dtype=dtype)


# ------------------------------------------------------------------ the residual block


@struct
class ResnetBlock:
    """PixelCNN++'s residual block with group normalisation (the paper's change) and the time
    embedding added between the two convolutions; a 1x1 convolution on the shortcut when the
    channels change. diffusers' ResnetBlock2D with ``time_embedding_norm="default"``."""

    norm1: GroupNorm
    conv1: Conv
    time_proj: Linear
    norm2: GroupNorm
    dropout: Dropout
    conv2: Conv
    shortcut: Conv | None
    output_scale: float = 1.0

    @classmethod
    def init(cls, c_in: int, c_out: int, d_emb: int, *, groups: int = 32, eps: float = 1e-5,
             dropout: float = 0.0, generator=None, device=None, dtype=None) -> ResnetBlock:
        """torch's default initialiser for every layer (as diffusers)."""
        kw, nw = _kw(generator, device, dtype), dict(eps=eps, device=device, dtype=dtype)
        shortcut = None if c_in == c_out else Conv.init(c_in, c_out, 1, dims=2, **kw)
        return cls(GroupNorm.init(groups, c_in, **nw), Conv.init(c_in, c_out, 3, 1, 1, dims=2, **kw),
                   Linear.init(d_emb, c_out, **kw), GroupNorm.init(groups, c_out, **nw), Dropout(dropout),
                   Conv.init(c_out, c_out, 3, 1, 1, dims=2, **kw), shortcut)


@method
def forward(m: ResnetBlock, x: Float[Tensor, "b c_in h w"], temb: Float[Tensor, "b d_emb"], *,
            generator: torch.Generator | None = None) -> Float[Tensor, "b c_out h w"]:
    """``generator`` seeds the dropout mask (training mode with p > 0)."""
    # h = conv_1(silu(GN_1(x))) + W_t silu(temb) + b_t      (the time, one value per channel)
    h = forward(m.conv1, silu(forward(m.norm1, x)))
    h = h + rearrange(forward(m.time_proj, silu(temb)), "b c -> b c 1 1")
    # h = conv_2(dropout(silu(GN_2(h))))
    h = forward(m.conv2, forward(m.dropout, silu(forward(m.norm2, h)), generator=generator))
    # y = (x + h) / s, x through a 1x1 convolution when the channels change
    x = x if m.shortcut is None else forward(m.shortcut, x)
    return (x + h) / m.output_scale


# ------------------------------------------------------------------- self-attention


@struct
class AttentionBlock:
    """Self-attention over the h·w pixels, each a token of c channels, after a GroupNorm, added
    back to its input (the residual); diffusers' Attention with ``residual_connection=True``."""

    norm: GroupNorm
    attn: MultiheadAttention
    output_scale: float = 1.0

    @classmethod
    def init(cls, c: int, *, heads: int = 1, groups: int = 32, eps: float = 1e-5, generator=None,
             device=None, dtype=None) -> AttentionBlock:
        """The paper's block has one head; ``heads`` splits the c channels into heads."""
        return cls(GroupNorm.init(groups, c, eps=eps, device=device, dtype=dtype),
                   MultiheadAttention.init(c, heads, **_kw(generator, device, dtype)))


@method
def forward(m: AttentionBlock, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h w"]:
    # the pixels as a sequence of h·w tokens of c channels
    tokens = rearrange(forward(m.norm, x), "b c h w -> b (h w) c")
    # y = (x + MultiHead(GN(x), GN(x), GN(x))) / s
    out, _ = forward(m.attn, tokens, tokens, tokens, need_weights=False)
    return (x + rearrange(out, "b (h w) c -> b c h w", h=x.shape[2])) / m.output_scale


# ------------------------------------------------------------ down and up sampling


def downsample(c: int, *, generator=None, device=None, dtype=None) -> Conv:
    """Halve the resolution: a 3x3 convolution of stride 2, padding 1 (⌈h/2⌉ rows)."""
    return Conv.init(c, c, 3, 2, 1, dims=2, **_kw(generator, device, dtype))


def nearest_upsample(x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    """Double the resolution by nearest neighbours: y[·, ·, i, j] = x[·, ·, ⌊i/2⌋, ⌊j/2⌋]."""
    return repeat(x, "b c h w -> b c (h 2) (w 2)")


@struct
class Upsample:
    """Nearest-neighbour upsampling by 2, then a 3x3 convolution (diffusers' Upsample2D)."""

    conv: Conv

    @classmethod
    def init(cls, c: int, *, generator=None, device=None, dtype=None) -> Upsample:
        return cls(Conv.init(c, c, 3, 1, 1, dims=2, **_kw(generator, device, dtype)))


@method
def forward(m: Upsample, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    return forward(m.conv, nearest_upsample(x))


# ------------------------------------------------------------------------ the levels


@struct
class DownLevel:
    """One resolution on the way down: residual blocks (each followed by self-attention at the
    levels that have it), then a downsampling convolution except at the last level. Every
    block's output, and the downsampled one, is kept for a skip connection."""

    resnets: list[ResnetBlock]
    attentions: list[AttentionBlock]  # empty, or one per residual block
    downsample: Conv | None


@method
def forward(m: DownLevel, h: Float[Tensor, "b c_in h w"], temb: Float[Tensor, "b d_emb"], *,
            generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
    """``(h, skips)``: the level's output and what it keeps for the way up, in order."""
    skips = []
    for i, block in enumerate(m.resnets):
        h = forward(block, h, temb, generator=generator)
        if m.attentions:
            h = forward(m.attentions[i], h)
        skips.append(h)
    if m.downsample is not None:
        h = forward(m.downsample, h)
        skips.append(h)
    return h, skips


@struct
class MidLevel:
    """The bottom of the U: residual block, self-attention, residual block."""

    first: ResnetBlock
    attention: AttentionBlock | None
    second: ResnetBlock


@method
def forward(m: MidLevel, h: Float[Tensor, "b c h w"], temb: Float[Tensor, "b d_emb"], *,
            generator: torch.Generator | None = None) -> Float[Tensor, "b c h w"]:
    h = forward(m.first, h, temb, generator=generator)
    h = h if m.attention is None else forward(m.attention, h)
    return forward(m.second, h, temb, generator=generator)


@struct
class UpLevel:
    """One resolution on the way up: one residual block more than on the way down, each taking
    the previous output concatenated with a skip (the last kept first), then upsampling except
    at the last level."""

    resnets: list[ResnetBlock]
    attentions: list[AttentionBlock]  # empty, or one per residual block
    upsample: Upsample | None


@method
def forward(m: UpLevel, h: Float[Tensor, "b c h w"], skips: list[Tensor], temb: Float[Tensor, "b d_emb"], *,
            generator: torch.Generator | None = None) -> Float[Tensor, "b c_out h_out w_out"]:
    """``skips``: this level's ``len(m.resnets)`` skip connections, in the order they were kept."""
    if len(skips) != len(m.resnets):
        raise ValueError(f"UpLevel: {len(skips)} skip connections for {len(m.resnets)} residual blocks")
    for i, block in enumerate(m.resnets):
        # [h, skip] along the channels, the most recent skip first (a stack: last in, first out)
        h = forward(block, torch.cat([h, skips[-1 - i]], dim=1), temb, generator=generator)
        if m.attentions:
            h = forward(m.attentions[i], h)
    return h if m.upsample is None else forward(m.upsample, h)
