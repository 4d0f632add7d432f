"""Batches of sentence pairs: zerotoml/transformers/seq2seq.py (notes/translation.md#batches).
Padding, <bos>/<eos> placement, and the padding masks proved right the only way that matters:
a padded batch gives each pair the logits and the loss it gets alone. Then a tiny EncoderDecoder
learns to reverse short sequences."""

import pytest
import torch

from zerotoml import forward, generate, loss, step
from zerotoml.optim import Adam
from zerotoml.transformers.encoder_decoder import EncoderDecoder
from zerotoml.transformers.seq2seq import IGNORE, pad_pairs, padding_masks, seq2seq_loss, trim_padding
from zerotoml.tree import set_training, value_and_grad

f64 = torch.float64
PAD, BOS, EOS = 0, 1, 2


def test_pad_pairs_places_bos_eos_and_padding():
    src, tgt_in, tgt_out = pad_pairs([([5, 6, 7], [8]), ([9], [10, 11, 12])], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert src.tolist() == [[5, 6, 7], [9, PAD, PAD]]
    assert tgt_in.tolist() == [[BOS, 8, PAD, PAD], [BOS, 10, 11, 12]]
    assert tgt_out.tolist() == [[8, EOS, IGNORE, IGNORE], [10, 11, 12, EOS]]
    src_pad, tgt_pad = padding_masks(src, tgt_in, pad_id=PAD)
    assert src_pad.tolist() == [[False, False, False], [False, True, True]]
    assert tgt_pad.tolist() == [[False, False, True, True], [False, False, False, False]]
    # an empty target is fine (the model must say <eos> at once); an empty source is not
    _, tgt_in, tgt_out = pad_pairs([([5], [])], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert tgt_in.tolist() == [[BOS]] and tgt_out.tolist() == [[EOS]]
    with pytest.raises(ValueError, match="pair 1 has an empty source"):
        pad_pairs([([5], [6]), ([], [6])], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match="`pairs` is empty"):
        pad_pairs([], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match="row 1 of argument `src` is all padding"):
        padding_masks(torch.tensor([[3, 0], [0, 0]]), torch.tensor([[1], [1]]), pad_id=PAD)


def test_trim_padding_drops_only_columns_that_are_padding_everywhere():
    pairs = [([5, 6], [7]), ([8], [9, 10])]
    src, tgt_in, tgt_out = pad_pairs(pairs, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    wide = [torch.cat([t, torch.full((2, 4), fill)], dim=1) for t, fill in
            ((src, PAD), (tgt_in, PAD), (tgt_out, IGNORE))]
    for narrow, padded in zip(trim_padding(*wide, pad_id=PAD), (src, tgt_in, tgt_out)):
        assert torch.equal(narrow, padded)


def tiny(seed=0, vocab=13, dropout=0.0):
    return EncoderDecoder.init(vocab, None, 16, 2, 2, 2, 24, dropout=dropout, n_positions=16,
                               generator=torch.Generator().manual_seed(seed), dtype=f64)


def test_a_padded_batch_gives_each_pair_what_it_gets_alone():
    """Logits at real positions and the loss equal those of each pair run unpadded (float64):
    the encoder, cross-attention and decoder masks hide the padding completely."""
    m = tiny()
    pairs = [([5, 6, 7, 8, 9], [10, 11]), ([12], [3, 4, 5, 6, 7, 8]), ([3, 4, 5], [9])]
    src, tgt_in, tgt_out = pad_pairs(pairs, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    src_pad, tgt_pad = padding_masks(src, tgt_in, pad_id=PAD)
    z = forward(m, src, tgt_in, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad)
    nll_sum, n_tokens = 0.0, 0
    for i, (x, y) in enumerate(pairs):
        s, t_in, t_out = pad_pairs([(x, y)], pad_id=PAD, bos_id=BOS, eos_id=EOS)
        alone = forward(m, s, t_in)
        torch.testing.assert_close(z[i, :len(y) + 1], alone[0], atol=1e-12, rtol=0)
        nll_sum += loss(m, s, t_in, t_out).item() * (len(y) + 1)
        n_tokens += len(y) + 1
    assert seq2seq_loss(m, src, tgt_in, tgt_out, pad_id=PAD).item() == pytest.approx(nll_sum / n_tokens, abs=1e-12)
    # without the source mask the padding leaks into the shorter sources' memory
    leaky = forward(m, src, tgt_in, tgt_key_padding_mask=tgt_pad)
    assert (leaky[1, :7] - z[1, :7]).abs().max() > 1e-6


def random_pairs(g, reverse, b=32, vocab=10, max_len=4):
    """Random sequences of 2..max_len symbols from 3..vocab-1, and their copies or reversals."""
    lengths = torch.randint(2, max_len + 1, (b,), generator=g).tolist()
    seqs = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]
    return [(s, s[::-1] if reverse else s) for s in seqs]


def train_and_decode(reverse, layers, steps, lr):
    """``(first loss, mean of the last 10 losses, exact-match rate of greedy decoding on 200 unseen pairs)``."""
    g = torch.Generator().manual_seed(0)
    m = EncoderDecoder.init(10, None, 32, 4, layers, layers, 64, dropout=0.0, n_positions=16, generator=g)
    opt = Adam.init(m, lr=lr)
    losses = []
    for _ in range(steps):
        batch = pad_pairs(random_pairs(g, reverse), pad_id=PAD, bos_id=BOS, eos_id=EOS)
        value, grads = value_and_grad(lambda mm: seq2seq_loss(mm, *batch, pad_id=PAD), m)
        step(opt, m, grads)
        losses.append(value.item())
    test = random_pairs(torch.Generator().manual_seed(99), reverse, b=200)
    src, _, _ = pad_pairs(test, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    out = generate(set_training(m, False), src, 6, bos=BOS, eos=EOS, greedy=True, src_key_padding_mask=src == PAD)
    exact = [out[i, 1:len(y) + 2].tolist() == y + [EOS] for i, (_, y) in enumerate(test)]
    return losses[0], sum(losses[-10:]) / 10, sum(exact) / len(exact)


def test_tiny_encoder_decoder_learns_to_copy():
    """One layer each side, Adam (lr 5e-3), 100 steps of 32 fresh pairs: the loss falls from
    ~3.7 to below 0.3 (0.18 measured); greedy decoding copies >= 70% of unseen sequences (83%)."""
    first, last, exact = train_and_decode(reverse=False, layers=1, steps=100, lr=5e-3)
    assert first > 3.0 and last < 0.3 and exact >= 0.7, (first, last, exact)


@pytest.mark.slow
def test_tiny_encoder_decoder_learns_to_reverse():
    """Two layers each side, Adam (lr 5e-3), 400 steps: the loss falls from ~3.7 to below 0.1
    (0.010 measured with the reference engine, 0.004 with the fast one); greedy decoding
    reverses >= 90% of unseen sequences exactly (100% with both). At 200 steps the outcome
    depends on rounding: the key bias's gradient is zero in exact arithmetic (softmax ignores
    a constant added to every score), rounding noise in float32, which Adam's first steps
    scale to ±lr, so both engines land anywhere in 83-100% over seeds."""
    first, last, exact = train_and_decode(reverse=True, layers=2, steps=400, lr=5e-3)
    assert first > 3.0 and last < 0.1 and exact >= 0.9, (first, last, exact)
