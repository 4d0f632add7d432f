"""The Transformer encoder (Vaswani et al. 2017, §3.1): self-attention and a position-wise
feed-forward network, each wrapped in a residual connection and a LayerNorm, post-norm as
the paper or pre-norm as GPT-2 (``norm_first``). Mirrors torch.nn.TransformerEncoderLayer
and TransformerEncoder with ``batch_first=True``. Note: notes/transformers.md#blocks.
"""

from __future__ import annotations

import torch

from ..generic import forward, from_torch, method
from ..layers.activation import GELU, ReLU, activation as activation_layer
from ..layers.attention import KV, MultiheadAttention, Past
from ..layers.dropout import Dropout
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from ..shapes import Float, Tensor
from ..tree import struct

__all__ = ["EncoderLayer", "Encoder", "feed_forward", "self_attention"]


@struct
class EncoderLayer:
    """One encoder block; the field names are torch's, so a reader can move between the two."""

    self_attn: MultiheadAttention
    linear1: Linear    # d_model -> dim_feedforward
    linear2: Linear    # dim_feedforward -> d_model
    norm1: LayerNorm   # around the attention sub-layer
    norm2: LayerNorm   # around the feed-forward sub-layer
    activation: ReLU | GELU
    dropout: Dropout   # inside the feed-forward, after the activation
    dropout1: Dropout  # on the attention sub-layer's output
    dropout2: Dropout  # on the feed-forward sub-layer's output
    norm_first: bool = False

    @classmethod
    def init(cls, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
             activation: str | object = "relu", layer_norm_eps: float = 1e-5, norm_first: bool = False,
             bias: bool = True, *, generator=None, device=None, dtype=None) -> EncoderLayer:
        """torch's defaults for every part (see MultiheadAttention.init, Linear.init, LayerNorm.init)."""
        kw = dict(device=device, dtype=dtype)
        return cls(
            MultiheadAttention.init(d_model, nhead, dropout=dropout, bias=bias, generator=generator, **kw),
            Linear.init(d_model, dim_feedforward, bias=bias, generator=generator, **kw),
            Linear.init(dim_feedforward, d_model, bias=bias, generator=generator, **kw),
            LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, **kw),
            LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, **kw),
            activation_layer(activation), Dropout(dropout), Dropout(dropout), Dropout(dropout), norm_first)


def self_attention(attn: MultiheadAttention, drop: Dropout, x: Tensor, mask: Tensor | None,
                   key_padding_mask: Tensor | None, is_causal: bool, generator, rotary=None,
                   past: Past | None = None, offset: int = 0) -> tuple[Tensor, KV | None]:
    """The attention sub-layer before its residual sum, ``Dropout(MultiHead(x, x, x))``, and the
    keys and values so far when given the ``past`` ones (else None)."""
    y, _, *present = forward(attn, x, x, x, attn_mask=mask, key_padding_mask=key_padding_mask,
                             need_weights=False, is_causal=is_causal, generator=generator, rotary=rotary,
                             past=past, offset=offset)
    return forward(drop, y, generator=generator), (present[0] if present else None)


def feed_forward(m, x: Tensor, drop: Dropout, generator) -> Tensor:
    """The feed-forward sub-layer of a block ``m`` (fields linear1, activation, dropout, linear2)."""
    # FFN(x) = max(0, x W_1 + b_1) W_2 + b_2                        (eq. 2; GELU in place of max(0, ·) if chosen)
    h = forward(m.activation, forward(m.linear1, x))
    y = forward(m.linear2, forward(m.dropout, h, generator=generator))
    return forward(drop, y, generator=generator)


@method
def forward(m: EncoderLayer, src: Float[Tensor, "b t d_model"], *, src_mask: Tensor | None = None,
            src_key_padding_mask: Tensor | None = None, is_causal: bool = False,
            generator: torch.Generator | None = None, rotary: object | None = None, past: Past | None = None,
            offset: int = 0) -> Float[Tensor, "b t d_model"] | tuple[Float[Tensor, "b t d_model"], KV]:
    """``rotary``: RoPE on the queries and keys of the self-attention, ``offset`` the position of
    the first token of ``src``. ``past = (K, V)``: the self-attention's keys and values of the
    positions before ``src`` (a KV cache, see MultiheadAttention); then the block returns
    ``(output, (K, V))``, the keys and values of every position so far."""
    x = src
    attention = lambda h: self_attention(m.self_attn, m.dropout1, h, src_mask, src_key_padding_mask,  # noqa: E731
                                         is_causal, generator, rotary, past, offset)
    if m.norm_first:
        # x + Sublayer(LayerNorm(x))                                  (pre-norm, GPT-2)
        a, present = attention(forward(m.norm1, x))
        x = x + a
        x = x + feed_forward(m, forward(m.norm2, x), m.dropout2, generator)
    else:
        # LayerNorm(x + Sublayer(x))                                  (§3.1, post-norm)
        a, present = attention(x)
        x = forward(m.norm1, x + a)
        x = forward(m.norm2, x + feed_forward(m, x, m.dropout2, generator))
    return x if past is None else (x, present)


@struct
class Encoder:
    """A stack of N encoder layers and an optional final LayerNorm (needed after pre-norm layers)."""

    layers: list[EncoderLayer]
    norm: LayerNorm | None = None

    @classmethod
    def init(cls, num_layers: int, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
             activation: str | object = "relu", layer_norm_eps: float = 1e-5, norm_first: bool = False,
             bias: bool = True, final_norm: bool = False, *, generator=None, device=None,
             dtype=None) -> Encoder:
        """Each layer drawn afresh (torch deep-copies one layer, so its layers start equal)."""
        return cls(*stack_init(EncoderLayer.init, num_layers, d_model, nhead, dim_feedforward, dropout, activation,
                               layer_norm_eps, norm_first, bias, final_norm, generator, device, dtype))


def stack_init(layer_init, num_layers: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
               activation, layer_norm_eps: float, norm_first: bool, bias: bool, final_norm: bool, generator,
               device, dtype) -> tuple[list, LayerNorm | None]:
    """The layers of a stack (Encoder's or Decoder's), each drawn afresh by ``layer_init``, and
    its final LayerNorm or None."""
    layers = [layer_init(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias,
                         generator=generator, device=device, dtype=dtype) for _ in range(num_layers)]
    norm = LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype) if final_norm else None
    return layers, norm


@method
def forward(m: Encoder, src: Float[Tensor, "b t d_model"], *, mask: Tensor | None = None,
            src_key_padding_mask: Tensor | None = None, is_causal: bool = False,
            generator: torch.Generator | None = None) -> Float[Tensor, "b t d_model"]:
    """torch.nn.TransformerEncoder's forward (its mask is called ``mask``)."""
    x = src
    for layer in m.layers:
        x = forward(layer, x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal,
                    generator=generator)
    return x if m.norm is None else forward(m.norm, x)


# ------------------------------------------------------------------ from_torch


def activation_from_torch(module: torch.nn.Module) -> ReLU | GELU:
    """torch stores a layer's activation as a function (F.relu, F.gelu) or a module."""
    act = module.activation
    if act is torch.nn.functional.relu:
        return ReLU()
    if act is torch.nn.functional.gelu:
        return GELU()
    if isinstance(act, (torch.nn.ReLU, torch.nn.GELU)):
        return from_torch(act)
    raise NotImplementedError(f"from_torch({type(module).__name__}): activation {act!r} is not supported; "
                              f"expected 'relu', 'gelu', nn.ReLU or nn.GELU")


def dropout_from_torch(module: torch.nn.Module, name: str) -> Dropout:
    return Dropout(getattr(module, name).p, module.training)


@method
def from_torch(module: torch.nn.TransformerEncoderLayer) -> EncoderLayer:
    """Same weights and mode; our layout is always batch-first (see MultiheadAttention)."""
    d = lambda name: dropout_from_torch(module, name)  # noqa: E731
    return EncoderLayer(from_torch(module.self_attn), from_torch(module.linear1), from_torch(module.linear2),
                        from_torch(module.norm1), from_torch(module.norm2), activation_from_torch(module),
                        d("dropout"), d("dropout1"), d("dropout2"), module.norm_first)


@method
def from_torch(module: torch.nn.TransformerEncoder) -> Encoder:
    return Encoder([from_torch(layer) for layer in module.layers],
                   None if module.norm is None else from_torch(module.norm))
