"""Classifier: any layer or model whose output is class logits, with its loss and accuracy.
Note: notes/layers.md#classifier."""

from __future__ import annotations

from typing import Any

import torch

from .generic import forward, loss, method
from .losses import cross_entropy
from .shapes import Float, Int, Tensor
from .tree import struct

__all__ = ["Classifier", "accuracy"]


@struct
class Classifier:
    """``forward(c, x) = forward(c.body, x)``: logits ``(b, classes)`` (or ``(b, classes, d1, ...)``);
    ``loss`` is the cross-entropy against integer labels, with ``label_smoothing``."""

    body: Any
    label_smoothing: float = 0.0


@method
def forward(c: Classifier, x: Any) -> Float[Tensor, "..."]:
    return forward(c.body, x)


@method
def loss(c: Classifier, x: Any, y: Int[Tensor, "..."]) -> Float[Tensor, ""]:
    # L = −1/N Σ_i log softmax(f(x_i))_{y_i}   (smoothed when label_smoothing > 0)
    return cross_entropy(forward(c, x), y, label_smoothing=c.label_smoothing)


def accuracy(c: Classifier, x: Any, y: Int[Tensor, "..."]) -> float:
    """The fraction of examples whose largest logit is the label (no gradient)."""
    with torch.no_grad():
        z = forward(c, x)
        pred = z.argmax(dim=1 if z.dim() > 1 else 0)
        if pred.shape != y.shape:
            raise ValueError(f"accuracy: argument `y` has shape {tuple(y.shape)}; the predictions have shape "
                             f"{tuple(pred.shape)}")
        return (pred == y).double().mean().item()
