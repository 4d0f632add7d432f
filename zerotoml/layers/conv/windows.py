"""Windows: the zero-padded input, the window view of a convolution or pooling layer over it,
and its adjoint, the fold. Dumoulin & Visin (2016), chapter 2. Note: notes/cnn.md#convolution.

The window view ``x̂[..., i, κ] = x_pad[..., s·i + d·κ]`` (one i and one κ per spatial axis) is
``as_strided`` on the padded input: no copy and no loop over output positions. Windows
overlap, so the gradient of the view adds up, on each input element, the gradients of every
window entry that reads it: the fold, one strided slice-add per kernel offset. `Conv`
(zerotoml/layers/conv.py), the transposed convolution and the pooling layers are built on these.
`Conv` copies the view once into a window matrix (`window_matrix`), whose memory is given
back after use (`spare_again`) for the next one of that shape (notes/cnn.md#speed).
Tested in test/layers/test_windows.py and test/layers/test_conv.py.
"""

from __future__ import annotations

import itertools

import torch
from einops import rearrange

from ..shapes import Tensor
from .conv_arithmetic import conv_output_size

__all__ = ["SPARE", "SPARE_BYTES", "fold", "pad", "spare_again", "window_matrix", "window_view", "windows"]


def pad(x: Tensor, padding: tuple[tuple[int, int], ...]) -> Tensor:
    """``x`` with ``(p_lo, p_hi)`` zeros around each of its last len(padding) axes (a
    negative amount crops, after the zeros are added). torch.constant_pad_nd lists the last
    axis first."""
    flat = tuple(p for lo_hi in reversed(padding) for p in lo_hi)
    if any(p > 0 for p in flat):
        x = torch.constant_pad_nd(x, tuple(max(p, 0) for p in flat), 0.0)
    if any(p < 0 for p in flat):  # a crop: a view
        n = len(padding)
        x = x[(..., *(slice(-min(lo, 0), x.shape[j - n] + min(hi, 0)) for j, (lo, hi) in enumerate(padding)))]
    return x


def window_view(xp: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                dilation: tuple[int, ...]) -> Tensor:
    """``x̂[..., i_1..i_n, κ_1..κ_n] = xp[..., s_1 i_1 + d_1 κ_1, ..., s_n i_n + d_n κ_n]`` over
    the last n axes of ``xp``: a view (as_strided), no copy. Output sizes: Relationship 15."""
    n = len(kernel)
    lead, spatial, st = xp.shape[:-n], xp.shape[-n:], xp.stride()
    out = tuple(conv_output_size(P, k, s, 0, d) for P, k, s, d in zip(spatial, kernel, stride, dilation))
    strides = (*st[:-n], *(s * t for s, t in zip(stride, st[-n:])), *(d * t for d, t in zip(dilation, st[-n:])))
    return xp.as_strided((*lead, *out, *kernel), strides)


def fold(g: Tensor, shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
         dilation: tuple[int, ...]) -> Tensor:
    """The adjoint of `window_view`: every element of the padded input receives the sum of
    the gradients of the window entries that read it. One slice-add per kernel offset κ
    (k_1···k_n of them, never one per output position)."""
    n = len(kernel)
    out = g.shape[-2 * n:-n]
    gx = g.new_zeros(shape)
    for κ in itertools.product(*(range(k) for k in kernel)):
        # the entries that offset κ reads over all output positions: s·i + d·κ, i < out
        rows = tuple(slice(d * q, d * q + s * (o - 1) + 1, s) for q, d, s, o in zip(κ, dilation, stride, out))
        gx[(..., *rows)].add_(g[(..., *κ)])
    return gx


class _Windows(torch.autograd.Function):
    """`window_view` whose backward is `fold` (differentiable, so second derivatives work);
    torch's generic as_strided and unfold backwards are several times slower."""

    @staticmethod
    def forward(ctx, xp, kernel, stride, dilation):
        ctx.geometry = (tuple(xp.shape), kernel, stride, dilation)
        return window_view(xp, kernel, stride, dilation)

    @staticmethod
    def backward(ctx, g):
        return fold(g, *ctx.geometry), None, None, None


def windows(xp: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]) -> Tensor:
    """`window_view`, differentiable through `fold` (the pooling layers use it)."""
    return _Windows.apply(xp, tuple(kernel), tuple(stride), tuple(dilation))


def window_matrix(xp: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
                  groups: int = 1, *, spare: bool = False) -> Tensor:
    """``X[g, c, κ, ·, i] = x_pad[·, g·c, s·i + d·κ]``: the window view copied in this order, so
    that per group it is a (c·κ, batch·i) matrix whose rows are runs of the input. ``spare``:
    into the memory of an earlier window matrix of that shape, if one was given back
    (`spare_again`). `Conv`'s products read it (zerotoml/layers/conv.py)."""
    n = len(kernel)
    i, k = (" ".join(f"{a}{j}" for j in range(n)) for a in "ik")
    view = rearrange(window_view(xp, kernel, stride, dilation), f"batch (g c) {i} {k} -> g c {k} batch {i}", g=groups)
    if not spare or (torch.is_grad_enabled() and xp.requires_grad):  # (a graph needs its own)
        return view.contiguous()
    stack = SPARE.get((tuple(view.shape), view.dtype, view.device))
    return stack.pop().copy_(view) if stack else view.contiguous()


# Window matrices given back once used, by shape, dtype and device, for the next one of the
# same shape (CPU only, at most SPARE_BYTES). A CPU step frees and asks again for the same
# tens of megabytes; glibc's malloc serves them as fresh pages, a page fault each, which
# costs the benchmark's convolution more than its arithmetic (notes/cnn.md#speed).
SPARE: dict[tuple, list[Tensor]] = {}
SPARE_BYTES = 1 << 28


def spare_again(X: Tensor) -> None:
    """Keep ``X``'s memory for the next window matrix of its shape. Only for a matrix that
    nothing else holds (the forward's own, after use)."""
    if X.device.type != "cpu" or X.requires_grad:
        return  # (CUDA has a caching allocator of its own)
    held = sum(t.numel() * t.element_size() for stack in SPARE.values() for t in stack)
    if held + X.numel() * X.element_size() <= SPARE_BYTES:
        SPARE.setdefault((tuple(X.shape), X.dtype, X.device), []).append(X)
