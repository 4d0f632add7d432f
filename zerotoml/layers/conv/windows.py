"""Windows: the zero-padded input, the window view of a convolution or pooling layer over it,
and its adjoint, the fold. Dumoulin & Visin (2016), chapter 2. Note: notes/cnn.md#convolution.

The window view ``x̂[..., i, κ] = x_pad[..., s·i + d·κ]`` (one i and one κ per spatial axis) is
made of ``Tensor.unfold``, one spatial axis at a time, so autograd differentiates it: no copy,
no loop over output positions. Windows overlap, so the gradient of the view adds up, on each
input element, the gradients of every window entry that reads it: that is `fold`, derived by
hand (one strided slice-add per kernel offset) and tested equal to autograd's
vector-Jacobian product of `window_view` in test/layers/conv/test_windows.py. `Conv`, the
transposed convolution and the pooling layers are built on these.
"""

from __future__ import annotations

import itertools

import torch

from ...shapes import Tensor

__all__ = ["fold", "pad", "window_view"]


def pad(x: Tensor, padding: tuple[tuple[int, int], ...], value: float = 0.0) -> Tensor:
    """``x`` with ``(p_lo, p_hi)`` entries ``value`` (zeros by default) around each of its last
    len(padding) axes; a negative amount crops, after the padding is added.
    torch.constant_pad_nd lists the last axis first."""
    flat = tuple(p for lo_hi in reversed(padding) for p in lo_hi)
    if any(p > 0 for p in flat):
        x = torch.constant_pad_nd(x, tuple(max(p, 0) for p in flat), value)
    if any(p < 0 for p in flat):  # a crop: a view
        n = len(padding)
        x = x[(..., *(slice(-min(lo, 0), x.shape[j - n] + min(hi, 0)) for j, (lo, hi) in enumerate(padding)))]
    return x


def window_view(xp: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                dilation: tuple[int, ...]) -> Tensor:
    """``x̂[..., i_1..i_n, κ_1..κ_n] = xp[..., s_1 i_1 + d_1 κ_1, ..., s_n i_n + d_n κ_n]`` over
    the last n axes of ``xp``: a view, differentiable by autograd. Output sizes: Relationship 15."""
    n = len(kernel)
    first = xp.dim() - n
    for j, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        # the windows of axis j, d(k − 1) + 1 wide and s apart, as a new last axis
        xp = xp.unfold(first + j, d * (k - 1) + 1, s)
    # every d-th entry of each window: the dilated kernel's taps κ = 0, ..., k − 1
    return xp[(..., *(slice(None, None, d) for d in dilation))]


def fold(g: Tensor, shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
         dilation: tuple[int, ...]) -> Tensor:
    """The adjoint of `window_view`, derived by hand: every element of the padded input
    (of ``shape``) receives the sum of the gradients ``g`` of the window entries that read it,
    ``fold(g)[..., p] = Σ_{i, κ : s·i + d·κ = p} g[..., i, κ]``. One slice-add per kernel
    offset κ (k_1···k_n of them, never one per output position)."""
    n = len(kernel)
    out = g.shape[-2 * n:-n]
    gx = g.new_zeros(shape)
    for κ in itertools.product(*(range(k) for k in kernel)):
        # the entries that offset κ reads over all output positions: s·i + d·κ, i < out
        rows = tuple(slice(d * q, d * q + s * (o - 1) + 1, s) for q, d, s, o in zip(κ, dilation, stride, out))
        gx[(..., *rows)].add_(g[(..., *κ)])
    return gx
