"""Batches: zerotoml/data/batches.py (notes/training.md#batches)."""

import itertools
import json

import pytest
import torch

from zerotoml.data import Batches
from zerotoml.data.batches import epoch_seed


def data(n=23):
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    y = torch.arange(n)
    return x, y


def test_epoch_order_is_randperm_seeded_by_seed_and_epoch():
    x, y = data()
    b = Batches((x, y), 5, seed=7, drop_last=True)
    assert len(b) == 4
    for epoch in range(3):
        want = torch.randperm(23, generator=torch.Generator().manual_seed(epoch_seed(7, epoch)))
        got = torch.cat([yb for _, yb in b.epoch_batches()])
        assert torch.equal(got, want[:20]), epoch
        assert b.position == (epoch, 4)
    # the rows of each batch stay together
    xb, yb = next(b)
    assert torch.equal(xb, x[yb])


def test_epochs_differ_and_seeds_differ():
    x, y = data(50)
    a = Batches((x, y), 50, seed=0)
    orders = [next(a)[1] for _ in range(3)]
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    for o in orders:
        assert torch.equal(o.sort().values, torch.arange(50))  # a permutation each epoch
    assert not torch.equal(next(Batches((x, y), 50, seed=1))[1], orders[0])
    assert torch.equal(next(Batches((x, y), 50, seed=0))[1], orders[0])


def test_without_drop_last_every_example_once_per_epoch_last_batch_smaller():
    x, y = data(23)
    b = Batches((x, y), 5, seed=3, drop_last=False)
    assert len(b) == 5
    sizes = [len(yb) for _, yb in b.epoch_batches()]
    assert sizes == [5, 5, 5, 5, 3]
    b2 = Batches((x, y), 5, seed=3, drop_last=False)
    seen = torch.cat([yb for _, yb in b2.epoch_batches()])
    assert torch.equal(seen.sort().values, torch.arange(23))


def test_unshuffled_is_in_order():
    x, y = data(10)
    b = Batches((x, y), 4, shuffle=False, drop_last=False)
    assert [yb.tolist() for _, yb in itertools.islice(b, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]


def test_infinite_iteration_crosses_epochs():
    x, y = data(23)
    b = Batches((x, y), 5, seed=0)
    got = list(itertools.islice(b, 10))  # 4 batches per epoch -> 2.5 epochs
    assert len(got) == 10 and b.position == (2, 2)


def test_state_resumes_exactly_through_json():
    x, y = data(23)
    a = Batches((x, y), 4, seed=11)
    for _ in range(7):  # mid-way through the second epoch
        next(a)
    saved = json.loads(json.dumps(a.state()))
    rest_a = [yb for _, yb in itertools.islice(a, 20)]
    b = Batches.from_state((x, y), saved)
    rest_b = [yb for _, yb in itertools.islice(b, 20)]
    assert all(torch.equal(p, q) for p, q in zip(rest_a, rest_b))
    assert a.position == b.position


def test_state_at_epoch_end_resumes_into_next_epoch():
    x, y = data(20)
    a = Batches((x, y), 5, seed=2)
    list(a.epoch_batches())
    assert a.position == (0, 4)
    b = Batches.from_state((x, y), a.state())
    assert torch.equal(next(a)[1], next(b)[1]) and b.position == (1, 1)


def test_load_state_refuses_other_data():
    x, y = data(23)
    state = Batches((x, y), 4, seed=1).state()
    with pytest.raises(ValueError, match=r"n=23 in the state, 22 here"):
        Batches((x[:22], y[:22]), 4, seed=1).load_state(state)
    with pytest.raises(ValueError, match=r"seed=1 in the state, 2 here"):
        Batches((x, y), 4, seed=2).load_state(state)
    with pytest.raises(ValueError, match="not a Batches state"):
        Batches((x, y), 4).load_state({"epoch": 0})
    with pytest.raises(ValueError, match="bad position"):
        Batches((x, y), 4, seed=1).load_state({**state, "index": 99})


def test_bad_arguments_are_named():
    x, y = data(10)
    with pytest.raises(ValueError, match=r"share their first axis, got lengths \[10, 9\]"):
        Batches((x, y[:9]), 2)
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        Batches((x, y), 0)
    with pytest.raises(ValueError, match="`batch_size`=11 is larger than the 10 examples"):
        Batches((x, y), 11)
    with pytest.raises(TypeError, match=r"tuple of tensors, got \(list\)"):
        Batches(([1, 2],), 1)
