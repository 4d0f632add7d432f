"""The Transformer decoder (Vaswani et al. 2017, §3.1): masked self-attention, attention over
the encoder's output ("memory") and a feed-forward network, each with a residual connection
and a LayerNorm, post-norm (paper) or pre-norm (``norm_first``). Mirrors
torch.nn.TransformerDecoderLayer and TransformerDecoder with ``batch_first=True``.
Note: notes/transformers.md#blocks.
"""

from __future__ import annotations

import torch

from ..generic import forward, from_torch, method
from ..layers.activation import GELU, ReLU, activation as activation_layer
from ..layers.attention import MultiheadAttention
from ..layers.dropout import Dropout
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from ..shapes import Float, Tensor
from ..tree import struct
from .encoder import activation_from_torch, dropout_from_torch, feed_forward, self_attention, stack_init

__all__ = ["DecoderLayer", "Decoder"]


@struct
class DecoderLayer:
    """One decoder block; field names are torch's."""

    self_attn: MultiheadAttention       # masked self-attention over the target
    multihead_attn: MultiheadAttention  # queries from the target, keys and values from memory
    linear1: Linear
    linear2: Linear
    norm1: LayerNorm
    norm2: LayerNorm
    norm3: LayerNorm
    activation: ReLU | GELU
    dropout: Dropout   # inside the feed-forward
    dropout1: Dropout  # self-attention output
    dropout2: Dropout  # cross-attention output
    dropout3: Dropout  # feed-forward output
    norm_first: bool = False

    @classmethod
    def init(cls, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
             activation: str | object = "relu", layer_norm_eps: float = 1e-5, norm_first: bool = False,
             bias: bool = True, *, generator=None, device=None, dtype=None) -> DecoderLayer:
        """torch's defaults for every part."""
        kw = dict(device=device, dtype=dtype)
        attn = lambda: MultiheadAttention.init(d_model, nhead, dropout=dropout, bias=bias,  # noqa: E731
                                               generator=generator, **kw)
        norm = lambda: LayerNorm.init(d_model, eps=layer_norm_eps, bias=bias, **kw)  # noqa: E731
        return cls(attn(), attn(),
                   Linear.init(d_model, dim_feedforward, bias=bias, generator=generator, **kw),
                   Linear.init(dim_feedforward, d_model, bias=bias, generator=generator, **kw),
                   norm(), norm(), norm(), activation_layer(activation),
                   Dropout(dropout), Dropout(dropout), Dropout(dropout), Dropout(dropout), norm_first)


def _cross_attention(m: DecoderLayer, x: Tensor, memory: Tensor, mask, key_padding_mask, is_causal,
                     generator) -> Tensor:
    # MultiHead(Q = x, K = memory, V = memory): "encoder-decoder attention"     (§3.2.3)
    y, _ = forward(m.multihead_attn, x, memory, memory, attn_mask=mask, key_padding_mask=key_padding_mask,
                   need_weights=False, is_causal=is_causal, generator=generator)
    return forward(m.dropout2, y, generator=generator)


@method
def forward(m: DecoderLayer, tgt: Float[Tensor, "b t d_model"], memory: Float[Tensor, "b s d_model"], *,
            tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
            tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
            tgt_is_causal: bool = False, memory_is_causal: bool = False,
            generator: torch.Generator | None = None) -> Float[Tensor, "b t d_model"]:
    x, g = tgt, generator
    if m.norm_first:
        # x + Sublayer(LayerNorm(x)), three times                      (pre-norm)
        x = x + self_attention(m.self_attn, m.dropout1, forward(m.norm1, x), tgt_mask, tgt_key_padding_mask,
                               tgt_is_causal, g)[0]
        x = x + _cross_attention(m, forward(m.norm2, x), memory, memory_mask, memory_key_padding_mask,
                                 memory_is_causal, g)
        return x + feed_forward(m, forward(m.norm3, x), m.dropout3, g)
    # LayerNorm(x + Sublayer(x)), three times                          (§3.1, post-norm)
    x = forward(m.norm1, x + self_attention(m.self_attn, m.dropout1, x, tgt_mask, tgt_key_padding_mask,
                                            tgt_is_causal, g)[0])
    x = forward(m.norm2, x + _cross_attention(m, x, memory, memory_mask, memory_key_padding_mask,
                                              memory_is_causal, g))
    return forward(m.norm3, x + feed_forward(m, x, m.dropout3, g))


@struct
class Decoder:
    """A stack of N decoder layers and an optional final LayerNorm."""

    layers: list[DecoderLayer]
    norm: LayerNorm | None = None

    @classmethod
    def init(cls, num_layers: int, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
             activation: str | object = "relu", layer_norm_eps: float = 1e-5, norm_first: bool = False,
             bias: bool = True, final_norm: bool = False, *, generator=None, device=None,
             dtype=None) -> Decoder:
        """Each layer drawn afresh."""
        return cls(*stack_init(DecoderLayer.init, num_layers, d_model, nhead, dim_feedforward, dropout, activation,
                               layer_norm_eps, norm_first, bias, final_norm, generator, device, dtype))


@method
def forward(m: Decoder, tgt: Float[Tensor, "b t d_model"], memory: Float[Tensor, "b s d_model"], *,
            tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
            tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
            tgt_is_causal: bool = False, memory_is_causal: bool = False,
            generator: torch.Generator | None = None) -> Float[Tensor, "b t d_model"]:
    x = tgt
    for layer in m.layers:
        x = forward(layer, x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                    tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                    tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal, generator=generator)
    return x if m.norm is None else forward(m.norm, x)


@method
def from_torch(module: torch.nn.TransformerDecoderLayer) -> DecoderLayer:
    """Same weights and mode; our layout is always batch-first."""
    d = lambda name: dropout_from_torch(module, name)  # noqa: E731
    return DecoderLayer(from_torch(module.self_attn), from_torch(module.multihead_attn),
                        from_torch(module.linear1), from_torch(module.linear2),
                        from_torch(module.norm1), from_torch(module.norm2), from_torch(module.norm3),
                        activation_from_torch(module), d("dropout"), d("dropout1"), d("dropout2"), d("dropout3"),
                        module.norm_first)


@method
def from_torch(module: torch.nn.TransformerDecoder) -> Decoder:
    return Decoder([from_torch(layer) for layer in module.layers],
                   None if module.norm is None else from_torch(module.norm))
