"""The U-Net of DDPM: Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models" (2020,
arXiv:2006.11239), appendix B, as diffusers' UNet2DModel builds it. Note: notes/unet.md.

"Our neural network architecture follows the backbone of PixelCNN++, which is a U-Net based on
a Wide ResNet. We replaced weight normalization with group normalization." The network takes
the noisy image x_t and the step t and returns an image of the same size, ε_θ(x_t, t): a 3x3
convolution in, levels of residual blocks that halve the resolution on the way down, a middle
(residual block, self-attention, residual block), levels that double it on the way up taking
the skip connections of the way down, then GroupNorm, SiLU and a 3x3 convolution out. The
parts are in unet_blocks.py, the time embedding in embeddings.py.
"""

from __future__ import annotations

import importlib.util

import torch
from einops import rearrange

from ..generic import forward, from_torch, method
from ..layers.activation import silu
from ..layers.attention import MultiheadAttention
from ..layers.conv import Conv
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.norm import GroupNorm
from ..shapes import Float, Int, Tensor
from ..tree import struct
from .common import times
from .embeddings import TimeEmbedding, class_rows
from .unet_blocks import AttentionBlock, DownLevel, MidLevel, ResnetBlock, Upsample, UpLevel, downsample

__all__ = ["UNet", "check_size", "unet_from_diffusers"]


@struct
class UNet:
    """ε_θ(x_t, t[, y]): ``forward(unet, x, t, class_labels=y)``. With ``class_embedding`` the
    label's row is added to the time embedding; ``null_class`` is the row that means "no
    label" (classifier-free guidance), used where ``class_labels`` is None."""

    conv_in: Conv
    time_embedding: TimeEmbedding
    class_embedding: Embedding | None
    down: list[DownLevel]
    mid: MidLevel
    up: list[UpLevel]
    norm_out: GroupNorm
    conv_out: Conv
    null_class: int | None = None

    @classmethod
    def init(cls, in_channels: int = 3, out_channels: int | None = None, *, channels: tuple[int, ...] = (32, 64),
             layers_per_block: int = 2, attention: tuple[bool, ...] | None = None, mid_attention: bool = True,
             heads: int = 1, groups: int = 8, eps: float = 1e-5, dropout: float = 0.0,
             time_embed_dim: int | None = None, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
             num_classes: int | None = None, null_class: bool = False, sample_size: int | tuple[int, int] | None = None,
             generator=None, device=None, dtype=None) -> UNet:
        """A U-Net with ``len(channels)`` levels of ``channels[i]`` channels, ``layers_per_block``
        residual blocks each (one more on the way up) and self-attention at the levels where
        ``attention[i]`` (default: the lowest level only) and in the middle. The time embedding
        has ``time_embed_dim = 4 channels[0]`` dimensions. ``num_classes`` adds a table of class
        embeddings, with one row more, the null class ``num_classes``, when ``null_class``.
        Every layer has torch's default initialiser, as diffusers (the paper's TensorFlow code
        uses others); one head is the paper's, the sinusoids' options and ``eps`` diffusers'."""
        n = len(channels)
        attention = tuple(i == n - 1 for i in range(n)) if attention is None else tuple(attention)
        if len(attention) != n:
            raise ValueError(f"UNet.init: attention={attention} has {len(attention)} entries; expected one per "
                             f"level, {n} (channels={channels})")
        if sample_size is not None:
            check_size(sample_size, sample_size, n - 1, n)
        kw = dict(generator=generator, device=device, dtype=dtype)
        d_emb = time_embed_dim or 4 * channels[0]
        res = dict(groups=groups, eps=eps, dropout=dropout, **kw)
        attn = dict(heads=heads, groups=groups, eps=eps, **kw)
        down, c_in = [], channels[0]
        for i, c in enumerate(channels):
            blocks = [ResnetBlock.init(c_in if j == 0 else c, c, d_emb, **res) for j in range(layers_per_block)]
            attns = [AttentionBlock.init(c, **attn) for _ in blocks] if attention[i] else []
            down.append(DownLevel(blocks, attns, downsample(c, **kw) if i < n - 1 else None))
            c_in = c
        c = channels[-1]
        mid = MidLevel(ResnetBlock.init(c, c, d_emb, **res), AttentionBlock.init(c, **attn) if mid_attention else None,
                       ResnetBlock.init(c, c, d_emb, **res))
        # the way up: level i mirrors down level n−1−i; its blocks take [h, skip] where the skips
        # are the down level's outputs, newest first, and the last one the level below's output
        up, prev = [], channels[-1]
        for i, c in enumerate(reversed(channels)):
            below = channels[max(n - 2 - i, 0)]
            blocks = []
            for j in range(layers_per_block + 1):
                skip = below if j == layers_per_block else c
                blocks.append(ResnetBlock.init((prev if j == 0 else c) + skip, c, d_emb, **res))
            attns = [AttentionBlock.init(c, **attn) for _ in blocks] if attention[n - 1 - i] else []
            up.append(UpLevel(blocks, attns, Upsample.init(c, **kw) if i < n - 1 else None))
            prev = c
        table = None
        if num_classes is not None:
            table = Embedding.init(num_classes + int(null_class), d_emb, **kw)
        return cls(Conv.init(in_channels, channels[0], 3, 1, 1, dims=2, **kw),
                   TimeEmbedding.init(channels[0], d_emb, flip_sin_to_cos=flip_sin_to_cos,
                                      downscale_freq_shift=freq_shift, **kw),
                   table, down, mid, up, GroupNorm.init(groups, channels[0], eps=eps, device=device, dtype=dtype),
                   Conv.init(channels[0], out_channels or in_channels, 3, 1, 1, dims=2, **kw),
                   num_classes if (num_classes is not None and null_class) else None)


def check_size(h: int, w: int, halvings: int, levels: int) -> None:
    """Each side must halve ``halvings`` times exactly, or the skips would not fit on the way up."""
    factor = 2**halvings
    if h % factor or w % factor:
        raise ValueError(f"UNet: the image is {h}x{w}, but a U-Net of {levels} levels halves it {halvings} "
                         f"times, so each side must be a multiple of {factor}; pad or crop the image to "
                         f"{-(-h // factor) * factor}x{-(-w // factor) * factor}, or use fewer levels")


@method
def forward(m: UNet, x: Float[Tensor, "b c h w"], t: Tensor | int | float, *,
            class_labels: Int[Tensor, "b"] | None = None,
            generator: torch.Generator | None = None) -> Float[Tensor, "b c_out h w"]:
    """ε_θ(x_t, t): ``t`` one step per example (or one for all), ``class_labels`` one label per
    example; ``generator`` seeds the dropout masks in training mode."""
    halvings = sum(level.downsample is not None for level in m.down)
    check_size(x.shape[2], x.shape[3], halvings, len(m.down))
    t = times(t, x)
    # temb = MLP(PE(t)) [+ E[y]]: the time embedding, plus the label's row
    temb = forward(m.time_embedding, t)
    rows = class_rows("UNet", m.class_embedding, m.null_class, class_labels, x.shape[0], x.device)
    temb = temb if rows is None else temb + rows
    h = forward(m.conv_in, x)
    skips = [h]  # the skip connections, in the order they are made
    for level in m.down:
        h, kept = forward(level, h, temb, generator=generator)
        skips += kept
    h = forward(m.mid, h, temb, generator=generator)
    for level in m.up:  # each takes the newest len(level.resnets) skips off the stack
        k = len(level.resnets)
        h = forward(level, h, skips[-k:], temb, generator=generator)
        skips = skips[:-k]
    # ε = conv_out(silu(GN(h)))
    return forward(m.conv_out, silu(forward(m.norm_out, h)))


# ----------------------------------------------------------------- from diffusers


def _refuse(what: str, value: object, supported: str = "notes/unet.md#validation lists what converts") -> None:
    raise NotImplementedError(f"from_torch(UNet2DModel): {what}={value!r} is not supported; {supported}")


def _resnet(m: torch.nn.Module) -> ResnetBlock:
    """diffusers' ResnetBlock2D: norm1, conv1, time_emb_proj, norm2, dropout, conv2, conv_shortcut."""
    if m.time_embedding_norm != "default":
        _refuse("resnet_time_scale_shift", m.time_embedding_norm, "use 'default' (the time added)")
    if m.up or m.down or m.skip_time_act or m.time_emb_proj is None:
        _refuse("a residual block with (up, down, skip_time_act)", (m.up, m.down, m.skip_time_act))
    if not isinstance(m.nonlinearity, torch.nn.SiLU):
        _refuse("act_fn", type(m.nonlinearity).__name__, "use 'silu'")
    shortcut = None if m.conv_shortcut is None else from_torch(m.conv_shortcut)
    return ResnetBlock(from_torch(m.norm1), from_torch(m.conv1), from_torch(m.time_emb_proj), from_torch(m.norm2),
                       from_torch(m.dropout), from_torch(m.conv2), shortcut, float(m.output_scale_factor))


def _attention(m: torch.nn.Module) -> AttentionBlock:
    """diffusers' Attention over the pixels: group_norm, to_q, to_k, to_v, to_out, residual."""
    if type(m.processor).__name__ not in ("AttnProcessor2_0", "AttnProcessor"):
        _refuse("attention processor", type(m.processor).__name__, "use the default (AttnProcessor2_0)")
    if (m.group_norm is None or m.spatial_norm is not None or not m.residual_connection or m.norm_q is not None
            or m.is_cross_attention or m.to_out[1].p != 0):
        _refuse("an attention block other than UNet2DModel's", type(m).__name__)
    h = m.heads
    W = {k: rearrange(getattr(m, f"to_{k}").weight.detach(), "(h d) c -> c h d", h=h).contiguous() for k in "qkv"}
    b = {k: None if getattr(m, f"to_{k}").bias is None else
         rearrange(getattr(m, f"to_{k}").bias.detach(), "(h d) -> h d", h=h).clone() for k in "qkv"}
    out = m.to_out[0]
    W_o = rearrange(out.weight.detach(), "c (h d) -> h d c", h=h).contiguous()
    b_o = None if out.bias is None else out.bias.detach().clone()
    mha = MultiheadAttention(W["q"], W["k"], W["v"], W_o, b["q"], b["k"], b["v"], b_o, Dropout(0.0, m.training))
    return AttentionBlock(from_torch(m.group_norm), mha, float(m.rescale_output_factor))


def _downsample(m: torch.nn.Module) -> Conv:
    """diffusers' Downsample2D: padding 0 pads one row and column after, then convolves."""
    if not m.use_conv or m.norm is not None:
        _refuse("a Downsample2D without its convolution or with a norm", type(m.conv).__name__)
    conv = from_torch(m.conv)
    if m.padding == 0:
        conv = Conv(conv.W, conv.b, conv.stride, ((0, 1), (0, 1)), conv.dilation, conv.groups)
    return conv


def _upsample(m: torch.nn.Module) -> Upsample:
    if not m.use_conv or m.use_conv_transpose or not m.interpolate or m.norm is not None:
        _refuse("an Upsample2D other than nearest then a convolution", type(m).__name__)
    return Upsample(from_torch(m.conv if m.name == "conv" else m.Conv2d_0))


def _level(block: torch.nn.Module, down: bool) -> DownLevel | UpLevel:
    names = ("DownBlock2D", "AttnDownBlock2D") if down else ("UpBlock2D", "AttnUpBlock2D")
    kind = type(block).__name__
    if kind not in names:
        _refuse("down_block_types" if down else "up_block_types", kind, f"use {' or '.join(names)}")
    option = "downsample_type" if down else "upsample_type"
    if getattr(block, option, "conv") not in ("conv", None):
        _refuse(option, getattr(block, option), "use 'conv'")
    resnets = [_resnet(r) for r in block.resnets]
    attns = [_attention(a) for a in getattr(block, "attentions", [])]
    if down:
        return DownLevel(resnets, attns, None if block.downsamplers is None else _downsample(block.downsamplers[0]))
    return UpLevel(resnets, attns, None if block.upsamplers is None else _upsample(block.upsamplers[0]))


def unet_from_diffusers(module: torch.nn.Module, null_class: int | None = None) -> UNet:
    """What ``from_torch(UNet2DModel)`` does; duck-typed, so it needs no import of diffusers."""
    cfg = module.config
    for key, supported in (("center_input_sample", False), ("time_embedding_type", "positional"),
                           ("class_embed_type", None), ("mid_block_type", "UNetMidBlock2D"),
                           ("resnet_time_scale_shift", "default")):
        if cfg.get(key, supported) != supported:
            _refuse(key, cfg[key], f"use {supported!r}")
    te, tp = module.time_embedding, module.time_proj
    if te.cond_proj is not None or te.post_act is not None or not isinstance(te.act, torch.nn.SiLU):
        _refuse("a TimestepEmbedding with cond_proj, post_act or the activation", type(te.act).__name__)
    time = TimeEmbedding(from_torch(te.linear_1), from_torch(te.linear_2), tp.num_channels, bool(tp.flip_sin_to_cos),
                         float(tp.downscale_freq_shift), 10000.0, float(tp.scale))
    mid = module.mid_block
    if len(mid.resnets) != 2:
        _refuse("residual blocks in the middle", len(mid.resnets), "UNet2DModel's middle has 2")
    attn = None if mid.attentions[0] is None else _attention(mid.attentions[0])
    table = None if module.class_embedding is None else from_torch(module.class_embedding)
    if null_class is not None and (table is None or not 0 <= null_class < table.W.shape[0]):
        raise ValueError(f"from_torch(UNet2DModel): null_class={null_class} is not a row of its class table "
                         f"({'none' if table is None else table.W.shape[0]} rows)")
    if not isinstance(module.conv_act, torch.nn.SiLU):
        _refuse("act_fn", type(module.conv_act).__name__, "use 'silu'")
    return UNet(from_torch(module.conv_in), time, table, [_level(b, True) for b in module.down_blocks],
                MidLevel(_resnet(mid.resnets[0]), attn, _resnet(mid.resnets[1])),
                [_level(b, False) for b in module.up_blocks], from_torch(module.conv_norm_out),
                from_torch(module.conv_out), null_class)


if importlib.util.find_spec("diffusers") is not None:  # a test-only dependency: registered where installed
    from diffusers import UNet2DModel as _UNet2DModel

    @method
    def from_torch(module: _UNet2DModel, *, null_class: int | None = None) -> UNet:  # noqa: F811
        """The U-Net with the weights, dtype, device and mode of a diffusers UNet2DModel (the
        configurations notes/unet.md lists; others are refused by name). ``null_class`` names a
        row of its class table as the null class (classifier-free guidance)."""
        return unet_from_diffusers(module, null_class)
