"""Decoding: zerotoml/transformers/generate.py (notes/transformers.md#generation).
Cached and uncached decodes agree token for token; top-k = 1 and a tiny top-p are greedy;
sampled tokens follow softmax(z / T); top-k and top-p keep the sets their definitions name;
beam search with one beam is greedy, and with enough beams it is exhaustive search."""

import dataclasses
import itertools
import math

import pytest
import torch

from zerotoml import forward, generate
from zerotoml.generic import method
from zerotoml.layers import Embedding
from zerotoml.shapes import Float, Int, Tensor
from zerotoml.transformers import EncoderDecoder, GPT
from zerotoml.transformers.generate import beam_search, length_penalty_factor, probabilities
from zerotoml.tree import set_training, struct

f64 = torch.float64
VOCAB, CONTEXT = 11, 8


def gpt(seed=0, dtype=f64):
    return GPT.init(VOCAB, CONTEXT, 16, 2, 2, dropout=0.1, generator=torch.Generator().manual_seed(seed),
                    dtype=dtype)


def prompt(b=3, t=3, seed=1):
    return torch.randint(0, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- GPT


@pytest.mark.parametrize("n_new", [4, 13])  # 13: runs past the context of 8 (the window slides)
def test_cached_and_uncached_greedy_decodes_are_identical(n_new):
    m, idx = gpt(), prompt()
    cached = generate(m, idx, n_new, greedy=True)
    uncached = generate(m, idx, n_new, greedy=True, use_cache=False)
    assert cached.shape == (3, 3 + n_new) and torch.equal(cached[:, :3], idx)
    assert torch.equal(cached, uncached)


def test_greedy_is_the_argmax_of_the_full_forward_at_every_step():
    m, idx = set_training(gpt(), False), prompt(b=2, t=2)
    out = generate(m, idx, 5, greedy=True)
    for t in range(2, 7):
        assert torch.equal(out[:, t], forward(m, out[:, :t])[:, -1].argmax(-1))


def test_top_k_1_and_tiny_top_p_and_zero_temperature_equal_greedy():
    m, idx = gpt(), prompt()
    greedy = generate(m, idx, 10, greedy=True)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(generate(m, idx, 10, top_k=1, generator=g()), greedy)
    assert torch.equal(generate(m, idx, 10, top_p=1e-6, generator=g()), greedy)
    assert torch.equal(generate(m, idx, 10, temperature=0, generator=g()), greedy)


def test_seeded_sampling_is_deterministic_and_the_seed_matters():
    m, idx = gpt(), prompt()

    def run(seed, **kw):
        return generate(m, idx, 12, temperature=1.5, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(0), run(0))
    assert torch.equal(run(0), run(0, use_cache=False))  # same logits, same draws
    assert not torch.equal(run(0), run(1))


def chi2(counts, p):
    n = counts.sum()
    return float(((counts - n * p) ** 2 / (n * p)).sum())


@pytest.mark.parametrize("T", [0.7, 2.0])
def test_first_tokens_follow_softmax_of_logits_over_temperature(T):
    """8000 first tokens drawn in one batch; Pearson's χ² against softmax(z / T) stays below
    29.59, the 99.9% quantile of χ² with 10 degrees of freedom, and rejects the other T."""
    m = gpt(seed=3)
    m = dataclasses.replace(m, wte=Embedding(m.wte.W * 40))  # logits of order 1, not 0.1
    x = prompt(b=1, t=4).expand(8000, 4)
    z = forward(set_training(m, False), x[:1])[0, -1]
    out = generate(m, x, 1, temperature=T, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(out[:, -1], minlength=VOCAB).double()
    p = torch.softmax(z / T, -1)
    assert chi2(counts, p) < 29.59
    other = torch.softmax(z / (2.7 - T), -1)  # 2.0 <-> 0.7: the test can tell them apart
    assert chi2(counts, other) > 100


def test_top_k_and_top_p_keep_the_sets_they_define():
    P = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=f64)
    z = P.log()
    # top-k: the k largest, renormalised
    torch.testing.assert_close(probabilities(z, top_k=2), torch.tensor([[0.625, 0.375, 0, 0]], dtype=f64))
    # top-p: the smallest set whose mass reaches p (Holtzman et al. 2020, eq. 2-3)
    torch.testing.assert_close(probabilities(z, top_p=0.5), torch.tensor([[1.0, 0, 0, 0]], dtype=f64))
    torch.testing.assert_close(probabilities(z, top_p=0.7), torch.tensor([[0.625, 0.375, 0, 0]], dtype=f64))
    torch.testing.assert_close(probabilities(z, top_p=0.9), torch.tensor([[0.5, 0.3, 0.15, 0]], dtype=f64) / 0.95)
    torch.testing.assert_close(probabilities(z, top_p=1.0), P)
    # temperature first: at T = 2 the distribution flattens, P ∝ sqrt(P)
    torch.testing.assert_close(probabilities(z, temperature=2.0), P.sqrt() / P.sqrt().sum())


def test_bad_arguments_get_clear_errors():
    m = gpt()
    with pytest.raises(ValueError, match=r"prompt `idx` has 9 tokens but the model's context is n_positions=8"):
        generate(m, prompt(t=9), 2)
    with pytest.raises(ValueError, match=r"prompt `idx` has 9 tokens"):
        generate(m, prompt(t=9), 2, use_cache=False)
    bad = prompt().clone()
    bad[1, 2] = VOCAB
    with pytest.raises(ValueError, match=r"`idx` holds the unknown token id 11 at \(1, 2\); .* 0 \.\. 10"):
        generate(m, bad, 2)
    with pytest.raises(ValueError, match="unknown token id -1"):
        generate(m, torch.tensor([[0, -1]]), 2)
    with pytest.raises(ValueError, match=r"`idx` is empty"):
        generate(m, torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="temperature"):
        generate(m, prompt(), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        generate(m, prompt(), 2, top_p=0.0)
    with pytest.raises(ValueError, match="top_k"):
        generate(m, prompt(), 2, top_k=0)


# ------------------------------------------------------------- encoder-decoder

BOS, EOS = 1, 2


def seq2seq(seed=0):
    return EncoderDecoder.init(9, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                               dim_feedforward=32, dropout=0.1, n_positions=16,
                               generator=torch.Generator().manual_seed(seed), dtype=f64)


def test_beam_search_with_one_beam_is_greedy_decoding():
    src = torch.randint(3, 9, (4, 5), generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        m = seq2seq(seed)
        greedy = generate(m, src, 8, bos=BOS, eos=EOS, greedy=True)
        beams, _ = beam_search(m, src, beam_size=1, max_len=8, bos=BOS, eos=EOS)
        assert torch.equal(beams, greedy)


def test_beam_search_on_a_batch_equals_beam_search_on_each_source():
    m, src = seq2seq(1), torch.randint(3, 9, (3, 5), generator=torch.Generator().manual_seed(2))
    kw = dict(beam_size=3, max_len=6, bos=BOS, eos=EOS, length_penalty=0.6)
    tokens, scores = beam_search(m, src, **kw)
    for r in range(3):
        one, s = beam_search(m, src[r:r + 1], **kw)
        n = one.shape[1]
        assert torch.equal(tokens[r, :n], one[0]) and set(tokens[r, n:].tolist()) <= {EOS}
        torch.testing.assert_close(scores[r:r + 1], s, atol=1e-12, rtol=0)


@struct
class Table:
    """A hand-made decoder: the next-token logits depend on the position and the last token only."""

    logits: Float[Tensor, "n_positions vocab vocab"]


@method
def forward(m: Table, src: Int[Tensor, "b s"], tgt: Int[Tensor, "b t"]) -> Float[Tensor, "b t vocab"]:
    t = tgt.shape[1]
    return m.logits[torch.arange(t)[None, :], tgt]


def table(rules: dict[tuple[int, int], dict[int, float]], vocab=6, n=4) -> Table:
    P = torch.full((n, vocab, vocab), 1e-12, dtype=f64)
    for (pos, last), nxt in rules.items():
        for tok, p in nxt.items():
            P[pos, last, tok] = p
    return Table(P.log())


def test_beam_search_finds_the_best_sequence_where_greedy_does_not():
    A, B, C, D = 3, 4, 5, 0
    # after bos: A 0.6, B 0.4; after A: C 0.45, D 0.35, eos 0.2; after B: eos 0.9; after C, D: eos
    m = table({(0, BOS): {A: 0.6, B: 0.4}, (1, A): {C: 0.45, D: 0.35, EOS: 0.2}, (1, B): {EOS: 0.9, C: 0.1},
               (2, C): {EOS: 1.0}, (2, D): {EOS: 1.0}})
    src = torch.zeros(1, 1, dtype=torch.long)
    greedy, g_score = beam_search(m, src, beam_size=1, max_len=3, bos=BOS, eos=EOS)
    assert greedy.tolist() == [[BOS, A, C, EOS]]  # 0.6 · 0.45 · 1 = 0.27
    best, score = beam_search(m, src, beam_size=2, max_len=3, bos=BOS, eos=EOS)
    assert best.tolist() == [[BOS, B, EOS]]  # 0.4 · 0.9 = 0.36
    assert math.isclose(score.item(), math.log(0.36), rel_tol=1e-9)
    assert math.isclose(g_score.item(), math.log(0.27), rel_tol=1e-9)


@pytest.mark.parametrize("α", [0.0, 0.6, 2.0])
def test_beam_search_with_enough_beams_is_exhaustive_search(α):
    """Vocab 4, at most 3 tokens: 64 beams see every sequence; the winner is the argmax of
    log P(Y) / lp(Y) over all of them (eos-terminated, or cut at max_len)."""
    V, L = 4, 3
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        m = Table(torch.randn(L + 1, V, V, generator=g, dtype=f64) * 2)
        logp = torch.log_softmax(m.logits, -1)
        best = (-math.inf, None)
        for n in range(1, L + 1):
            for ys in itertools.product(range(V), repeat=n):
                if EOS in ys[:-1] or (n < L and ys[-1] != EOS):
                    continue
                seq = (BOS,) + ys
                s = sum(logp[i, seq[i], seq[i + 1]].item() for i in range(n))
                best = max(best, (s / length_penalty_factor(n, α), seq))
        tokens, score = beam_search(m, torch.zeros(1, 1, dtype=torch.long), beam_size=V ** L, max_len=L,
                                    bos=BOS, eos=EOS, length_penalty=α)
        assert math.isclose(score.item(), best[0], rel_tol=1e-9)
        n_used = len(best[1])
        assert tuple(tokens[0, :n_used].tolist()) == best[1] and set(tokens[0, n_used:].tolist()) <= {EOS}


def test_seq2seq_generate_pads_finished_rows_with_eos_and_checks_its_arguments():
    m = seq2seq()
    src = torch.randint(3, 9, (5, 4), generator=torch.Generator().manual_seed(1))
    out = generate(m, src, 12, bos=BOS, eos=EOS, temperature=3.0, generator=torch.Generator().manual_seed(0))
    assert (out[:, 0] == BOS).all()
    for row in out.tolist():
        if EOS in row:
            assert set(row[row.index(EOS):]) == {EOS}
    with pytest.raises(ValueError, match=r"`max_len`=20 needs 21 target positions .* n_positions=16"):
        generate(m, src, 20, bos=BOS, eos=EOS)
    with pytest.raises(ValueError, match=r"`eos`=9 is not a target token id 0 \.\. 8"):
        beam_search(m, src, beam_size=2, max_len=5, bos=BOS, eos=9)
    with pytest.raises(ValueError, match=r"`src` holds the unknown token id 9"):
        beam_search(m, torch.full((1, 3), 9), beam_size=2, max_len=5, bos=BOS, eos=EOS)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(m, src, beam_size=0, max_len=5, bos=BOS, eos=EOS)
