"""Positional encodings: zerotoml/transformers/positional.py (notes/transformers.md#positions).
Sinusoidal against the formula of §3.5, learned against torch.nn.Embedding (level 3), rotary
against the complex-number form of RoPE (Su et al. eq. 12) and its relative-position property."""

import math

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch
from zerotoml.generic import method
from zerotoml.transformers.positional import (LearnedPositions, Rotary, SinusoidalEncoding, add_positions,
                                              n_positions, rope_angles, rotary_of, sinusoidal)
from zerotoml.testing import assert_matches_torch

f64 = torch.float64


@pytest.mark.parametrize("d_model", [6, 7, 16])
def test_sinusoidal_is_the_formula_of_section_3_5(d_model):
    T = sinusoidal(12, d_model, dtype=f64)
    for pos in range(12):
        for j in range(d_model):
            i = j // 2
            angle = pos / 10000 ** (2 * i / d_model)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(T[pos, j].item() - want) < 1e-15


def test_sinusoidal_offset_k_is_a_linear_map():
    """§3.5: "PE_{pos+k} can be represented as a linear function of PE_pos" -- a rotation per pair."""
    d, k = 8, 5
    T = sinusoidal(40, d, dtype=f64)
    ω = 10000 ** (-torch.arange(0, d, 2, dtype=f64) / d)
    c, s = torch.cos(k * ω), torch.sin(k * ω)
    sin_p, cos_p = T[:-k, 0::2], T[:-k, 1::2]
    torch.testing.assert_close(T[k:, 0::2], sin_p * c + cos_p * s, atol=1e-12, rtol=0)
    torch.testing.assert_close(T[k:, 1::2], cos_p * c - sin_p * s, atol=1e-12, rtol=0)


def test_sinusoidal_encoding_adds_the_table_at_an_offset():
    m = SinusoidalEncoding.init(10, 4, dtype=f64)
    x = torch.randn(2, 3, 4, dtype=f64)
    torch.testing.assert_close(forward(m, x, offset=5), x + sinusoidal(10, 4, dtype=f64)[5:8], atol=0, rtol=0)


class TorchLearned(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.emb = nn.Embedding(n, d)

    def forward(self, x, offset=0):
        return x + self.emb(torch.arange(offset, offset + x.shape[1]))


@method
def from_torch(module: TorchLearned) -> LearnedPositions:
    return LearnedPositions(from_torch(module.emb))


@pytest.mark.parametrize("t,offset", [(1, 0), (4, 0), (3, 5)])
def test_learned_positions_match_torch_embedding(t, offset):
    torch.manual_seed(0)
    module = TorchLearned(8, 5).double()
    assert_matches_torch(module, [torch.randn(2, t, 5, dtype=f64)], kwargs=dict(offset=offset))


def test_learned_init_is_gpt2():
    m = LearnedPositions.init(1000, 50, generator=torch.Generator().manual_seed(0), dtype=f64)
    assert abs(m.table.W.std().item() - 0.02) < 0.001


def complex_rope(x, angles, interleaved):
    """RoPE eq. 12: pair (x_a, x_b) as x_a + i x_b, multiplied by e^{i m θ}."""
    d = x.shape[-1]
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., : d // 2], x[..., d // 2:])
    z = torch.complex(a, b) * torch.polar(torch.ones_like(angles), angles)
    if interleaved:
        return torch.stack([z.real, z.imag], -1).flatten(-2)
    return torch.cat([z.real, z.imag], -1)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("offset", [0, 3])
def test_rotary_is_multiplication_by_e_to_the_i_m_theta(interleaved, offset):
    r = Rotary.init(16, 6, interleaved=interleaved, dtype=f64)
    x = torch.randn(2, 3, 5, 6, dtype=f64)
    want = complex_rope(x, rope_angles(16, 6, dtype=f64)[offset:offset + 5], interleaved)
    torch.testing.assert_close(forward(r, x, offset=offset), want, atol=1e-12, rtol=1e-12)


def test_rotary_scores_depend_on_relative_position_only():
    """<R_m q, R_n k> = <R_{m+s} q, R_{n+s} k> (RoPE eq. 11), and rotations keep norms."""
    r = Rotary.init(32, 8, dtype=f64)
    q, k = torch.randn(1, 8, dtype=f64), torch.randn(1, 8, dtype=f64)
    for m, n, s in [(0, 3, 7), (5, 2, 20), (9, 9, 4)]:
        a = forward(r, q, offset=m) @ forward(r, k, offset=n).T
        b = forward(r, q, offset=m + s) @ forward(r, k, offset=n + s).T
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(forward(r, q, offset=11).norm(), q.norm(), atol=1e-12, rtol=0)


def test_too_long_sequences_name_both_lengths():
    x = torch.zeros(1, 6, 4, dtype=f64)
    with pytest.raises(ValueError, match=r"SinusoidalEncoding: a sequence of length 6 .* n_positions=5"):
        forward(SinusoidalEncoding.init(5, 4, dtype=f64), x)
    with pytest.raises(ValueError, match=r"LearnedPositions: a sequence of length 6 at offset 2 .* n_positions=7"):
        forward(LearnedPositions.init(7, 4, dtype=f64), x, offset=2)
    with pytest.raises(ValueError, match=r"Rotary: a sequence of length 6 .* n_positions=3"):
        forward(Rotary.init(3, 4, dtype=f64), x)
    with pytest.raises(ValueError, match="d_head=5 must be even"):
        Rotary.init(3, 5)


def test_what_a_model_asks_of_its_positions():
    """add_positions adds a table (or nothing: RoPE enters in the attention, and only the
    length is checked), rotary_of hands the attention its rotation or None, n_positions is the
    table's length: one method each per position type."""
    x = torch.randn(2, 3, 4, dtype=f64)
    sin, learned, rope = SinusoidalEncoding.init(5, 4, dtype=f64), LearnedPositions.init(6, 4, dtype=f64), \
        Rotary.init(7, 4, dtype=f64)
    for p in (sin, learned):
        torch.testing.assert_close(add_positions(p, x, offset=2), forward(p, x, offset=2), atol=0, rtol=0)
        assert rotary_of(p) is None
    assert add_positions(rope, x, offset=4) is x and rotary_of(rope) is rope
    assert (n_positions(sin), n_positions(learned), n_positions(rope)) == (5, 6, 7)
    with pytest.raises(ValueError, match=r"Rotary: a sequence of length 3 at offset 5 .* n_positions=7"):
        add_positions(rope, x, offset=5)
