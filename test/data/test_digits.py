"""scikit-learn's digits as tensors, and the seeded train/test split."""

from collections import Counter

import pytest
import torch
from sklearn.datasets import load_digits

from zerotoml.data import digits


def rows(x):
    return Counter(tuple(r) for r in x.tolist())


def test_all_equals_sklearn_scaled_to_unit_interval():
    x, y = digits("all", flat=True, dtype=torch.float64)
    bunch = load_digits()
    assert x.shape == (1797, 64) and y.dtype == torch.int64
    assert torch.equal(x * 16, torch.as_tensor(bunch.data, dtype=torch.float64))
    assert torch.equal(y, torch.as_tensor(bunch.target, dtype=torch.int64))
    assert x.min() == 0 and x.max() == 1


def test_image_layout_is_channel_first():
    x, _ = digits("all", dtype=torch.float64)
    assert x.shape == (1797, 1, 8, 8)
    assert torch.equal(x[:, 0] * 16, torch.as_tensor(load_digits().images, dtype=torch.float64))
    assert torch.equal(x.reshape(1797, 64), digits("all", flat=True, dtype=torch.float64)[0])


def test_split_sizes_partition_and_determinism():
    train_x, train_y = digits("train", flat=True, dtype=torch.float64)
    test_x, test_y = digits("test", flat=True, dtype=torch.float64)
    all_x, _ = digits("all", flat=True, dtype=torch.float64)
    assert (len(train_x), len(test_x)) == (1438, 359)  # round(0.2 * 1797) = 359
    assert rows(train_x) + rows(test_x) == rows(all_x)  # a partition of the 1797 images
    again_x, again_y = digits("test", flat=True, dtype=torch.float64)
    assert torch.equal(again_x, test_x) and torch.equal(again_y, test_y)
    other_x, _ = digits("test", seed=1, flat=True, dtype=torch.float64)
    assert not torch.equal(other_x, test_x)
    assert len(digits("test", test_fraction=0.5)[0]) == 898  # round(898.5) = 898, banker's rounding


def test_dtype_and_errors():
    x, y = digits("test", dtype=torch.float16)
    assert x.dtype == torch.float16 and y.dtype == torch.int64
    with pytest.raises(ValueError, match=r"digits: test_fraction=0.0; expected 0 < test_fraction < 1"):
        digits(test_fraction=0.0)
    with pytest.raises(ValueError, match=r"digits: split='val'"):
        digits("val")
