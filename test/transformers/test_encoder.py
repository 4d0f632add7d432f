"""Encoder layers and stacks: zerotoml/transformers/encoder.py (notes/transformers.md#blocks).
Level 3 against torch.nn.TransformerEncoderLayer / TransformerEncoder in float64, compared in
training mode with dropout 0 (grad enabled: torch's eager path, not its fused eval kernel)."""

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch
from zerotoml.layers.activation import GELU, ReLU
from zerotoml.layers.attention import causal_mask
from zerotoml.transformers.encoder import Encoder, EncoderLayer
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import set_training

f64 = torch.float64
B, T, D, H, FF = 2, 5, 8, 2, 12


def randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.4)
    return module


def torch_layer(norm_first, activation, bias=True, dropout=0.0):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=dropout, activation=activation, batch_first=True,
                                       norm_first=norm_first, bias=bias)
    return randomise(layer.double())


PADDING = torch.tensor([[False] * T, [False, False, False, True, True]])
MASKS = {
    "none": dict(),
    "causal": dict(src_mask=causal_mask(T), is_causal=True),
    "padding": dict(src_key_padding_mask=PADDING),
    "float+padding": dict(src_mask=torch.randn(T, T, generator=torch.Generator().manual_seed(2), dtype=f64),
                          src_key_padding_mask=torch.zeros(B, T, dtype=f64).masked_fill(PADDING, float("-inf"))),
}


@pytest.mark.parametrize("masks", MASKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU(approximate="tanh")], ids=["relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_layer_matches_torch(norm_first, activation, masks):
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1), dtype=f64)
    assert_matches_torch(torch_layer(norm_first, activation), [x], kwargs=MASKS[masks])


def test_encoder_layer_without_bias_matches_torch():
    x = torch.randn(B, T, D, dtype=f64)
    assert_matches_torch(torch_layer(True, "relu", bias=False), [x], kwargs=MASKS["padding"])


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_matches_torch(norm_first, final_norm):
    layer = torch_layer(norm_first, "gelu")
    norm = randomise(nn.LayerNorm(D).double(), seed=4) if final_norm else None
    module = randomise(nn.TransformerEncoder(layer, 3, norm=norm, enable_nested_tensor=False), seed=5)
    x = torch.randn(B, T, D, dtype=f64)
    assert_matches_torch(module, [x], kwargs=dict(mask=causal_mask(T), src_key_padding_mask=PADDING))
    model = from_torch(module)
    assert len(model.layers) == 3 and (model.norm is None) == (not final_norm)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: nested tensors are a prototype
@pytest.mark.parametrize("norm_first", [False, True])
def test_eval_mode_matches_torch_fused_kernel(norm_first):
    """In eval mode without grad torch runs its fused encoder kernel; dropout is off in both.
    torch's TransformerEncoder (nested tensors) also zeroes padded positions: compare the rest."""
    layer = torch_layer(norm_first, "relu", dropout=0.3).eval()
    x = torch.randn(B, T, D, dtype=f64)
    ours = from_torch(layer)
    assert not ours.dropout.training and not ours.self_attn.dropout.training
    with torch.no_grad():
        torch.testing.assert_close(forward(ours, x, src_key_padding_mask=PADDING),
                                   layer(x, src_key_padding_mask=PADDING), atol=1e-12, rtol=1e-12)
        enc = nn.TransformerEncoder(layer, 2).eval()
        theirs = enc(x, src_key_padding_mask=PADDING)
        mine = forward(from_torch(enc), x, src_key_padding_mask=PADDING)
    keep = ~PADDING
    torch.testing.assert_close(mine[keep], theirs[keep], atol=1e-12, rtol=1e-12)


def test_dropout_is_active_in_training_mode_only():
    m = EncoderLayer.init(D, H, FF, dropout=0.5, generator=torch.Generator().manual_seed(0), dtype=f64)
    x = torch.randn(B, T, D, dtype=f64)
    a = forward(m, x, generator=torch.Generator().manual_seed(1))
    b = forward(m, x, generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max() > 1e-3
    e = set_training(m, False)
    torch.testing.assert_close(forward(e, x, generator=torch.Generator().manual_seed(1)),
                               forward(e, x, generator=torch.Generator().manual_seed(2)), atol=0, rtol=0)


def test_init_builds_the_chosen_block():
    enc = Encoder.init(2, D, H, FF, activation="gelu", norm_first=True, final_norm=True, dtype=f64)
    assert isinstance(enc.layers[0].activation, GELU) and enc.layers[0].norm_first and enc.norm is not None
    assert isinstance(EncoderLayer.init(D, H).activation, ReLU)
    assert not torch.equal(enc.layers[0].linear1.W, enc.layers[1].linear1.W)  # drawn afresh per layer


def test_wrong_mask_lengths_are_named():
    m = EncoderLayer.init(D, H, FF, dtype=f64)
    x = torch.randn(B, T, D, dtype=f64)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(4, 4\); expected \(q, k\) = \(5, 5\)"):
        forward(m, x, src_mask=causal_mask(4))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(2, 6\); expected \(b, k\) = \(2, 5\)"):
        forward(m, x, src_key_padding_mask=torch.zeros(B, 6, dtype=torch.bool))


def test_unsupported_activation_is_refused():
    layer = nn.TransformerEncoderLayer(D, H, FF, activation=nn.SiLU(), batch_first=True)
    with pytest.raises(NotImplementedError, match="activation SiLU"):
        from_torch(layer)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_a_block_continues_from_past_keys_and_values(norm_first):
    """``past=(K, V)`` (a KV cache): the block run on the first 2 positions, then on the other 3
    with their keys and values, gives the rows of the causal forward over all 5."""
    layer = from_torch(torch_layer(norm_first, "gelu"))
    x = torch.randn(B, T, D, dtype=f64, generator=torch.Generator().manual_seed(3))
    full = forward(layer, x, is_causal=True)
    empty = x.new_zeros(B, H, 0, D // H)
    a, past = forward(layer, x[:, :2], is_causal=True, past=(empty, empty))
    b, (K, V) = forward(layer, x[:, 2:], is_causal=True, past=past, offset=2)
    torch.testing.assert_close(torch.cat([a, b], dim=1), full, atol=1e-12, rtol=1e-12)
    assert K.shape == V.shape == (B, H, T, D // H)
