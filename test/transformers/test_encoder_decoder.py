"""The original Transformer: zerotoml/transformers/encoder_decoder.py
(notes/transformers.md#the-encoder-decoder). `Transformer` at level 3 against torch.nn.Transformer;
`EncoderDecoder` at level 3 against the paper's model written with torch.nn parts (shared
embedding scaled by sqrt(d_model), sinusoidal positions, nn.Transformer, tied pre-softmax)."""

import math

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch, loss
from zerotoml.generic import method
from zerotoml.layers.attention import causal_mask
from zerotoml.layers.dropout import Dropout
from zerotoml.transformers.encoder_decoder import EncoderDecoder, decode, encode
from zerotoml.transformers.positional import SinusoidalEncoding
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import grad, param_count

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's own note
f64 = torch.float64
B, S, T, D, H, FF = 2, 6, 5, 8, 2, 12
SRC_PAD = torch.tensor([[False] * S, [False, False, False, False, True, True]])
TGT_PAD = torch.tensor([[False] * T, [False, False, False, True, True]])


def randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


def torch_transformer(norm_first, activation="relu", batch_first=True, seed=0):
    torch.manual_seed(seed)
    m = nn.Transformer(D, H, 2, 1, FF, dropout=0.0, activation=activation, batch_first=batch_first,
                       norm_first=norm_first).double()
    return randomise(m, seed)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_transformer_matches_torch(norm_first, activation):
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randn(B, S, D, generator=g, dtype=f64), torch.randn(B, T, D, generator=g, dtype=f64)
    memory_mask = torch.rand(T, S, generator=g) < 0.3
    memory_mask[:, 0] = False
    kw = dict(src_mask=torch.zeros(S, S, dtype=torch.bool), tgt_mask=causal_mask(T), memory_mask=memory_mask,
              src_key_padding_mask=SRC_PAD, tgt_key_padding_mask=TGT_PAD, memory_key_padding_mask=SRC_PAD)
    model = assert_matches_torch(torch_transformer(norm_first, activation), [src, tgt], kwargs=kw)
    assert model.encoder.norm is not None and model.decoder.norm is not None  # nn.Transformer's final norms


def test_seq_first_transformer_is_accepted():
    module = torch_transformer(False, batch_first=False)
    src, tgt = torch.randn(B, S, D, dtype=f64), torch.randn(B, T, D, dtype=f64)
    theirs = module(src.transpose(0, 1), tgt.transpose(0, 1), tgt_mask=causal_mask(T))
    ours = forward(from_torch(module), src, tgt, tgt_mask=causal_mask(T))
    torch.testing.assert_close(ours, theirs.transpose(0, 1), atol=1e-12, rtol=1e-12)


def pe_table(n, d):
    """The sinusoids as the PyTorch tutorials compute them: exp(−2i log(10000)/d)."""
    pos = torch.arange(n, dtype=f64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=f64) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, dtype=f64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class TorchEncoderDecoder(nn.Module):
    def __init__(self, vocab, src_vocab=None, norm_first=False, n_positions=16):
        super().__init__()
        self.tgt_embed = nn.Embedding(vocab, D)
        self.src_embed = None if src_vocab is None else nn.Embedding(src_vocab, D)
        self.register_buffer("pe", pe_table(n_positions, D))
        self.transformer = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, batch_first=True, norm_first=norm_first)

    def forward(self, src, tgt, src_key_padding_mask=None):
        src_table = self.tgt_embed if self.src_embed is None else self.src_embed
        s = src_table(src) * math.sqrt(D) + self.pe[: src.shape[1]]
        t = self.tgt_embed(tgt) * math.sqrt(D) + self.pe[: tgt.shape[1]]
        y = self.transformer(s, t, tgt_mask=causal_mask(tgt.shape[1]), tgt_is_causal=True,
                             src_key_padding_mask=src_key_padding_mask,
                             memory_key_padding_mask=src_key_padding_mask)
        return y @ self.tgt_embed.weight.T


@method
def from_torch(module: TorchEncoderDecoder) -> EncoderDecoder:
    src = None if module.src_embed is None else from_torch(module.src_embed)
    return EncoderDecoder(from_torch(module.tgt_embed), src, SinusoidalEncoding(module.pe.clone()), Dropout(0.0),
                          from_torch(module.transformer))


@pytest.mark.parametrize("src_vocab", [None, 9], ids=["shared_vocab", "two_vocabs"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_decoder_matches_the_paper_written_in_torch(norm_first, src_vocab):
    torch.manual_seed(0)
    module = randomise(TorchEncoderDecoder(7, src_vocab, norm_first).double())
    g = torch.Generator().manual_seed(2)
    src, tgt = torch.randint(0, src_vocab or 7, (B, S), generator=g), torch.randint(0, 7, (B, T), generator=g)
    assert_matches_torch(module, [src, tgt], kwargs=dict(src_key_padding_mask=SRC_PAD))


def test_sinusoidal_table_is_the_tutorials_table():
    torch.testing.assert_close(SinusoidalEncoding.init(50, 10, dtype=f64).table, pe_table(50, 10),
                               atol=1e-14, rtol=0)


def tiny(tgt_vocab=None, seed=0):
    return EncoderDecoder.init(11, tgt_vocab, D, H, 1, 2, FF, dropout=0.0, n_positions=16,
                               generator=torch.Generator().manual_seed(seed), dtype=f64)


def test_weights_are_tied_where_the_paper_ties_them():
    shared, two = tiny(), tiny(tgt_vocab=13)
    assert shared.src_embed is None and two.src_embed.W.shape == (11, D) and two.tgt_embed.W.shape == (13, D)
    assert param_count(two) - param_count(shared) == 13 * D  # one more table, no separate head
    src, tgt = torch.randint(0, 10, (B, S)), torch.randint(0, 10, (B, T + 1))  # id 10 never occurs
    torch.testing.assert_close(forward(shared, src, tgt[:, :-1]), decode(shared, tgt[:, :-1], encode(shared, src)),
                               atol=0, rtol=0)
    # a row no input looks up still gets a gradient, through the pre-softmax projection only
    g_shared = grad(loss, shared, src, tgt[:, :-1], tgt[:, 1:])
    g_two = grad(loss, two, src, tgt[:, :-1], tgt[:, 1:])
    assert g_shared.tgt_embed.W[10].abs().max() > 0 and g_two.tgt_embed.W[10].abs().max() > 0
    assert g_two.src_embed.W[10].abs().max() == 0  # the source table is not the head


def test_the_decoder_cannot_see_the_future():
    m = tiny()
    src, tgt = torch.randint(0, 11, (B, S)), torch.randint(0, 11, (B, T))
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 11
    a, b = forward(m, src, tgt), forward(m, src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=1e-12, rtol=0)
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-6


def test_loss_is_label_smoothed_cross_entropy_of_the_logits():
    m = tiny()
    g = torch.Generator().manual_seed(3)
    src, tgt = torch.randint(0, 11, (B, S), generator=g), torch.randint(0, 11, (B, T + 1), generator=g)
    z = forward(m, src, tgt[:, :-1])
    want = nn.functional.cross_entropy(z.reshape(-1, 11), tgt[:, 1:].reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(loss(m, src, tgt[:, :-1], tgt[:, 1:], label_smoothing=0.1), want,
                               atol=1e-12, rtol=1e-12)


def test_sequences_longer_than_the_position_table_are_refused():
    with pytest.raises(ValueError, match=r"length 17 at offset 0 .* n_positions=16"):
        forward(tiny(), torch.zeros(1, 17, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
