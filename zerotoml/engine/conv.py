"""The fast engine's convolution and pooling: torch's kernels (torch.nn.functional.conv{n}d,
conv_transpose{n}d, max_pool{n}d, avg_pool{n}d, adaptive_avg_pool{n}d) in place of the
reference formulas of zerotoml/layers/conv/. Note: notes/cnn.md#two-engines.

Each function takes the arguments of the layer it stands in for, already checked there, and
computes the same function. A pooling kernel returns None where torch's kernel would compute
something else (or refuse the input), and the layer goes on with its reference. Tested equal
to the reference, values and gradients in float64, in test/engine/test_conv.py.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

__all__ = ["adaptive_avg_pool", "avg_pool", "conv", "conv_transpose", "max_pool"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_ADAPTIVE = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def _flat(pairs) -> tuple[int, ...]:
    """``(p_lo, p_hi)`` per spatial axis in F.pad's order: the last axis first."""
    return tuple(p for lo_hi in reversed(pairs) for p in lo_hi)


def conv(x: Tensor, W: Tensor, b: Tensor | None, stride: tuple[int, ...], padding: tuple[tuple[int, int], ...],
         dilation: tuple[int, ...], groups: int) -> Tensor:
    """`zerotoml.layers.conv.Conv`'s forward. Padding torch's kernel cannot take (different on
    the two sides of an axis, or negative: a crop) is applied by F.pad first."""
    f = _CONV[W.dim() - 2]
    if all(lo == hi >= 0 for lo, hi in padding):
        return f(x, W, b, stride, tuple(lo for lo, _ in padding), dilation, groups)
    return f(F.pad(x, _flat(padding)), W, b, stride, 0, dilation, groups)


def conv_transpose(x: Tensor, W: Tensor, b: Tensor | None, stride: tuple[int, ...],
                   padding: tuple[tuple[int, int], ...], output_padding: tuple[int, ...],
                   dilation: tuple[int, ...], groups: int) -> Tensor:
    """`zerotoml.layers.conv.ConvTranspose`'s forward. Per-side padding: torch's kernel
    without padding, then p_lo cropped at the low end and p_hi − a at the high end."""
    n = W.dim() - 2
    f = _CONV_T[n]
    if all(lo == hi for lo, hi in padding):
        return f(x, W, b, stride, tuple(lo for lo, _ in padding), output_padding, groups, dilation)
    y = f(x, W, None, stride, 0, 0, groups, dilation)
    y = F.pad(y, _flat(tuple((-lo, a - hi) for (lo, hi), a in zip(padding, output_padding))))
    return y if b is None else y + b.reshape(-1, *(1,) * n)


def _pooled(f, x: Tensor, n: int, *args) -> Tensor:
    """``f`` (a pooling kernel over n spatial axes) on ``x (*batch, i_1..i_n)``: every leading
    axis folded into torch's batch, one channel, and unfolded again."""
    lead = x.shape[:-n]
    y = f(x.reshape(math.prod(lead), 1, *x.shape[-n:]), *args)
    return y.reshape(*lead, *y.shape[2:])


def max_pool(x: Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
             dilation: tuple[int, ...], ceil_mode: bool) -> Tensor | None:
    """`zerotoml.layers.conv.MaxPool`'s forward; None where a dilated window reads only padding
    (torch gives −∞ and sends its gradient to an element of the next channel; the layer, nowhere)."""
    n = len(kernel_size)
    if n not in _MAX:
        return None
    y = _pooled(_MAX[n], x, n, kernel_size, stride, padding, dilation, ceil_mode)
    for i, o, k, s, p, d in zip(x.shape[-n:], y.shape[-n:], kernel_size, stride, padding, dilation):
        # window a's taps a·s − p + κ·d, κ < k: one of them on the input? (always, without dilation)
        if d > 1 and not all(any(0 <= a * s - p + κ * d < i for κ in range(k)) for a in range(o)):
            return None
    return y


def avg_pool(x: Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
             ceil_mode: bool, count_include_pad: bool, divisor_override: int | None) -> Tensor | None:
    """`zerotoml.layers.conv.AvgPool`'s forward; None for a divisor_override in 1-d (avg_pool1d
    has none) and for an axis smaller than the kernel in 3-d (avg_pool3d refuses it)."""
    n = len(kernel_size)
    if n not in _AVG or (n == 1 and divisor_override is not None):
        return None
    if n == 3 and any(i_ < k for i_, k in zip(x.shape[-n:], kernel_size)):
        return None
    extra = () if n == 1 else (divisor_override,)
    return _pooled(_AVG[n], x, n, kernel_size, stride, padding, ceil_mode, count_include_pad, *extra)


def adaptive_avg_pool(x: Tensor, output_size: tuple[int, ...]) -> Tensor | None:
    """`zerotoml.layers.conv.AdaptiveAvgPool`'s forward, for 1 to 3 spatial axes."""
    n = len(output_size)
    return _pooled(_ADAPTIVE[n], x, n, output_size) if n in _ADAPTIVE else None

