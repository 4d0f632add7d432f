"""Windows of a token stream: zerotoml/data/windows.py (notes/transformers.md#results-a-gpt-on-shakespeare)."""

import json

import pytest
import torch

from zerotoml.data import Windows, blocks, next_token_windows
from zerotoml.data.batches import epoch_seed

IDS = torch.arange(100, 200)  # token k at position k - 100: a window shows where it was cut


def test_next_token_windows_predict_every_token_but_the_first_once():
    x, y = next_token_windows(IDS[:23], 5)  # (23 - 1) // 5 = 4 whole windows
    assert x.shape == y.shape == (4, 5)
    assert torch.equal(x.flatten(), IDS[:20]) and torch.equal(y.flatten(), IDS[1:21])
    x, y = next_token_windows(IDS[:21], 5)  # 21 tokens: exactly 4 windows, the last target is the last token
    assert x.shape == (4, 5) and int(y[-1, -1]) == int(IDS[20])


def test_next_token_windows_at_given_starts():
    x, y = next_token_windows(IDS, 4, torch.tensor([0, 7, 95]))
    assert torch.equal(x[1], IDS[7:11]) and torch.equal(y[1], IDS[8:12]) and torch.equal(y[2], IDS[96:100])
    with pytest.raises(ValueError, match=r"starts run from 0 to 96, but windows of 4 \+ 1 tokens fit at 0 .. 95"):
        next_token_windows(IDS, 4, torch.tensor([0, 96]))
    with pytest.raises(ValueError, match="8 tokens are too few for one window of 9"):
        next_token_windows(IDS[:8], 8)


def test_blocks_are_non_overlapping_and_drop_the_tail():
    b = blocks(IDS[:23], 5)
    assert b.shape == (4, 5) and torch.equal(b.flatten(), IDS[:20])
    with pytest.raises(ValueError, match="3 tokens are too few for one window of 4"):
        blocks(IDS[:3], 4)


def test_random_windows_are_shifted_by_one_token_and_seeded_by_epoch():
    data = Windows(IDS, 10, 6, seed=3)
    x, y = next(data)
    assert x.shape == y.shape == (6, 10)
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1) and int(y.max()) <= 199
    # the starts are the first batch of a permutation of the 90 starts, seeded by (seed, epoch 0)
    order = torch.randperm(90, generator=torch.Generator().manual_seed(epoch_seed(3, 0)))
    assert torch.equal(x[:, 0], IDS[order[:6]])
    assert torch.equal(next(Windows(IDS, 10, 6, seed=3))[0], x)
    assert not torch.equal(next(Windows(IDS, 10, 6, seed=4))[0], x)
    starts = torch.cat([next(data)[0][:, 0] for _ in range(len(data) - 1)]) - 100
    assert len(set(starts.tolist()) | set((x[:, 0] - 100).tolist())) == 15 * 6  # each start once an epoch


def test_random_windows_resume_from_their_state():
    data = Windows(IDS, 10, 6, seed=3)
    for _ in range(20):  # into the second epoch (15 batches each)
        next(data)
    state = json.loads(json.dumps(data.state()))
    resumed = Windows.from_state(IDS, 10, state)
    for _ in range(3):
        a, b = next(data), next(resumed)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="n=90 in the state, 40 here"):
        Windows(IDS[:50], 10, 6, seed=3).load_state(state)
    assert "context=10" in repr(resumed)
