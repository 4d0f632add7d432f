"""scikit-learn's handwritten digits (UCI "Optical Recognition of Handwritten Digits",
Alpaydin and Kaynak 1998): 1797 images of 8x8 pixels, values 0..16, classes 0..9,
shipped inside scikit-learn, so always offline. Note: notes/data.md#digits.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..shapes import Float, Int, Tensor
from .common import check_split

__all__ = ["digits"]


def digits(split: str = "train", *, test_fraction: float = 0.2, seed: int = 0, flat: bool = False,
           dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
           ) -> tuple[Float[Tensor, "n ..."], Int[Tensor, "n"]]:
    """``(images, labels int64 (n,))`` from ``sklearn.datasets.load_digits``.

    Images are ``x / 16`` in [0, 1], shape ``(n, 1, 8, 8)`` (channel first, for
    convolutions) or ``(n, 64)`` with ``flat=True``. The split is a permutation drawn
    from a ``torch.Generator`` seeded with ``seed``: the first ``round(test_fraction * 1797)``
    indices are the test set, the rest the train set; ``split="all"`` is every image in
    scikit-learn's order. Same seed, same split."""
    check_split(split, ("train", "test", "all"), "digits")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits: test_fraction={test_fraction!r}; expected 0 < test_fraction < 1")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ModuleNotFoundError("digits needs scikit-learn: `pip install scikit-learn` "
                                  "(or `pip install zerotoml[examples]`)") from None
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float64) / 16  # values 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    if split != "all":
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_test = round(test_fraction * len(y))
        index = order[:n_test] if split == "test" else order[n_test:]
        x, y = x[index], y[index]
    x = rearrange(x, "n h w -> n (h w)") if flat else rearrange(x, "n h w -> n 1 h w")
    return x.to(device=device, dtype=dtype), y.to(device=device)
