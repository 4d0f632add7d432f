"""Classifier: zerotoml/classifier.py (notes/layers.md#classifier)."""

import pytest
import torch

from zerotoml import forward, loss
from zerotoml.classifier import Classifier, accuracy
from zerotoml.layers.chain import MLP
from zerotoml.layers.linear import Linear
from zerotoml.losses import cross_entropy
from zerotoml.tree import params, value_and_grad


def blobs(n=200, seed=0):
    """Three separable Gaussian blobs in 2-D (centres 4 apart, unit spread)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 4.0], [-3.5, -2.0], [3.5, -2.0]], dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    x = centres[y] + torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.7
    return x, y


def test_mlp_classifier_learns_separable_blobs():
    x, y = blobs()
    g = torch.Generator().manual_seed(1)
    c = Classifier(MLP.init([2, 16, 3], activation="tanh", generator=g, dtype=torch.float64))
    first = loss(c, x, y).item()
    for _ in range(300):
        value, grads = value_and_grad(loss, c, x, y)
        with torch.no_grad():  # plain gradient descent, in place
            for p, dp in zip(params(c), params(grads)):
                p.sub_(0.2 * dp)
    final = loss(c, x, y).item()
    assert first > 0.8 and final < 0.05
    x_test, y_test = blobs(seed=2)
    assert accuracy(c, x, y) >= 0.99 and accuracy(c, x_test, y_test) >= 0.97


def test_forward_loss_and_accuracy_agree_with_their_definitions():
    m = Linear(torch.tensor([[1.0, -1.0], [0.0, 2.0]], dtype=torch.float64), None)
    c = Classifier(m, label_smoothing=0.1)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(forward(c, x), x @ m.W)
    torch.testing.assert_close(loss(c, x, y), cross_entropy(x @ m.W, y, label_smoothing=0.1))
    # logits [1,-1], [0,2], [1,1] (a tie: argmax takes the first), [-1,1] -> predictions 0, 1, 0, 1
    assert accuracy(c, x, y) == 1.0
    assert accuracy(c, x, torch.tensor([1, 1, 1, 1])) == 0.5
    with pytest.raises(ValueError, match=r"`y` has shape \(3,\)"):
        accuracy(c, x, y[:3])
