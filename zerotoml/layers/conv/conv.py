"""Conv: convolution over 1, 2 or 3 spatial axes, NCHW as torch, written as one einsum over
the windows of the zero-padded input. Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016, arXiv:1603.07285), chapter 2. Note: notes/cnn.md#convolution.

The window view ``x̂[b, c, i, κ] = x_pad[b, c, s·i + d·κ]`` (one i and one κ per spatial axis)
is made of ``Tensor.unfold`` (zerotoml/layers/conv/windows.py); `convolve` flattens its output
positions into one axis and its kernel offsets into another, and contracts it with the weight
in one einsum. Gradients are autograd's; their closed forms are in grad.py, checked against
it. Under the fast engine torch's kernels take over (zerotoml/engine/conv.py).
"""

from __future__ import annotations

import math

import torch

from ... import engine
from ...einsum import einsum
from ...generic import forward, from_torch, method
from ...shapes import Float, Tensor
from ...tree import struct
from .arithmetic import as_tuple, padding_pairs
from .windows import pad, window_view


@struct
class Conv:
    """``y[·, o, i] = b[o] + Σ_{c, κ} W[o, c, κ] · x_pad[·, c, s·i + d·κ]`` (within each group;
    i and κ hold one index per spatial axis, · is the batch index).

    ``W`` has torch's layout ``(c_out, c_in / groups, k_1, ..., k_n)``, n = 1, 2 or 3.
    ``padding`` is stored as ``(p_lo, p_hi)`` per axis; the constructor also takes an int,
    one int per axis, such pairs, ``"same"`` or ``"valid"``."""

    W: Float[Tensor, "c_out c_in_per_group *kernel"]
    b: Float[Tensor, "c_out"] | None
    stride: tuple[int, ...] = 1
    padding: tuple[tuple[int, int], ...] = 0
    dilation: tuple[int, ...] = 1
    groups: int = 1

    def __post_init__(self):
        self.stride, self.padding, self.dilation = _hyper("Conv", self.W, self.b, self.W.shape[0],
                                                          self.stride, self.padding, self.dilation, self.groups)

    @classmethod
    def init(cls, c_in: int, c_out: int, kernel_size: int | tuple[int, ...], stride=1, padding=0,
             dilation=1, groups: int = 1, *, bias: bool = True, dims: int | None = None,
             generator=None, device=None, dtype=None) -> Conv:
        """torch's default (Kaiming-uniform with a=sqrt(5)): W, b ~ U(−1/√fan_in, 1/√fan_in),
        fan_in = c_in/groups · k_1···k_n. An int ``kernel_size`` needs ``dims`` (1, 2 or 3)."""
        k = _kernel("Conv.init", kernel_size, dims)
        _divides("Conv.init", groups, c_in=c_in, c_out=c_out)
        W, b = _uniform((c_out, c_in // groups, *k), c_out, bias, generator, device, dtype)
        return cls(W, b, stride, padding, dilation, groups)


@method
def forward(m: Conv, x: Float[Tensor, "batch c_in *spatial"]) -> Float[Tensor, "batch c_out *out_spatial"]:
    check_input("Conv", x, m.W, c_in=m.W.shape[1] * m.groups, padding=m.padding, dilation=m.dilation)
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/conv.py)
        return engine.kernels.conv(x, m.W, m.b, m.stride, m.padding, m.dilation, m.groups)
    return convolve(x, m.W, m.b, m.stride, m.padding, m.dilation, m.groups)


def convolve(x: Float[Tensor, "batch c_in *spatial"], W: Float[Tensor, "c_out c_in_per_group *kernel"],
             b: Float[Tensor, "c_out"] | None, stride: tuple[int, ...], padding: tuple[tuple[int, int], ...],
             dilation: tuple[int, ...], groups: int) -> Float[Tensor, "batch c_out *out_spatial"]:
    """``x (batch, c_in, *i)`` convolved with ``W (c_out, c_in/groups, *k)``, as the formula
    says. A negative padding crops (the transposed convolution uses that)."""
    kernel = tuple(W.shape[2:])
    # x̂[b, (g c), i_1..i_n, κ_1..κ_n] = x_pad[b, (g c), s·i + d·κ]: a view of the padded input
    x̂ = window_view(pad(x, padding), kernel, stride, dilation)
    out = x̂.shape[2:2 + len(kernel)]
    # the groups apart, the output positions i as one axis, the kernel offsets κ as another
    x̂ = x̂.reshape(len(x), groups, W.shape[1], math.prod(out), math.prod(kernel))
    Ŵ = W.reshape(groups, W.shape[0] // groups, W.shape[1], math.prod(kernel))
    # y[b, g, o, i] = Σ_{c, κ} W[g, o, c, κ] · x_pad[b, g, c, s·i + d·κ]   (section 1.1, per group)
    y = einsum(x̂, Ŵ, "b g c i k, g o c k -> b g o i")
    y = y.reshape(len(x), W.shape[0], *out)
    # + b[o]
    return y if b is None else y + b.reshape(-1, *(1,) * len(kernel))


# ------------------------------------------------------------- checks, helpers


def check_input(who: str, x: Tensor, W: Tensor, *, c_in: int, padding=None, dilation=None) -> None:
    """Clear errors, naming the sizes, for what the einsum would reject obscurely (or not at
    all): the number of axes, the channels, a kernel wider than the padded input."""
    n = W.dim() - 2
    if x.dim() != n + 2:
        raise ValueError(f"{who}: argument `x` has shape {tuple(x.shape)}; expected (batch, c_in, "
                         f"{n} spatial axes) for a {n}-d convolution with weight W {tuple(W.shape)}")
    if x.shape[1] != c_in:
        raise ValueError(f"{who}: argument `x` has {x.shape[1]} channels (shape {tuple(x.shape)}), but the "
                         f"weight W {tuple(W.shape)} expects c_in={c_in}")
    if padding is None:
        return
    for j, (i, k, (lo, hi), d) in enumerate(zip(x.shape[2:], W.shape[2:], padding, dilation)):
        span = d * (k - 1) + 1
        if i + lo + hi < span:
            raise ValueError(f"{who}: spatial axis {j} of `x` (shape {tuple(x.shape)}) has size {i}, padded "
                             f"({lo}, {hi}) to {i + lo + hi}, smaller than the kernel: size {k} with "
                             f"dilation {d} spans {span}")


def _hyper(who: str, W: Tensor, b: Tensor | None, c_out: int, stride, padding, dilation, groups,
           *, pad_strings: bool = True):
    """Normalise and check the hyper-parameters against ``W``: (stride, padding pairs, dilation)."""
    n = W.dim() - 2
    if n not in (1, 2, 3):
        raise ValueError(f"{who}: W has shape {tuple(W.shape)}; expected 1 to 3 kernel axes after the two channel axes")
    kernel = tuple(W.shape[2:])
    stride = as_tuple(who, "stride", stride, n, minimum=1)
    dilation = as_tuple(who, "dilation", dilation, n, minimum=1)
    if isinstance(padding, str) and not pad_strings:
        raise ValueError(f"{who}: padding={padding!r}; expected an int, {n} ints or {n} (lo, hi) pairs")
    padding = padding_pairs(who, padding, kernel, dilation, stride)
    if not isinstance(groups, int) or groups < 1 or c_out % groups or W.shape[0] % groups:
        raise ValueError(f"{who}: groups={groups} must be a positive int dividing the channels "
                         f"(W has shape {tuple(W.shape)}, c_out={c_out})")
    if b is not None and tuple(b.shape) != (c_out,):
        raise ValueError(f"{who}: b has shape {tuple(b.shape)}; expected ({c_out},)")
    return stride, padding, dilation


def _kernel(who: str, kernel_size, dims: int | None) -> tuple[int, ...]:
    if dims is None:
        if isinstance(kernel_size, int):
            raise ValueError(f"{who}: kernel_size={kernel_size} is an int; give one size per spatial axis, "
                             f"e.g. ({kernel_size}, {kernel_size}), or dims=1, 2 or 3")
        dims = len(kernel_size)
    if dims not in (1, 2, 3):
        raise ValueError(f"{who}: {dims} spatial axes; expected 1, 2 or 3")
    return as_tuple(who, "kernel_size", kernel_size, dims, minimum=1)


def _divides(who: str, groups: int, **channels: int) -> None:
    for name, c in channels.items():
        if groups < 1 or c % groups:
            raise ValueError(f"{who}: groups={groups} does not divide {name}={c}")


def _uniform(shape: tuple[int, ...], n_bias: int, bias: bool, generator, device, dtype):
    """torch's reset_parameters of _ConvNd: U(−1/√fan_in, 1/√fan_in), fan_in = shape[1]·k_1···k_n."""
    fan_in = math.prod(shape[1:])
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    kw = dict(generator=generator, device=device, dtype=dtype)
    W = (torch.rand(shape, **kw) * 2 - 1) * bound
    b = (torch.rand(n_bias, **kw) * 2 - 1) * bound if bias else None
    return W, b


# ------------------------------------------------------------------ from_torch


@method
def from_torch(module: torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d) -> Conv:
    if module.padding_mode != "zeros":
        raise NotImplementedError(f"from_torch({type(module).__name__}): padding_mode={module.padding_mode!r}; "
                                  f"only 'zeros' is supported")
    b = None if module.bias is None else module.bias.detach().clone()
    return Conv(module.weight.detach().clone(), b, module.stride, module.padding, module.dilation, module.groups)
