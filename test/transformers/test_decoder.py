"""Decoder layers and stacks: zerotoml/transformers/decoder.py (notes/transformers.md#blocks).
Level 3 against torch.nn.TransformerDecoderLayer / TransformerDecoder in float64 (training
mode, dropout 0)."""

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch, shapes
from zerotoml.layers.attention import causal_mask
from zerotoml.transformers.decoder import Decoder, DecoderLayer
from zerotoml.testing import assert_matches_torch

f64 = torch.float64
B, T, S, D, H, FF = 2, 4, 6, 8, 2, 12


def randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.4)
    return module


def torch_layer(norm_first, activation, bias=True):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first, bias=bias)
    return randomise(layer.double())


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, D, generator=g, dtype=f64), torch.randn(B, S, D, generator=g, dtype=f64)]


TGT_PAD = torch.tensor([[False] * T, [False, False, False, True]])
MEM_PAD = torch.tensor([[False] * S, [False, False, True, True, True, True]])
MASKS = {
    "none": dict(),
    "causal": dict(tgt_mask=causal_mask(T), tgt_is_causal=True),
    "causal+padding": dict(tgt_mask=causal_mask(T), tgt_key_padding_mask=TGT_PAD,
                           memory_key_padding_mask=MEM_PAD),
    "memory_mask": dict(memory_mask=torch.rand(T, S, generator=torch.Generator().manual_seed(3)) < 0.5,
                        memory_key_padding_mask=torch.zeros(B, S, dtype=torch.bool)),
}
MASKS["memory_mask"]["memory_mask"][:, 0] = False  # no query row with every key masked


@pytest.mark.parametrize("masks", MASKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_layer_matches_torch(norm_first, activation, masks):
    assert_matches_torch(torch_layer(norm_first, activation), inputs(), kwargs=MASKS[masks])


def test_decoder_layer_without_bias_matches_torch():
    assert_matches_torch(torch_layer(False, "relu", bias=False), inputs(), kwargs=MASKS["causal+padding"])


def test_tgt_is_causal_builds_the_mask_torch_needs_given():
    kw = dict(tgt_key_padding_mask=TGT_PAD)
    assert_matches_torch(torch_layer(True, "gelu"), inputs(), kwargs=dict(tgt_is_causal=True, **kw),
                         torch_kwargs=dict(tgt_mask=causal_mask(T), tgt_is_causal=True, **kw))


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_matches_torch(norm_first, final_norm):
    norm = randomise(nn.LayerNorm(D).double(), seed=4) if final_norm else None
    module = randomise(nn.TransformerDecoder(torch_layer(norm_first, "relu"), 2, norm=norm), seed=5)
    assert_matches_torch(module, inputs(), kwargs=MASKS["causal+padding"])
    model = from_torch(module)
    assert isinstance(model, Decoder) and len(model.layers) == 2 and (model.norm is None) == (not final_norm)


def test_memory_mask_of_the_wrong_length_is_named():
    m = DecoderLayer.init(D, H, FF, activation="gelu", norm_first=True, dtype=f64)
    tgt, mem = inputs()
    with pytest.raises(ValueError, match=r"attn_mask has shape \(4, 5\); expected \(q, k\) = \(4, 6\)"):
        forward(m, tgt, mem, memory_mask=torch.zeros(T, 5, dtype=torch.bool))


@pytest.mark.skipif(not shapes.CHECKS, reason="shape checks are off (ZEROTOML_CHECKS=0)")
def test_memory_of_another_width_is_refused():
    m = DecoderLayer.init(D, H, FF, dtype=f64)
    tgt, _ = inputs()
    with pytest.raises(TypeError, match="memory"):  # d_model of memory differs from the layer's
        forward(m, tgt, torch.randn(B, S, D + 1, dtype=f64))
