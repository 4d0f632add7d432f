"""The GPT model: zerotoml/transformers/gpt.py (notes/transformers.md#gpt).
Level 3 against the same model written with torch.nn modules (nn.Embedding, pre-norm
nn.TransformerEncoderLayer with a causal mask, nn.LayerNorm, tied head); the KV cache against
the full forward; and a loss that falls when overfitting one batch."""

import pytest
import torch
from torch import nn

from zerotoml import engine, forward, from_torch, loss
from zerotoml.generic import method
from zerotoml.tree import struct
from zerotoml.layers.attention import causal_mask
from zerotoml.transformers.gpt import GPT, KVCache
from zerotoml.transformers.positional import LearnedPositions, add_positions, n_positions, rotary_of
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import param_count, params, replace_params, set_training, value_and_grad

f64 = torch.float64


class TorchGPT(nn.Module):
    """GPT-2 written with torch.nn parts; the head is the token table (tied)."""

    def __init__(self, vocab, n_positions, d, n_layer, n_head, bias=True):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_positions, d)
        self.drop = nn.Dropout(0.0)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, n_head, 4 * d, dropout=0.0, activation=nn.GELU(approximate="tanh"),
                                       batch_first=True, norm_first=True, bias=bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, bias=bias)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t)))
        for block in self.blocks:
            x = block(x, src_mask=causal_mask(t), is_causal=True)
        return self.ln_f(x) @ self.wte.weight.T


@method
def from_torch(module: TorchGPT) -> GPT:
    return GPT(from_torch(module.wte), LearnedPositions(from_torch(module.wpe)), from_torch(module.drop),
               [from_torch(b) for b in module.blocks], from_torch(module.ln_f))


def torch_gpt(seed=0, vocab=11, n_positions=12, d=8, n_layer=2, n_head=2, bias=True):
    torch.manual_seed(seed)
    m = TorchGPT(vocab, n_positions, d, n_layer, n_head, bias).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=f64) * 0.3)
    return m


@pytest.mark.parametrize("seed,t,n_layer,n_head", [(0, 7, 2, 2), (1, 1, 1, 4), (2, 12, 3, 1)])
def test_gpt_matches_torch(seed, t, n_layer, n_head):
    module = torch_gpt(seed, n_layer=n_layer, n_head=n_head)
    idx = torch.randint(0, 11, (2, t), generator=torch.Generator().manual_seed(seed))
    assert_matches_torch(module, [idx])


def test_gpt_without_biases_matches_torch_and_its_cache():
    """bias=False (nanoGPT's default): no bias in any projection or norm, level 3 against
    torch's bias=False layers, and the KV cache still equals the full forward."""
    module = torch_gpt(3, bias=False)
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(3))
    assert_matches_torch(module, [idx])
    m = GPT.init(11, 12, 8, 2, 2, dropout=0.0, bias=False, generator=torch.Generator().manual_seed(4), dtype=f64)
    assert param_count(GPT.init(11, 12, 8, 2, 2, dtype=f64)) - param_count(m) == 2 * (3 * 8 + 8 + 4 * 8 + 8 + 2 * 8) + 8
    full = forward(m, idx)
    logits, cache = forward(m, idx[:, :4], KVCache.init(m, 2))
    for i in (4, 5):
        step_logits, cache = forward(m, idx[:, i:i + 1], cache)
        torch.testing.assert_close(step_logits[:, 0], full[:, i], atol=1e-12, rtol=1e-12)


def test_gpt_loss_is_the_cross_entropy_of_its_logits():
    module = torch_gpt()
    g = torch.Generator().manual_seed(0)
    idx, y = torch.randint(0, 11, (3, 6), generator=g), torch.randint(0, 11, (3, 6), generator=g)
    want = nn.functional.cross_entropy(module(idx).reshape(-1, 11), y.reshape(-1))
    torch.testing.assert_close(loss(from_torch(module), idx, y), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("prompt", [1, 4])
def test_kv_cache_equals_the_full_forward(prompt):
    m = set_training(GPT.init(13, 16, 12, 3, 3, dropout=0.1, generator=torch.Generator().manual_seed(0),
                              dtype=f64), False)
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(1))
    full = forward(m, idx)
    cache = KVCache.init(m, 2)
    z, cache = forward(m, idx[:, :prompt], cache)
    parts = [z]
    for i in range(prompt, 10):
        z, cache = forward(m, idx[:, i:i + 1], cache)
        parts.append(z)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-10, rtol=0)
    assert cache.offset == 10 and cache.k[0].shape == (2, 3, 10, 4) and len(cache.v) == 3


def test_kv_cache_under_the_fast_engine_equals_the_reference():
    """The cached decode asks for no attention weights, so the fast engine runs torch's SDPA there."""
    m = GPT.init(13, 16, 12, 2, 3, dropout=0.0, positions="rotary", generator=torch.Generator().manual_seed(2),
                 dtype=f64)
    idx = torch.randint(0, 13, (2, 6), generator=torch.Generator().manual_seed(3))
    with engine.use("reference"):
        full = forward(m, idx)
    with engine.use("fast"):
        z, cache = forward(m, idx[:, :4], KVCache.init(m, 2))
        parts = [z]
        for i in (4, 5):
            z, cache = forward(m, idx[:, i:i + 1], cache)
            parts.append(z)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-12, rtol=1e-12)


@struct
class NoPositions:
    """No position encoding at all (NoPE): the causal mask alone tells a decoder where it is."""

    n: int


@method
def add_positions(p: NoPositions, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
    return x


@method
def rotary_of(p: NoPositions) -> None:
    return None


@method
def n_positions(p: NoPositions) -> int:
    return p.n


def test_a_new_position_type_is_a_new_set_of_methods():
    m = GPT.init(11, 12, 8, 2, 2, dropout=0.0, generator=torch.Generator().manual_seed(7), dtype=f64)
    m = GPT(m.wte, NoPositions(12), m.drop, m.blocks, m.ln_f)
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(8))
    full = forward(m, idx)
    z, cache = forward(m, idx[:, :5], KVCache.init(m, 2))
    z, cache = forward(m, idx[:, 5:], cache)
    torch.testing.assert_close(z[:, 0], full[:, 5], atol=1e-12, rtol=1e-12)
    assert n_positions(m) == 12 and cache.offset == 6
    with pytest.raises(ValueError, match="GPT: a sequence of length 13"):
        forward(m, torch.zeros(1, 13, dtype=torch.long))


def test_kv_cache_refuses_to_run_past_the_position_table():
    m = GPT.init(5, 4, 8, 1, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    _, cache = forward(m, torch.zeros(1, 3, dtype=torch.long), KVCache.init(m, 1))
    with pytest.raises(ValueError, match=r"length 2 at offset 3 needs positions up to 5, .* n_positions=4"):
        forward(m, torch.zeros(1, 2, dtype=torch.long), cache)
    with pytest.raises((TypeError, ValueError), match="idx"):  # a cache for batch 1, tokens for batch 2
        forward(m, torch.zeros(2, 1, dtype=torch.long), cache)


def test_head_is_tied_and_init_is_gpt2():
    m = GPT.init(50, 32, 16, 4, 2, generator=torch.Generator().manual_seed(0))
    d, V, P, L = 16, 50, 32, 4
    per_block = 4 * d * d + 4 * d + 2 * (d * 4 * d) + 4 * d + d + 4 * d  # attn, ffn, two norms
    assert param_count(m) == V * d + P * d + L * per_block + 2 * d  # no separate head
    assert abs(m.blocks[0].linear1.W.std().item() - 0.02) < 0.002
    assert abs(m.blocks[0].linear2.W.std().item() - 0.02 / (2 * L) ** 0.5) < 0.001


def test_gpt_overfits_one_batch_with_gradient_descent():
    """Plain gradient descent (η = 0.5) on one batch of 4 random sequences: the loss falls
    from log(vocab) ~ 2.8 to below 0.2 within 80 steps (0.056 measured)."""
    g = torch.Generator().manual_seed(0)
    m = GPT.init(16, 16, 32, 2, 4, dropout=0.0, generator=g)
    data = torch.randint(0, 16, (4, 13), generator=g)
    x, y = data[:, :-1], data[:, 1:]
    losses = []
    for _ in range(80):
        value, grads = value_and_grad(loss, m, x, y)
        losses.append(value.item())
        # θ ← θ − η ∇L(θ)
        m = replace_params(m, [p - 0.5 * dp for p, dp in zip(params(m), params(grads))])
    final = loss(m, x, y)
    assert losses[0] > 2.5 and final < 0.2, (losses[0], final)


def test_gpt_with_rotary_positions():
    """positions="rotary": no position table, RoPE on q and k in every block. The scores then
    depend on relative positions only, the KV cache still equals the full forward, and the
    model learns a batch."""
    m = GPT.init(11, 12, 8, 2, 2, dropout=0.0, positions="rotary", generator=torch.Generator().manual_seed(5),
                 dtype=f64)
    learned = GPT.init(11, 12, 8, 2, 2, dropout=0.0, dtype=f64)
    assert param_count(learned) - param_count(m) == 12 * 8  # the learned table is gone
    idx = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(6))
    full = forward(m, idx)
    logits, cache = forward(m, idx[:, :3], KVCache.init(m, 2))
    torch.testing.assert_close(logits, full[:, :3], atol=1e-12, rtol=1e-12)
    for i in range(3, 7):
        step_logits, cache = forward(m, idx[:, i:i + 1], cache)
        torch.testing.assert_close(step_logits[:, 0], full[:, i], atol=1e-12, rtol=1e-12)
    # RoPE sees only differences of positions: the whole sequence moved 4 positions on (an empty
    # cache at offset 4) gives the same logits; with the learned table it does not
    def moved(model, by):
        empty = KVCache.init(model, 2)
        return forward(model, idx, KVCache(empty.k, empty.v, by))[0]

    torch.testing.assert_close(moved(m, 4), full, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(moved(learned, 4), forward(learned, idx))
    with pytest.raises(ValueError, match="GPT: a sequence of length 13"):
        forward(m, torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="positions='alibi'"):
        GPT.init(11, 12, 8, 1, 2, positions="alibi")
    # it learns: 80 AdamW steps on one batch
    from zerotoml import step
    from zerotoml.optim import AdamW

    x, y = idx[:, :-1], idx[:, 1:]
    first, opt = loss(m, x, y).item(), AdamW.init(m, lr=0.02)
    for _ in range(80):
        step(opt, m, value_and_grad(loss, m, x, y)[1])
    assert loss(m, x, y).item() < 0.3 * first
