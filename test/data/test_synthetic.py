"""Synthetic data: real shapes and dtypes, seeded, and blobs that a linear model learns
to the accuracy their separation promises."""

import math

import pytest
import torch

from zerotoml import Linear, forward, value_and_grad
from zerotoml.data import (blob_centers, blobs, blobs_error_bound, fake_cifar, fake_digits, fake_idx_images,
                           fake_text)
from zerotoml.data.synthetic import TEXT_VOCAB


def test_fake_text_vocab_length_and_seed():
    text = fake_text(5000, seed=3)
    assert len(text) == 5000 and set(text) == set(TEXT_VOCAB) and len(TEXT_VOCAB) == 65
    assert fake_text(5000, seed=3) == text and fake_text(5000, seed=4) != text
    assert set(fake_text(1000, "ab\n")) == {"a", "b", "\n"}
    assert set(fake_text(1000, 3)) == set(TEXT_VOCAB[:3])
    assert fake_text(0) == ""
    with pytest.raises(ValueError, match=r"fake_text: vocab='aa'; expected a non-empty string of distinct"):
        fake_text(3, "aa")


@pytest.mark.parametrize("make, shape", [
    (lambda s: fake_idx_images(20, seed=s), (20, 28, 28)),
    (lambda s: fake_idx_images(20, 16, 12, classes=4, seed=s), (20, 16, 12)),
    (lambda s: fake_cifar(20, seed=s), (20, 3, 32, 32)),
])
def test_fake_images_have_real_shapes_dtypes_and_balanced_labels(make, shape):
    x, y = make(0)
    classes = 4 if shape == (20, 16, 12) else 10
    assert x.shape == shape and x.dtype == torch.uint8 and y.shape == (20,) and y.dtype == torch.int64
    assert torch.equal(torch.bincount(y, minlength=classes), torch.full((classes,), 20 // classes))
    x2, y2 = make(0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make(1)[0])
    assert x.min() < 10 and x.max() > 245  # uses the whole 0..255 range


def test_fake_digits_match_digits_format():
    x, y = fake_digits(30, dtype=torch.float64)
    assert x.shape == (30, 1, 8, 8) and x.dtype == torch.float64 and y.dtype == torch.int64
    assert torch.equal(x * 16, (x * 16).round()) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(fake_digits(30, flat=True, dtype=torch.float64)[0], x.reshape(30, 64))


@pytest.mark.parametrize("classes, dim", [(2, 1), (3, 1), (2, 2), (3, 2), (5, 4)])
def test_blob_centers_are_separation_apart(classes, dim):
    c = blob_centers(classes, dim, 4.0)
    d = torch.cdist(c, c) + torch.eye(classes) * 1e9
    assert c.shape == (classes, dim)
    assert d.min().item() == pytest.approx(4.0, rel=1e-12)


def test_error_bound_is_the_gaussian_tail():
    # Φ(-3) = 0.0013498980316301
    assert blobs_error_bound(2, 6.0) == pytest.approx(0.0013498980316301, rel=1e-12)
    assert blobs_error_bound(3, 6.0, std=2.0) == pytest.approx(2 * 0.5 * math.erfc(1.5 / math.sqrt(2)))


def test_nearest_center_error_is_within_the_bound():
    classes, separation = 4, 5.0
    x, y = blobs(8000, classes=classes, dim=3, separation=separation, dtype=torch.float64, seed=1)
    nearest = torch.cdist(x, blob_centers(classes, 3, separation)).argmin(1)
    error = (nearest != y).double().mean().item()
    bound = blobs_error_bound(classes, separation)  # 0.0186
    assert 0 < error <= bound


def test_a_linear_classifier_learns_blobs():
    torch.manual_seed(0)
    x, y = blobs(600, classes=3, separation=6.0, seed=0)
    x_test, y_test = blobs(3000, classes=3, separation=6.0, seed=1)
    model = Linear.init(2, 3, generator=torch.Generator().manual_seed(0))

    def cross_entropy(m, x, y):
        logits = forward(m, x)
        return (torch.logsumexp(logits, -1) - logits.gather(-1, y[:, None])[:, 0]).mean()

    for _ in range(200):
        _, g = value_and_grad(cross_entropy, model, x, y)
        model = Linear(model.W - 0.5 * g.W, model.b - 0.5 * g.b)
    accuracy = (forward(model, x_test).argmax(-1) == y_test).float().mean().item()
    assert accuracy >= 1 - blobs_error_bound(3, 6.0) - 0.01  # >= 0.987
    assert cross_entropy(model, x_test, y_test).item() < 0.1


def test_blobs_seed_dtype_and_errors():
    x, y = blobs(10, seed=5, dtype=torch.float64)
    assert x.dtype == torch.float64 and x.shape == (10, 2) and y.dtype == torch.int64
    assert torch.equal(blobs(10, seed=5, dtype=torch.float64)[0], x)
    with pytest.raises(ValueError, match=r"blobs: std=0.0, separation=6.0; expected std > 0"):
        blobs(10, std=0.0)
