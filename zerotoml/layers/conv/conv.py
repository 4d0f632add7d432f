"""Conv: convolution over 1, 2 or 3 spatial axes, NCHW as torch, written as einsums over the
windows of the zero-padded input. Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016, arXiv:1603.07285), chapter 2. Note: notes/cnn.md#convolution.

The window view ``x̂[b, c, i, κ] = x_pad[b, c, s·i + d·κ]`` (one i and one κ per spatial axis)
is ``as_strided`` on the padded input (zerotoml/layers/windows.py): no copy and no loop over
output positions. `convolve` copies it once into the window matrix and contracts that with the weight; its backward is
written by hand from the closed forms of conv_grad.py (`_Convolve`), and the gradient of the
windows goes back onto the input by the "fold", one slice-add per kernel offset. The opt-in
fast path (torch's conv kernels) is chosen in one place: `FAST` below.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from .. import gemm, kernels
from ..einsum import einsum
from ..generic import forward, from_torch, method
from ..kernels import read_switch
from ..shapes import Float, Tensor
from ..tree import struct
from .conv_arithmetic import as_tuple, conv_output_size, padding_pairs
from .windows import fold, pad, spare_again, window_matrix

# The switch for the fast path of Conv and ConvTranspose: torch.nn.functional.conv{n}d /
# conv_transpose{n}d instead of the einsum. Off by default; ZEROTOML_FAST_CONV=1, or set
# ``zerotoml.layers.conv.FAST = True`` at run time; zerotoml.kernels.FUSED (ZEROTOML_FUSED=1),
# the switch of every fast path, turns it on too. Tested equal to the einsum path.
FAST: bool = read_switch("ZEROTOML_FAST_CONV")


def fast() -> bool:
    """Whether Conv and ConvTranspose run torch's kernels now."""
    return FAST or kernels.FUSED


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
    if fast():  # the opt-in fast path
        return _fast_conv(x, m.W, m.b, m.stride, m.padding, m.dilation, m.groups)
    return convolve(x, m.W, m.b, m.stride, m.padding, m.dilation, m.groups)


# ------------------------------------------------------------------ the einsum


def convolve(x: Tensor, W: Tensor, b: Tensor | None, stride: tuple[int, ...],
             padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...], groups: int) -> Tensor:
    """``x (batch, c_in, *i)`` convolved with ``W (c_out, c_in/groups, *k)`` (`_Convolve`).
    Negative padding crops (ConvTranspose uses that)."""
    return _Convolve.apply(x, W, b, tuple(stride), tuple(padding), tuple(dilation), groups)


class _Convolve(torch.autograd.Function):
    """Three einsums over the window matrix ``X[g, c, κ, ·, i] = x_pad[·, g, c, s·i + d·κ]``
    (`windows.window_matrix`): per group a (c·κ, batch·i) matrix, so that each einsum is one matrix
    product over the whole batch (zerotoml/einsum.py, zerotoml/gemm.py; notes/cnn.md#speed):

        y[·, g, o, i]        = Σ_{c, κ} W[g, o, c, κ] · X[g, c, κ, ·, i]  + b[g, o]
        ∂L/∂W[g, o, c, κ]    = Σ_{·, i} δ[·, g, o, i] · X[g, c, κ, ·, i]
        ∂L/∂X[g, c, κ, ·, i] = Σ_o  W[g, o, c, κ] · δ[·, g, o, i],   ∂L/∂x_pad = fold(∂L/∂X)

    y comes out as a view with the channel axis outermost in memory (no copy). A large batch
    goes through in chunks of about `CHUNK` window entries, each matrix made, used and freed
    in turn (and made again in the backward); a single one is kept for the backward. The
    backward is made of differentiable ops: differentiated itself (create_graph), it makes X
    again from x, so that the graph reaches x."""

    @staticmethod
    def forward(ctx, x, W, b, stride, padding, dilation, groups):
        n, Wg = W.dim() - 2, rearrange(W, "(g o) c ... -> g o c ...", g=groups)
        ctx.geometry = (tuple(W.shape[2:]), stride, dilation, groups)
        ctx.padding, ctx.chunks = padding, _chunks(x, W, stride, padding, dilation)
        ys, keep = [], ctx.chunks == 1 and ctx.needs_input_grad[1]
        ctx.per_sample = _per_sample(x, groups)
        for xc in x.tensor_split(ctx.chunks):
            X = window_matrix(pad(xc, padding), *ctx.geometry, spare=True)
            if ctx.per_sample:  # (g, o, batch, *i), a view in NCHW order
                Y = einsum(Wg.expand(len(xc), *Wg.shape), X, _PER_SAMPLE[n][0])
            else:  # (g, o, batch, *i), contiguous
                Y = einsum(Wg, X, _FORWARD[n])
            if b is not None:
                Y.add_(b.reshape(groups, -1, *(1,) * (n + 1)))
            ys.append(rearrange(Y, "g o batch ... -> batch (g o) ..."))
            if not keep:
                spare_again(X)
        ctx.save_for_backward(x, W)
        # the window matrix, kept for ∂L/∂W when there is a single chunk; a plain attribute, so
        # that the backward can free it as soon as it is used (made again if the graph is
        # differentiated twice or run again with retain_graph)
        ctx.X = X if keep else None
        return torch.cat(ys) if len(ys) > 1 else ys[0]

    @staticmethod
    def backward(ctx, δ):
        (x, W), X = ctx.saved_tensors, ctx.X
        ctx.X = None
        kernel, stride, dilation, groups = ctx.geometry
        n, (need_x, need_W, need_b) = W.dim() - 2, ctx.needs_input_grad[:3]
        Wg = rearrange(W, "(g o) c ... -> g o c ...", g=groups)
        gW, gb, gx = 0, 0, []
        for xc, δc in zip(x.tensor_split(ctx.chunks), δ.tensor_split(ctx.chunks)):
            δc = rearrange(δc, "batch (g o) ... -> g o batch ...", g=groups).contiguous()  # (free if y's layout)
            if need_b:  # ∂L/∂b[o] = Σ_{·, i} δ[·, o, i], over contiguous rows
                gb = gb + δc.reshape(W.shape[0], -1).sum(1)
            if need_W:
                again = torch.is_grad_enabled()  # create_graph: X made again from x, in the graph
                if X is None or again:
                    if X is not None:
                        spare_again(X)
                    X = window_matrix(pad(xc, ctx.padding), *ctx.geometry, spare=not again)
                gW = gW + (einsum(X, δc, _PER_SAMPLE[n][1]).sum(0) if ctx.per_sample
                           else einsum(X, δc, _WEIGHT_GRAD[n]))
                if not again:  # (in the graph of a second derivative it must stay as it is)
                    spare_again(X)  # its memory is the next forward's window matrix
            X = None  # (given up before its gradient is made: the backward never holds both)
            if need_x:
                gX = (einsum(Wg.expand(len(xc), *Wg.shape), δc, _PER_SAMPLE[n][2]) if ctx.per_sample
                      else einsum(Wg, δc, _WINDOW_GRAD[n]))
                gX = rearrange(gX, _TO_VIEW[n])  # ((g c), batch, *i, *κ)
                # the fold puts ∂L/∂X back on x_pad, in the products' order of axes (channels
                # outermost); cropping the padding is pad's adjoint
                padded = (xc.shape[1], len(xc), *(i + lo + hi for i, (lo, hi) in zip(xc.shape[2:], ctx.padding)))
                gxc = pad(fold(gX, padded, kernel, stride, dilation), tuple((-lo, -hi) for lo, hi in ctx.padding))
                gx.append(gxc.transpose(0, 1))
        return (None if not need_x else torch.cat(gx) if len(gx) > 1 else gx[0],
                rearrange(gW, "g o c ... -> (g o) c ...") if need_W else None,
                gb if need_b else None, None, None, None, None)


# Window-matrix entries per chunk of the batch (32 MB in float32; notes/cnn.md#speed).
CHUNK = 1 << 23


def _chunks(x: Tensor, W: Tensor, stride, padding, dilation) -> int:
    """How many chunks the batch goes through in: the window matrix over CHUNK, at least 1."""
    out = (conv_output_size(i + lo + hi, k, s, 0, d)
           for i, k, s, (lo, hi), d in zip(x.shape[2:], W.shape[2:], stride, padding, dilation))
    entries = len(x) * x.shape[1] * math.prod(W.shape[2:]) * math.prod(out)
    return max(1, min(len(x), -(-entries // CHUNK)))


def _equations(n: int) -> tuple[str, ...]:
    """The forward, weight-gradient and window-gradient einsums, and the window matrix's
    gradient -> the window view's axes, for n spatial axes; n = 2: "g o c k0 k1, g c k0 k1 batch i0 i1 ->
    g o batch i0 i1". Then the same three with the batch in both operands (the weight
    expanded over it), which run as one product per sample (`_per_sample`)."""
    i, k = (" ".join(f"{a}{j}" for j in range(n)) for a in "ik")
    return (f"g o c {k}, g c {k} batch {i} -> g o batch {i}",
            f"g c {k} batch {i}, g o batch {i} -> g o c {k}",
            f"g o c {k}, g o batch {i} -> g c {k} batch {i}",
            f"g c {k} batch {i} -> (g c) batch {i} {k}",
            f"batch g o c {k}, g c {k} batch {i} -> g o batch {i}",
            f"g c {k} batch {i}, g o batch {i} -> batch g o c {k}",
            f"batch g o c {k}, g o batch {i} -> g c {k} batch {i}")


_FORWARD, _WEIGHT_GRAD, _WINDOW_GRAD, _TO_VIEW = ({n: _equations(n)[j] for n in (1, 2, 3)} for j in range(4))
_PER_SAMPLE = {n: _equations(n)[4:] for n in (1, 2, 3)}  # forward, weight gradient, window gradient


def _per_sample(x: Tensor, groups: int) -> bool:
    """Whether the three products run one per sample instead of one over the whole batch: on
    a CPU whose products go to torch.mm (``ZEROTOML_GEMM=torch``, or a torch without oneDNN's
    inner product). MKL's sgemm runs the wide (c·k·k, batch·i) products at half the speed of
    the per-sample ones; oneDNN the other way round (notes/cnn.md#speed). The window matrix
    is the same; one group only (with groups, the groups are the batch already)."""
    return groups == 1 and x.device.type == "cpu" and not gemm.onednn_in_use()


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


def _fast_conv(x, W, b, stride, padding, dilation, groups):
    """The opt-in fast path: torch's kernels (asymmetric padding is applied first)."""
    import torch.nn.functional as F

    conv = (F.conv1d, F.conv2d, F.conv3d)[W.dim() - 3]
    if all(lo == hi for lo, hi in padding):
        return conv(x, W, b, stride, tuple(lo for lo, _ in padding), dilation, groups)
    return conv(pad(x, padding), W, b, stride, 0, dilation, groups)


# ------------------------------------------------------------------ from_torch


def _conv_from_torch(module) -> Conv:
    if module.padding_mode != "zeros":
        raise NotImplementedError(f"from_torch({type(module).__name__}): padding_mode={module.padding_mode!r}; "
                                  f"only 'zeros' is supported")
    b = None if module.bias is None else module.bias.detach().clone()
    return Conv(module.weight.detach().clone(), b, module.stride, module.padding, module.dilation, module.groups)


@method
def from_torch(module: torch.nn.Conv1d) -> Conv:
    return _conv_from_torch(module)


@method
def from_torch(module: torch.nn.Conv2d) -> Conv:  # noqa: F811
    return _conv_from_torch(module)


@method
def from_torch(module: torch.nn.Conv3d) -> Conv:  # noqa: F811
    return _conv_from_torch(module)
