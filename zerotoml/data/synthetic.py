"""Synthetic data with the shapes and dtypes of the real datasets, for tests and for
trying a model before downloading anything, and Gaussian blobs, a classification
problem whose best possible accuracy is known. Everything is drawn on the CPU from a
``torch.Generator`` seeded with ``seed`` (same seed, same data, on any device), then
moved. Note: notes/data.md#synthetic-data.
"""

from __future__ import annotations

import math
import string

import torch
from einops import rearrange

from ..shapes import Float, Int, Shaped, Tensor

__all__ = ["fake_text", "fake_idx_images", "fake_cifar", "fake_digits", "blobs", "blob_centers",
           "blobs_error_bound", "TEXT_VOCAB"]

# the 65 characters of nanoGPT's tiny-shakespeare: newline, space, punctuation, letters
TEXT_VOCAB = "\n !$&',-.3:;?" + string.ascii_uppercase + string.ascii_lowercase


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fake_text(n_chars: int, vocab: str | int = TEXT_VOCAB, *, seed: int = 0) -> str:
    """``n_chars`` characters drawn uniformly from ``vocab`` (a string of distinct
    characters, or an int k: the first k of TEXT_VOCAB)."""
    if isinstance(vocab, int):
        if not 1 <= vocab <= len(TEXT_VOCAB):
            raise ValueError(f"fake_text: vocab={vocab}; expected 1..{len(TEXT_VOCAB)} or a string")
        vocab = TEXT_VOCAB[:vocab]
    if not vocab or len(set(vocab)) != len(vocab):
        raise ValueError(f"fake_text: vocab={vocab!r}; expected a non-empty string of distinct characters")
    if n_chars < 0:
        raise ValueError(f"fake_text: n_chars={n_chars}; expected >= 0")
    index = torch.randint(len(vocab), (n_chars,), generator=_generator(seed))
    return "".join(vocab[i] for i in index.tolist())


def _labels(n: int, classes: int, g: torch.Generator) -> Int[Tensor, "n"]:
    """Balanced labels: 0, 1, ..., classes-1 repeated, in a random order."""
    return (torch.arange(n) % classes)[torch.randperm(n, generator=g)]


def fake_idx_images(n: int, h: int = 28, w: int = 28, *, classes: int = 10, seed: int = 0,
                    ) -> tuple[Shaped[Tensor, "n h w"], Int[Tensor, "n"]]:
    """Like `mnist` / `fashion_mnist`: ``(images uint8 (n, h, w), labels int64 (n,))``,
    pixels uniform in 0..255, balanced labels in 0..classes-1."""
    g = _generator(seed)
    images = torch.randint(256, (n, h, w), generator=g, dtype=torch.uint8)
    return images, _labels(n, classes, g)


def fake_cifar(n: int, *, classes: int = 10, seed: int = 0,
               ) -> tuple[Shaped[Tensor, "n 3 32 32"], Int[Tensor, "n"]]:
    """Like `cifar10`: ``(images uint8 (n, 3, 32, 32), labels int64 (n,))``."""
    g = _generator(seed)
    images = torch.randint(256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return images, _labels(n, classes, g)


def fake_digits(n: int, *, flat: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> tuple[Float[Tensor, "n ..."], Int[Tensor, "n"]]:
    """Like `digits`: images ``k / 16`` for k in 0..16, shape ``(n, 1, 8, 8)`` or ``(n, 64)``
    with ``flat=True``; labels int64 in 0..9."""
    g = _generator(seed)
    x = torch.randint(17, (n, 8, 8), generator=g).to(torch.float64) / 16
    x = rearrange(x, "n h w -> n (h w)") if flat else rearrange(x, "n h w -> n 1 h w")
    return x.to(device=device, dtype=dtype), _labels(n, 10, g).to(device)


def blob_centers(classes: int, dim: int, separation: float) -> Float[Tensor, "classes dim"]:
    """Class means at least ``separation`` apart: on a line for ``dim == 1``, else the
    vertices of a regular polygon in the first two coordinates, radius
    ``separation / (2 sin(π / classes))``, so neighbours are exactly ``separation`` apart."""
    if classes < 2 or dim < 1:
        raise ValueError(f"blob_centers: classes={classes}, dim={dim}; expected classes >= 2, dim >= 1")
    centers = torch.zeros(classes, dim, dtype=torch.float64)
    k = torch.arange(classes, dtype=torch.float64)
    if dim == 1:
        centers[:, 0] = (k - (classes - 1) / 2) * separation
    else:
        r = separation / (2 * math.sin(math.pi / classes))
        θ = 2 * math.pi * k / classes
        centers[:, 0], centers[:, 1] = r * torch.cos(θ), r * torch.sin(θ)
    return centers


def blobs_error_bound(classes: int, separation: float, std: float = 1.0) -> float:
    """Upper bound on the error of the nearest-center rule (the Bayes rule here) on
    `blobs`: a point is misread only if it lies nearer another center, which happens
    with probability at most Φ(-separation / (2 std)) per other class."""
    # P(error) <= (K - 1) Φ(-d / 2σ),  Φ(z) = erfc(-z / √2) / 2
    return min(1.0, (classes - 1) * 0.5 * math.erfc(separation / (2 * std) / math.sqrt(2)))


def blobs(n: int, *, classes: int = 3, dim: int = 2, separation: float = 6.0, std: float = 1.0,
          seed: int = 0, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
          ) -> tuple[Float[Tensor, "n dim"], Int[Tensor, "n"]]:
    """Gaussian blobs: ``x = blob_centers(classes, dim, separation)[y] + std * ε``, ε ~ N(0, I),
    balanced labels ``y`` int64. Linearly separable up to an error of at most
    `blobs_error_bound` (0.27% for the defaults), so a linear classifier must reach
    about that accuracy: a learnable problem with a known answer."""
    if std <= 0 or separation < 0:
        raise ValueError(f"blobs: std={std}, separation={separation}; expected std > 0, separation >= 0")
    g = _generator(seed)
    y = _labels(n, classes, g)
    ε = torch.randn(n, dim, generator=g, dtype=torch.float64)
    x = blob_centers(classes, dim, separation)[y] + std * ε
    return x.to(device=device, dtype=dtype), y.to(device)
