"""Pooling over 1, 2 or 3 spatial axes: MaxPool, AvgPool (adaptive and global pooling are in
adaptive.py). Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016,
arXiv:1603.07285), chapter 3. Note: notes/cnn.md#pooling.

Inputs are ``(*batch, i_1, ..., i_n)``: any leading axes (batch, channels), then the n
spatial axes, n = len(kernel_size). A pooling layer reduces a window view of the padded
input (a reshape, or the convolution's window view: no copy, no Python loop over output
positions); autograd differentiates it. Under the fast engine torch's pooling kernels take
over where they compute the same (zerotoml/engine/conv.py)."""

from __future__ import annotations

import math

import torch
from einops import reduce

from ... import engine
from ...generic import forward, from_torch, method
from ...shapes import Float, Tensor
from ...tree import struct
from .windows import pad, window_view

# ------------------------------------------------------------------ output sizes


def pool_output_size(i: int, k: int, s: int | None = None, p: int = 0, d: int = 1, *,
                     ceil_mode: bool = False) -> int:
    """The output size along one axis; below 1 when the window does not fit.

    Relationship 7, o = ⌊(i − k)/s⌋ + 1, on the padded input (Relationship 6) with the
    dilated kernel (Relationship 15). ``ceil_mode`` rounds up, but, as in torch, the last
    window must start inside the input or the left padding."""
    s = k if s is None else s
    # k̂ = k + (k − 1)(d − 1)                  (effective kernel size, section 5.1)
    k_eff = k + (k - 1) * (d - 1)
    if not ceil_mode:
        # o = ⌊(i + 2p − k − (k − 1)(d − 1))/s⌋ + 1   (Relationship 15; p = 0, d = 1: Relationship 7)
        return (i + 2 * p - k_eff) // s + 1
    # o = ⌈(i + 2p − k̂)/s⌉ + 1, less one if the last window would start in the right padding
    o = -(-(i + 2 * p - k_eff) // s) + 1
    if (o - 1) * s >= i + p:
        o -= 1
    return o


def pool_output_shape(spatial, kernel_size, stride=None, padding=0, dilation=1, *,
                      ceil_mode: bool = False) -> tuple[int, ...]:
    """`pool_output_size` along each spatial axis (ints are repeated over the axes)."""
    n = len(spatial)
    k, s, p, d = (_tuple("pool_output_shape", name, v, n) for name, v in
                  (("kernel_size", kernel_size), ("stride", kernel_size if stride is None else stride),
                   ("padding", padding), ("dilation", dilation)))
    return tuple(pool_output_size(*a, ceil_mode=ceil_mode) for a in zip(spatial, k, s, p, d))


# ------------------------------------------------------------------ the structs


@struct
class MaxPool:
    """``y[o] = max_κ x[o·s − p + κ·d]`` over the window κ ∈ [0, k)ⁿ; padding counts as −∞."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False

    def __post_init__(self):
        _check_window("MaxPool", self)

    @classmethod
    def init(cls, kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode: bool = False,
             dims: int | None = None) -> MaxPool:
        """Like torch.nn.MaxPool{dims}d; stride defaults to kernel_size. No weights."""
        n = _dims("MaxPool", dims, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)
        k = _tuple("MaxPool", "kernel_size", kernel_size, n)
        s = k if stride is None else _tuple("MaxPool", "stride", stride, n)
        return cls(k, s, _tuple("MaxPool", "padding", padding, n),
                   _tuple("MaxPool", "dilation", dilation, n), ceil_mode)


@struct
class AvgPool:
    """``y[o] = (1/N[o]) Σ_κ x[o·s − p + κ]``, N[o] the taps in the input (and in the padding
    if ``count_include_pad``), or ``divisor_override``; padding counts as 0."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __post_init__(self):
        _check_window("AvgPool", self)
        if self.divisor_override is not None and self.divisor_override < 1:
            raise ValueError(f"AvgPool: divisor_override={self.divisor_override}; expected None or >= 1")

    @classmethod
    def init(cls, kernel_size, stride=None, padding=0, *, ceil_mode: bool = False,
             count_include_pad: bool = True, divisor_override: int | None = None,
             dims: int | None = None) -> AvgPool:
        """Like torch.nn.AvgPool{dims}d; stride defaults to kernel_size. No weights."""
        n = _dims("AvgPool", dims, kernel_size=kernel_size, stride=stride, padding=padding)
        k = _tuple("AvgPool", "kernel_size", kernel_size, n)
        s = k if stride is None else _tuple("AvgPool", "stride", stride, n)
        return cls(k, s, _tuple("AvgPool", "padding", padding, n), ceil_mode, count_include_pad,
                   divisor_override)


# ------------------------------------------------------------------ forward


@method
def forward(m: MaxPool, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*pooled"]:
    o = _output_shape("MaxPool", m, x, m.dilation)
    if engine.fast():  # the fast engine takes over where torch's kernel computes the same (zerotoml/engine/conv.py)
        y = engine.kernels.max_pool(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        if y is not None:
            return y
    # padding is −∞, so it never wins a max
    w = _windows(x, m.kernel_size, m.stride, m.padding, m.dilation, o, fill=-math.inf)
    # y[o] = max_κ x[o·s − p + κ·d], one window axis at a time, the last first: torch.max
    # returns the first maximum along an axis, so the gradient goes to the first maximum of the
    # window in row-major order, as torch's max pooling does (einops "max" is amax: it splits
    # ties), and no copy of the windows is made. The window axis κ_j is at −(n − j).
    for j in reversed(range(len(o))):
        w = w.max(dim=j - len(o)).values
    return w


@method
def forward(m: AvgPool, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*pooled"]:
    n, ones = len(m.kernel_size), (1,) * len(m.kernel_size)
    o = _output_shape("AvgPool", m, x, ones)
    if engine.fast():  # the fast engine takes over where torch's kernel computes the same (zerotoml/engine/conv.py)
        y = engine.kernels.avg_pool(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                    m.divisor_override)
        if y is not None:
            return y
    w = _windows(x, m.kernel_size, m.stride, m.padding, ones, o, fill=0.0)
    window = " ".join(f"o{j} k{j}" for j in range(n)) + " -> ... " + " ".join(f"o{j}" for j in range(n))
    # Σ_κ x[o·s − p + κ]   (padding is 0, so it adds nothing)
    total = reduce(w, f"... {window}", "sum")
    if m.divisor_override is not None:
        return total / m.divisor_override
    # N[o]: the taps on the input (and on the padding if count_include_pad), never on the
    # ceil-mode overhang past the right padding: the same windows over a map of ones
    i, p = x.shape[-n:], m.padding
    inside = x.new_ones(tuple(a + 2 * b for a, b in zip(i, p)) if m.count_include_pad else tuple(i))
    N = reduce(_windows(inside, m.kernel_size, m.stride, (0,) * n if m.count_include_pad else p, ones, o,
                        fill=0.0), f"... {window}", "sum")
    # y[o] = (1/N[o]) Σ_κ x[o·s − p + κ]
    return total / N


# ------------------------------------------------------------------ from torch

_MAX = {torch.nn.MaxPool1d: 1, torch.nn.MaxPool2d: 2, torch.nn.MaxPool3d: 3}
_AVG = {torch.nn.AvgPool1d: 1, torch.nn.AvgPool2d: 2, torch.nn.AvgPool3d: 3}


def _nd(module, table) -> int:
    return next(n for cls, n in table.items() if isinstance(module, cls))


@method
def from_torch(module: torch.nn.MaxPool1d | torch.nn.MaxPool2d | torch.nn.MaxPool3d) -> MaxPool:
    if module.return_indices:
        raise NotImplementedError(f"from_torch({type(module).__name__}): return_indices=True is not "
                                  f"supported; zerotoml's MaxPool returns the pooled values only")
    return MaxPool.init(module.kernel_size, module.stride, module.padding, module.dilation,
                        ceil_mode=module.ceil_mode, dims=_nd(module, _MAX))


@method
def from_torch(module: torch.nn.AvgPool1d | torch.nn.AvgPool2d | torch.nn.AvgPool3d) -> AvgPool:
    return AvgPool.init(module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode,
                        count_include_pad=module.count_include_pad,
                        divisor_override=getattr(module, "divisor_override", None), dims=_nd(module, _AVG))


# ------------------------------------------------------------------ the rest


def _windows(x, k, s, p, d, o, *, fill: float) -> Tensor:
    """The view ``(*batch, o_1, k_1, ..., o_n, k_n)`` of ``x`` padded with ``fill``: p on the
    left, p (or what the last ceil-mode window needs) on the right; window taps d apart."""
    n = len(k)
    i = x.shape[-n:]
    if all(s_j == k_j and d_j == 1 and p_j == 0 and o_j * k_j <= i_j
           for s_j, k_j, d_j, p_j, o_j, i_j in zip(s, k, d, p, o, i)):
        # windows that tile the input: a reshape, whose backward is a reshape too
        if any(o_j * k_j < i_j for o_j, k_j, i_j in zip(o, k, i)):  # floor mode drops the rest
            x = x[(..., *(slice(0, o_j * k_j) for o_j, k_j in zip(o, k)))]
        return x.reshape(*x.shape[:-n], *(a for o_j, k_j in zip(o, k) for a in (o_j, k_j)))
    k_eff = [d_j * (k_j - 1) + 1 for k_j, d_j in zip(k, d)]
    right = [max(p_j, (o_j - 1) * s_j + e - i_j - p_j) for o_j, s_j, e, i_j, p_j in zip(o, s, k_eff, i, p)]
    x = pad(x, tuple(zip(p, right)), fill)
    base = x.ndim - n
    x = window_view(x, k, s, d)  # (*batch, o_1..o_n, k_1..k_n), a view
    # -> (*batch, o_1, k_1, ..., o_n, k_n), a view
    return x.permute(*range(base), *(a for j in range(n) for a in (base + j, base + n + j)))


def _spatial(who: str, x: Tensor, n: int) -> tuple[int, ...]:
    if x.ndim < n or any(a < 1 for a in x.shape[x.ndim - n:]):
        raise ValueError(f"{who}: argument `x` has shape {tuple(x.shape)}; expected (*batch, "
                         f"{n} spatial axes of size >= 1)")
    return tuple(x.shape[-n:])


def _output_shape(who: str, m, x: Tensor, dilation) -> tuple[int, ...]:
    i = _spatial(who, x, len(m.kernel_size))
    o = pool_output_shape(i, m.kernel_size, m.stride, m.padding, dilation, ceil_mode=m.ceil_mode)
    for j, (a, b, k, p, d) in enumerate(zip(i, o, m.kernel_size, m.padding, dilation)):
        if b < 1:
            k_eff = k + (k - 1) * (d - 1)
            raise ValueError(f"{who}: argument `x` has shape {tuple(x.shape)}: along spatial axis {j} the "
                             f"padded input {a} + 2*{p} = {a + 2 * p} is smaller than the window "
                             f"(kernel_size={k}, dilation={d}: {k_eff}); the output size would be {b}")
    return o


def _tuple(who: str, name: str, v, n: int, *, allow_none: bool = False) -> tuple:
    ok = (lambda a: isinstance(a, int) or (allow_none and a is None))
    if ok(v):
        return (v,) * n
    if isinstance(v, (tuple, list)) and len(v) == n and all(ok(a) for a in v):
        return tuple(v)
    raise ValueError(f"{who}: {name}={v!r}; expected an int or a tuple of {n} ints (one per spatial axis)")


def _dims(who: str, dims: int | None, **args) -> int:
    """The number of spatial axes, from ``dims`` or the lengths of tuple arguments."""
    said = {name: len(v) for name, v in args.items() if isinstance(v, (tuple, list))}
    if dims is not None:
        said["dims"] = dims
    if len(set(said.values())) != 1:
        what = ("no argument says" if not said else
                "arguments disagree on (" + ", ".join(f"{k}: {v}" for k, v in said.items()) + ")")
        raise ValueError(f"{who}.init: {what} how many spatial axes; pass dims=1, 2 or 3 or tuples of one length")
    return next(iter(said.values()))


def _check_window(who: str, m) -> None:
    fields = [("kernel_size", 1), ("stride", 1), ("padding", 0)] + ([("dilation", 1)] if hasattr(m, "dilation") else [])
    n = len(m.kernel_size) if isinstance(m.kernel_size, tuple) else 0
    for name, least in fields:
        v = getattr(m, name)
        if n < 1 or not isinstance(v, tuple) or len(v) != n or not all(isinstance(a, int) and a >= least for a in v):
            raise ValueError(f"{who}: {name}={v!r}; expected a tuple of {max(n, 1)} ints >= {least} "
                             f"(kernel_size={m.kernel_size!r})")
    for j, (k, p) in enumerate(zip(m.kernel_size, m.padding)):
        if 2 * p > k:
            raise ValueError(f"{who}: padding={m.padding} along spatial axis {j} is {p}, more than half of "
                             f"kernel_size={m.kernel_size} ({k}); torch's rule is padding <= kernel_size // 2")
