"""ConvTranspose: the transposed ("fractionally strided") convolution over 1, 2 or 3 spatial
axes, as torch.nn.ConvTranspose{1,2,3}d. Dumoulin & Visin, "A guide to convolution arithmetic
for deep learning" (2016, arXiv:1603.07285), chapter 4. Note: notes/cnn.md#transposed-convolution.

Write a convolution as a sparse matrix, ``y = C x``. Its gradient with respect to the input
is ``∂L/∂x = Cᵀ ∂L/∂y``, and the transposed convolution is that map used forward: the
gradient of a convolution with respect to its input. The paper builds it from a direct
convolution, and so does `conv_transpose`:

1. stretch the input: s − 1 zeros between its units (Relationship 12's ĩ');
2. pad it by ``p' = d(k − 1) − p`` on each side, plus ``a`` (``output_padding``) at the
   high end (Relationships 9, 13, 14; a negative p' crops);
3. convolve with stride 1 and the same dilation, with the kernel flipped in space and its
   in/out channels swapped (per group) -- reusing the einsum of `Conv`.

Under the fast engine torch's kernel takes over (zerotoml/engine/conv.py).
"""

from __future__ import annotations

import torch
from einops import rearrange

from ... import engine
from ...generic import forward, from_torch, method
from ...shapes import Float, Tensor
from ...tree import struct
from .arithmetic import as_tuple, conv_transpose_output_size
from .conv import _divides, _hyper, _kernel, _uniform, check_input, convolve


@struct
class ConvTranspose:
    """``W`` has torch's layout ``(c_in, c_out / groups, k_1, ..., k_n)``: the weight of the
    convolution (``c_out → c_in``) whose input gradient this layer computes.
    Output size per axis (Relationship 14 with dilation):
    ``o' = (i' − 1)s − p_lo − p_hi + d(k − 1) + output_padding + 1``."""

    W: Float[Tensor, "c_in c_out_per_group *kernel"]
    b: Float[Tensor, "c_out"] | None
    stride: tuple[int, ...] = 1
    padding: tuple[tuple[int, int], ...] = 0
    output_padding: tuple[int, ...] = 0
    dilation: tuple[int, ...] = 1
    groups: int = 1

    def __post_init__(self):
        c_out = self.W.shape[1] * self.groups if isinstance(self.groups, int) else -1
        self.stride, self.padding, self.dilation = _hyper(
            "ConvTranspose", self.W, self.b, c_out, self.stride, self.padding, self.dilation, self.groups,
            pad_strings=False)
        n = self.W.dim() - 2
        self.output_padding = as_tuple("ConvTranspose", "output_padding", self.output_padding, n)
        for a, s, d in zip(self.output_padding, self.stride, self.dilation):
            if a >= max(s, d):
                raise ValueError(f"ConvTranspose: output_padding={self.output_padding} must be smaller than "
                                 f"stride={self.stride} or dilation={self.dilation} on each axis")

    @classmethod
    def init(cls, c_in: int, c_out: int, kernel_size: int | tuple[int, ...], stride=1, padding=0,
             output_padding=0, groups: int = 1, *, bias: bool = True, dilation=1, dims: int | None = None,
             generator=None, device=None, dtype=None) -> ConvTranspose:
        """torch's default: W, b ~ U(−1/√fan_in, 1/√fan_in) where torch takes fan_in from the
        weight's second axis, ``c_out/groups · k_1···k_n``. Arguments in torch's order."""
        k = _kernel("ConvTranspose.init", kernel_size, dims)
        _divides("ConvTranspose.init", groups, c_in=c_in, c_out=c_out)
        W, b = _uniform((c_in, c_out // groups, *k), c_out, bias, generator, device, dtype)
        return cls(W, b, stride, padding, output_padding, dilation, groups)


@method
def forward(m: ConvTranspose, x: Float[Tensor, "batch c_in *spatial"], *,
            output_size: tuple[int, ...] | list[int] | None = None) -> Float[Tensor, "batch c_out *out_spatial"]:
    """``output_size`` (as torch) picks the output padding that gives that size."""
    check_input("ConvTranspose", x, m.W, c_in=m.W.shape[0])
    a = m.output_padding if output_size is None else _output_padding_for_size(m, x, output_size)
    _check_output_size(x, m.W.shape[2:], m.stride, m.padding, a, m.dilation)
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/conv.py)
        return engine.kernels.conv_transpose(x, m.W, m.b, m.stride, m.padding, a, m.dilation, m.groups)
    return conv_transpose(x, m.W, m.b, m.stride, m.padding, a, m.dilation, m.groups)


def conv_transpose(x: Tensor, W: Tensor, b: Tensor | None, stride: tuple[int, ...],
                   padding: tuple[tuple[int, int], ...], output_padding: tuple[int, ...],
                   dilation: tuple[int, ...], groups: int) -> Tensor:
    """The transposed convolution of ``x (batch, c_in, *i')`` with ``W (c_in, c_out/groups, *k)``,
    as the paper constructs it (see the module docstring)."""
    n = W.dim() - 2
    kernel = W.shape[2:]
    _check_output_size(x, kernel, stride, padding, output_padding, dilation)
    # 1. ĩ': s − 1 zeros inserted between input units
    x̃ = stretch(x, stride)
    # 2. p' = d(k − 1) − p per side, and a more zeros at the high end (Relationship 14)
    p_ = tuple((d * (k - 1) - lo, d * (k - 1) - hi + a)
               for k, (lo, hi), a, d in zip(kernel, padding, output_padding, dilation))
    # 3. the kernel flipped in space, (c_in, c_out) swapped within each group
    W_ = rearrange(W.flip(tuple(range(2, 2 + n))), "(g c) o ... -> (g o) c ...", g=groups)
    return convolve(x̃, W_, b, (1,) * n, p_, dilation, groups)


def stretch(x: Tensor, stride: tuple[int, ...]) -> Tensor:
    """``x`` with ``s − 1`` zeros between neighbouring units of each spatial axis: size
    ``(i − 1)s + 1`` (the paper's "stretched input" ĩ')."""
    n = len(stride)
    if all(s == 1 for s in stride):
        return x
    size = (*x.shape[:-n], *((i - 1) * s + 1 for i, s in zip(x.shape[-n:], stride)))
    x̃ = x.new_zeros(size)
    x̃[(..., *(slice(None, None, s) for s in stride))] = x
    return x̃


def _check_output_size(x, kernel, stride, padding, output_padding, dilation) -> None:
    for j, (i, k, s, p, a, d) in enumerate(zip(x.shape[2:], kernel, stride, padding, output_padding, dilation)):
        o = conv_transpose_output_size(i, k, s, p, d, a)
        if o < 1:
            raise ValueError(f"ConvTranspose: spatial axis {j} of `x` (shape {tuple(x.shape)}) has size {i}, which "
                             f"gives output size {o} with kernel {k}, stride {s}, padding {p}, dilation {d}, "
                             f"output_padding {a}")


def _output_padding_for_size(m: ConvTranspose, x: Tensor, output_size) -> tuple[int, ...]:
    """torch's rule: ``output_size`` (its last n entries) must lie in [o'_min, o'_min + s − 1]."""
    n = m.W.dim() - 2
    want = tuple(output_size)[-n:]
    if len(want) != n:
        raise ValueError(f"ConvTranspose: output_size={tuple(output_size)}; expected {n} spatial sizes")
    a = []
    for j, (i, o, k, s, p, d) in enumerate(zip(x.shape[2:], want, m.W.shape[2:], m.stride, m.padding, m.dilation)):
        lo = conv_transpose_output_size(i, k, s, p, d, 0)
        if not lo <= o < lo + s:
            raise ValueError(f"ConvTranspose: output_size {o} on spatial axis {j} is outside "
                             f"[{lo}, {lo + s - 1}] for input size {i}")
        a.append(o - lo)
    return tuple(a)


@method
def from_torch(module: torch.nn.ConvTranspose1d | torch.nn.ConvTranspose2d
               | torch.nn.ConvTranspose3d) -> ConvTranspose:
    if module.padding_mode != "zeros":
        raise NotImplementedError(f"from_torch({type(module).__name__}): padding_mode={module.padding_mode!r}; "
                                  f"only 'zeros' is supported")
    b = None if module.bias is None else module.bias.detach().clone()
    return ConvTranspose(module.weight.detach().clone(), b, module.stride, module.padding,
                         module.output_padding, module.dilation, module.groups)
