"""Scaled dot-product and multi-head attention: zerotoml/layers/attention.py
(notes/transformers.md#attention). Level 3 against torch.nn.MultiheadAttention in float64."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from zerotoml import engine, forward, from_torch
from zerotoml.layers.attention import MultiheadAttention, additive_mask, attend, causal_mask
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import set_training

f64 = torch.float64


def randomise(module, seed=0):
    """Non-trivial weights and biases, so that every parameter is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def mha(E, h, *, bias=True, kdim=None, vdim=None, batch_first=True, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(E, h, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first).double()
    return randomise(m, seed)


def make_masks(kind, b, h, q, k, g):
    """An attn_mask and key_padding_mask of one dtype ("bool" or "float"); key 0 is never
    masked, so no row is fully masked (torch gives NaN there, we give zeros)."""
    if kind is None:
        return None, None
    am = torch.rand(q, k, generator=g) < 0.4
    kpm = torch.rand(b, k, generator=g) < 0.4
    am[:, 0] = False
    kpm[:, 0] = False
    if kind == "bool3d":
        am = torch.rand(b * h, q, k, generator=g) < 0.4
        am[..., 0] = False
        return am, kpm
    if kind == "float":
        return (torch.randn(q, k, generator=g, dtype=f64).masked_fill(am, -math.inf),
                torch.randn(b, k, generator=g, dtype=f64).masked_fill(kpm, -math.inf))
    return am, kpm


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), q=st.integers(1, 4), k=st.integers(1, 5), h=st.integers(1, 3),
       d_head=st.integers(1, 3), bias=st.booleans(), separate=st.booleans(),
       mask=st.sampled_from([None, "bool", "float", "bool3d"]), use_kpm=st.booleans(),
       need_weights=st.booleans(), average=st.booleans(), seed=st.integers(0, 2**16))
def test_mha_matches_torch(b, q, k, h, d_head, bias, separate, mask, use_kpm, need_weights, average, seed):
    E = h * d_head
    kdim, vdim = (E + 1, E + 2) if separate else (None, None)
    module = mha(E, h, bias=bias, kdim=kdim, vdim=vdim, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(b, q, E, generator=g, dtype=f64), torch.randn(b, k, kdim or E, generator=g, dtype=f64),
         torch.randn(b, k, vdim or E, generator=g, dtype=f64)]
    am, kpm = make_masks(mask, b, h, q, k, g)
    kw = dict(attn_mask=am, key_padding_mask=kpm if use_kpm else None, need_weights=need_weights,
              average_attn_weights=average)
    assert_matches_torch(module, x, kwargs=kw, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("with_kpm", [True, False])
def test_is_causal_matches_torch(need_weights, with_kpm):
    """torch needs the mask beside the is_causal hint; ours builds it when absent."""
    b, t, E = 2, 5, 6
    module = mha(E, 3)
    x = torch.randn(b, t, E, dtype=f64)
    mask = causal_mask(t)
    kpm = torch.tensor([[False] * 5, [False, False, False, True, True]]) if with_kpm else None
    common = dict(key_padding_mask=kpm, need_weights=need_weights)
    assert_matches_torch(module, [x, x, x], kwargs=dict(is_causal=True, **common),
                         torch_kwargs=dict(attn_mask=mask, is_causal=True, **common))
    assert torch.equal(mask, torch.triu(torch.ones(t, t, dtype=torch.bool), 1))


def test_fully_masked_rows_give_zeros_like_torch_sdpa_path():
    """Every key of query 0 masked: torch's need_weights=True path returns NaN, its
    need_weights=False (SDPA) path zeros; ours gives zeros (then the output bias) on both."""
    module = mha(4, 2)
    x = torch.randn(2, 3, 4, dtype=f64)
    am = torch.tensor([[True, True, True], [False, True, True], [False, False, True]])
    assert_matches_torch(module, [x, x, x], kwargs=dict(attn_mask=am, need_weights=False))
    ours = from_torch(module)
    xr = x.clone().requires_grad_()
    out, w = forward(ours, xr, xr, xr, attn_mask=am)
    assert torch.equal(w[:, 0], torch.zeros(2, 3, dtype=f64))
    torch.testing.assert_close(out[:, 0], ours.b_o.expand(2, 4), atol=0, rtol=0)
    out.sum().backward()
    assert torch.isfinite(xr.grad).all()
    assert torch.isnan(module(x, x, x, attn_mask=am)[0][:, 0]).all()  # torch, need_weights=True


def test_seq_first_module_is_accepted_and_our_layout_is_batch_first():
    module = mha(6, 2, batch_first=False)
    q, kv = torch.randn(2, 4, 6, dtype=f64), torch.randn(2, 3, 6, dtype=f64)
    theirs, w_t = module(q.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1))
    ours, w_o = forward(from_torch(module), q, kv, kv)
    torch.testing.assert_close(ours, theirs.transpose(0, 1), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(w_o, w_t, atol=1e-12, rtol=1e-12)


def test_from_torch_refuses_bias_kv_and_zero_attn():
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(NotImplementedError, match="add_zero_attn"):
        from_torch(nn.MultiheadAttention(4, 2, add_zero_attn=True))


def test_masks_of_the_wrong_length_name_the_lengths():
    m = MultiheadAttention.init(4, 2, dtype=f64)
    q, kv = torch.randn(2, 4, 4, dtype=f64), torch.randn(2, 5, 4, dtype=f64)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 5\); expected \(q, k\) = \(4, 5\)"):
        forward(m, q, kv, kv, attn_mask=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(2, 4\); expected \(b, k\) = \(2, 5\)"):
        forward(m, q, kv, kv, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool .* or float"):
        forward(m, q, kv, kv, attn_mask=torch.zeros(4, 5, dtype=torch.long))


@pytest.mark.parametrize("kind", [None, "bool", "float"])
def test_fast_engine_equals_the_formula(kind):
    g = torch.Generator().manual_seed(3)
    b, h, q, k, d = 2, 3, 4, 6, 5
    qs, ks, vs = (torch.randn(b, h, n, d, generator=g, dtype=f64) for n in (q, k, k))
    am, kpm = make_masks(kind, b, h, q, k, g)
    mask = additive_mask(am, kpm, b=b, h=h, q=q, k=k, dtype=f64)
    if mask is not None:
        mask = mask.clone()
        mask[1, :, 2, :] = -math.inf  # one fully masked row: zeros on both paths
    with engine.use("reference"):
        slow, w = attend(qs, ks, vs, mask, need_weights=False)
    with engine.use("fast"):
        fast, none = attend(qs, ks, vs, mask, need_weights=False)
    assert none is None and w is not None
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)
    # the module: need_weights=False is where the fast engine may take over
    module = mha(6, 2)
    x = torch.randn(2, 5, 6, dtype=f64)
    ours = from_torch(module)
    with engine.use("reference"):
        ref = forward(ours, x, x, x, is_causal=True, need_weights=False)[0]
    with engine.use("fast"):
        torch.testing.assert_close(forward(ours, x, x, x, is_causal=True, need_weights=False)[0], ref,
                                   atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("split", [1, 3])
@pytest.mark.parametrize("rotary", [False, True])
def test_past_keys_and_values_continue_the_causal_self_attention(split, rotary):
    """``past=(K, V)``: the heads of the first ``split`` positions, computed once, then the rest
    attends to them; the outputs are the rows of the causal self-attention over the whole sequence,
    and the returned K, V are the whole sequence's. With RoPE, ``offset`` places the new rows."""
    from zerotoml.transformers import Rotary

    m = from_torch(mha(8, 2, seed=5))
    x = torch.randn(2, 5, 8, dtype=f64, generator=torch.Generator().manual_seed(4))
    rope = Rotary.init(8, 4, dtype=f64) if rotary else None  # d_head = 8 / 2
    full, _ = forward(m, x, x, x, is_causal=True, need_weights=False, rotary=rope)
    h, d_head = m.W_k.shape[1:]
    empty = x.new_zeros(2, h, 0, d_head)
    a, _, past = forward(m, x[:, :split], x[:, :split], x[:, :split], is_causal=True, rotary=rope,
                         past=(empty, empty))
    rest = x[:, split:]
    b, w, (K, V) = forward(m, rest, rest, rest, is_causal=True, rotary=rope, past=past, offset=split)
    torch.testing.assert_close(torch.cat([a, b], dim=1), full, atol=1e-12, rtol=1e-12)
    assert K.shape == V.shape == (2, h, 5, d_head) and w.shape == (2, 5 - split, 5)
    assert torch.all(w[:, 0, split + 1:] == 0)  # the first new query sees the past and itself only


def test_dropout_on_the_weights_and_eval_mode():
    m = MultiheadAttention.init(6, 2, dropout=0.5, generator=torch.Generator().manual_seed(0), dtype=f64)
    x = torch.randn(2, 5, 6, dtype=f64)
    _, w_eval = forward(set_training(m, False), x, x, x, average_attn_weights=False)
    _, w_train = forward(m, x, x, x, average_attn_weights=False, generator=torch.Generator().manual_seed(1))
    kept = w_train != 0
    assert 0.2 < kept.double().mean() < 0.8
    torch.testing.assert_close(w_train[kept], 2 * w_eval[kept], atol=1e-12, rtol=1e-12)
    assert from_torch(nn.MultiheadAttention(4, 2, dropout=0.3).eval()).dropout.training is False


def test_init_follows_torch_defaults():
    E, h = 8, 2
    m = MultiheadAttention.init(E, h, generator=torch.Generator().manual_seed(0), dtype=f64)
    assert m.W_q.shape == (E, h, E // h) and m.W_o.shape == (h, E // h, E)
    bound = math.sqrt(6 / (E + 3 * E))  # Xavier-uniform over torch's stacked (3E, E) in_proj_weight
    assert m.W_q.abs().max() <= bound and m.W_q.abs().max() > 0.8 * bound
    assert m.W_o.abs().max() <= 1 / math.sqrt(E)
    assert all(torch.equal(b, torch.zeros_like(b)) for b in (m.b_q, m.b_k, m.b_v, m.b_o))
    with pytest.raises(ValueError, match="embed_dim=10 is not divisible by num_heads=3"):
        MultiheadAttention.init(10, 3)
