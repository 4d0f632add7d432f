"""BERT, the masked language model: zerotoml/transformers/bert.py (notes/bert.md).
Level 3 against the same model written with torch.nn parts (nn.Embedding, nn.LayerNorm,
post-norm nn.TransformerEncoder with GELU, nn.Linear, a tied head): logits, the masked-LM loss
and every gradient in float64. The 80/10/10 corruption on a large sample, and a tiny BERT
that memorises one masked batch."""

import math

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch, loss, step
from zerotoml.generic import method
from zerotoml.layers.dropout import Dropout
from zerotoml.optim import Adam
from zerotoml.testing import assert_matches_torch, assert_trees_close
from zerotoml.transformers.bert import BERT, IGNORE, mask_tokens, masked_accuracy
from zerotoml.transformers.positional import LearnedPositions
from zerotoml.tree import named_params, param_count, value_and_grad

f64 = torch.float64
V, P, D, EPS = 13, 16, 8, 1e-12


class TorchBERT(nn.Module):
    """BERT written with torch.nn parts: the MLM output weights are the token table (tied)."""

    def __init__(self, n_layer, n_head, type_vocab=2):
        super().__init__()
        self.word = nn.Embedding(V, D)
        self.pos = nn.Embedding(P, D)
        self.seg = nn.Embedding(type_vocab, D) if type_vocab else None
        self.ln = nn.LayerNorm(D, eps=EPS)
        self.drop = nn.Dropout(0.0)
        layer = nn.TransformerEncoderLayer(D, n_head, 3 * D, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=False, layer_norm_eps=EPS)
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.dense = nn.Linear(D, D)
        self.act = nn.GELU()
        self.head_ln = nn.LayerNorm(D, eps=EPS)
        self.bias = nn.Parameter(torch.zeros(V))

    def forward(self, ids, token_type_ids=None, src_key_padding_mask=None):
        x = self.word(ids) + self.pos(torch.arange(ids.shape[1]))
        if self.seg is not None:
            x = x + self.seg(torch.zeros_like(ids) if token_type_ids is None else token_type_ids)
        h = self.encoder(self.drop(self.ln(x)), src_key_padding_mask=src_key_padding_mask)
        return self.head_ln(self.act(self.dense(h))) @ self.word.weight.T + self.bias


@method
def from_torch(module: TorchBERT) -> BERT:
    seg = None if module.seg is None else from_torch(module.seg)
    return BERT(from_torch(module.word), LearnedPositions(from_torch(module.pos)), seg, from_torch(module.ln),
                from_torch(module.drop), from_torch(module.encoder), from_torch(module.dense),
                from_torch(module.act), from_torch(module.head_ln), module.bias.detach().clone())


def torch_bert(seed=0, n_layer=2, n_head=2, type_vocab=2):
    torch.manual_seed(seed)
    m = TorchBERT(n_layer, n_head, type_vocab).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=f64) * 0.3)
    return m


def batch(seed, b=3, t=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V - 1, (b, t), generator=g)
    segments = (torch.arange(t) >= t // 2).long().expand(b, t).contiguous()
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[0, t - 2:] = True
    return ids, segments, pad, g


@pytest.mark.parametrize("seed,n_layer,n_head,type_vocab", [(0, 2, 2, 2), (1, 1, 4, 0), (2, 3, 1, 3)])
def test_bert_matches_torch(seed, n_layer, n_head, type_vocab):
    ids, segments, pad, _ = batch(seed)
    kwargs = dict(src_key_padding_mask=pad)
    if type_vocab:
        kwargs["token_type_ids"] = segments
    assert_matches_torch(torch_bert(seed, n_layer, n_head, type_vocab), [ids], kwargs=kwargs)


def test_mlm_loss_and_its_gradients_match_torch():
    """loss(m, inputs, labels) is the cross-entropy over labels != -100, value and gradients."""
    module = torch_bert(3)
    ids, segments, pad, g = batch(3, b=4, t=12)
    inputs, labels = mask_tokens(ids, mask_id=V - 1, vocab_size=V - 1, generator=g)
    opts = dict(token_type_ids=segments, src_key_padding_mask=pad)
    ours, grads = value_and_grad(lambda m: loss(m, inputs, labels, **opts), from_torch(module))
    theirs = nn.functional.cross_entropy(module(inputs, **opts).reshape(-1, V), labels.reshape(-1),
                                         ignore_index=-100)
    theirs.backward()
    torch.testing.assert_close(ours, theirs.detach(), atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.grad)
    assert_trees_close(named_params(grads), named_params(from_torch(module)), what="gradient", atol=1e-10,
                       rtol=1e-10)


def test_masked_accuracy_counts_only_predicted_positions():
    module = torch_bert(4)
    ids, *_ = batch(4, b=6, t=10)
    labels = torch.full_like(ids, IGNORE)
    labels[:, ::3] = ids[:, ::3]
    pred = module(ids).argmax(-1)
    want = (pred == ids)[:, ::3].double().mean().item()
    assert masked_accuracy(from_torch(module), ids, labels) == pytest.approx(want, abs=1e-15)
    with pytest.raises(ValueError, match="labels"):
        masked_accuracy(from_torch(module), ids, torch.full_like(ids, IGNORE))
    with pytest.raises(ValueError, match="every label is -100"):
        loss(from_torch(module), ids, torch.full_like(ids, IGNORE))


# ------------------------------------------------------------------ 80 / 10 / 10


def test_mask_tokens_follows_the_80_10_10_rule():
    """1000 rows of 100 tokens: exactly 15 chosen per row; of the 15000 chosen, 80% become
    [MASK], 10% a random token, 10% stay (bounds ~4 standard deviations)."""
    n_vocab, mask_id = 50, 50  # random replacements are drawn from [0, 50): never the mask
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, n_vocab, (1000, 100), generator=g)
    inputs, labels = mask_tokens(ids, mask_id=mask_id, vocab_size=n_vocab, generator=g)
    chosen = labels != IGNORE
    assert torch.equal(chosen.sum(1), torch.full((1000,), 15))
    assert torch.equal(labels[chosen], ids[chosen])                 # labels: the original tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])               # the rest is untouched
    n = chosen.sum().item()
    masked = (inputs[chosen] == mask_id).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n         # 10%, plus random draws of the same id
    replaced = inputs[chosen][(inputs[chosen] != mask_id) & (inputs[chosen] != ids[chosen])]
    assert abs(masked - 0.8) < 0.013
    assert abs(kept - (0.1 + 0.1 / n_vocab)) < 0.01
    assert abs(len(replaced) / n - 0.1 * (1 - 1 / n_vocab)) < 0.01
    assert replaced.min() >= 0 and replaced.max() < n_vocab and len(replaced.unique()) == n_vocab
    # every position is as likely to be chosen: 0.15 each, σ ≈ 0.011 over 1000 rows
    assert (chosen.double().mean(0) - 0.15).abs().max() < 0.05


def test_mask_tokens_skips_special_ids_and_predicts_at_least_one():
    g = torch.Generator().manual_seed(1)
    ids = torch.tensor([[0, 5, 6, 7, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1], [2, 3, 4, 5, 6, 7, 8, 9]])
    for _ in range(20):
        inputs, labels = mask_tokens(ids, mask_id=10, vocab_size=10, generator=g, special_ids=(0, 1))
        chosen = labels != IGNORE
        assert not chosen[(ids == 0) | (ids == 1)].any()
        # round(0.15 · 3) = 0 -> 1 token; no eligible token -> none; round(0.15 · 8) = 1
        assert chosen.sum(1).tolist() == [1, 0, 1]
    a = mask_tokens(ids, mask_id=10, vocab_size=10, generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, mask_id=10, vocab_size=10, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mask_tokens_refuses_bad_input():
    with pytest.raises(ValueError, match=r"p=0"):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), mask_id=1, vocab_size=2, p=0)
    with pytest.raises(ValueError, match=r"`ids` has shape \(3,\)"):
        mask_tokens(torch.zeros(3, dtype=torch.long), mask_id=1, vocab_size=2)
    with pytest.raises(ValueError, match="float"):
        mask_tokens(torch.zeros(2, 3), mask_id=1, vocab_size=2)


# ----------------------------------------------------------------- init, training


def test_init_is_berts_truncated_normal_and_the_head_is_tied():
    m = BERT.init(50, 32, 16, 3, 2, generator=torch.Generator().manual_seed(0))
    d, L = 16, 3
    per_layer = 4 * d * d + 4 * d + 2 * (d * 4 * d) + 4 * d + d + 4 * d  # attention, ffn, two norms
    embeddings = 50 * d + 32 * d + 2 * d + 2 * d
    head = d * d + d + 2 * d + 50  # dense, LayerNorm, output bias: no output matrix
    assert param_count(m) == embeddings + L * per_layer + head
    W = m.encoder.layers[0].linear1.W
    assert W.abs().max() <= 0.04 and abs(W.std().item() - 0.02 * 0.8796) < 0.002  # std of N(0,1) cut at ±2
    assert m.emb_norm.eps == 1e-12 and m.head_bias.abs().max() == 0
    with pytest.raises(ValueError, match="post-norm"):
        from dataclasses import replace
        pre = replace(m.encoder.layers[0], norm_first=True)
        BERT(**{**m.__dict__, "encoder": replace(m.encoder, layers=[pre])})


def test_tiny_bert_memorises_a_masked_batch():
    """Adam (lr 3e-3) on one fixed masked batch of 8 sequences of 16 tokens: the masked-LM loss
    falls from about log(vocab) to below 0.05 within 150 steps."""
    g = torch.Generator().manual_seed(0)
    m = BERT.init(12, 16, 32, 2, 4, dropout=0.0, generator=g)
    ids = torch.randint(0, 11, (8, 16), generator=g)
    inputs, labels = mask_tokens(ids, mask_id=11, vocab_size=11, p=0.25, generator=g)
    opt = Adam.init(m, lr=3e-3)
    first = loss(m, inputs, labels).item()
    for _ in range(150):
        value, grads = value_and_grad(loss, m, inputs, labels)
        step(opt, m, grads)
    final = loss(m, inputs, labels).item()
    assert abs(first - math.log(12)) < 0.5 and final < 0.05, (first, final)
    assert masked_accuracy(m, inputs, labels) == 1.0


def test_dropout_is_used_in_training_mode_only():
    from zerotoml.tree import set_training

    m = BERT.init(12, 16, 16, 1, 2, dropout=0.5, generator=torch.Generator().manual_seed(0), dtype=f64)
    ids = torch.randint(0, 12, (2, 6), generator=torch.Generator().manual_seed(1))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert not torch.allclose(forward(m, ids, generator=g1), forward(m, ids, generator=g2))
    ev = set_training(m, False)
    assert isinstance(ev.drop, Dropout) and not ev.drop.training
    torch.testing.assert_close(forward(ev, ids, generator=g1), forward(ev, ids, generator=g2))
