"""The gradients of a convolution, derived by hand. Dumoulin & Visin (2016, arXiv:1603.07285),
section 4.1 ("Convolution as a matrix operation"). Note: notes/cnn.md#why-the-transpose-is-the-gradient.

With the input and output unrolled into vectors, a convolution is a sparse matrix C whose
non-zeros are the kernel entries: ``y = C x``. Then

* ``∂L/∂x = Cᵀ ∂L/∂y``: the transposed convolution of the output gradient with the same
  kernel (`conv_input_grad`);
* ``∂L/∂W[o, c, κ] = Σ_{b, i} ∂L/∂y[b, o, i] · x_pad[b, c, s·i + d·κ]``: the correlation of
  the padded input with the output gradient, one einsum over the same window view as the
  forward (`conv_weight_grad`);
* ``∂L/∂b[o] = Σ_{b, i} ∂L/∂y[b, o, i]`` (`conv_bias_grad`).

These closed forms are checked against torch.autograd through `Conv` and through F.conv{n}d
in test/layers/conv/test_grad.py; `Conv` itself leaves its gradients to autograd.
"""

from __future__ import annotations

import math

from einops import reduce

from ...einsum import einsum
from ...shapes import Float, Tensor
from .arithmetic import as_tuple, conv_output_size, output_padding_for, padding_pairs
from .transposed import conv_transpose
from .windows import pad, window_view


def _geometry(who: str, W_shape, stride, padding, dilation):
    n = len(W_shape) - 2
    kernel = tuple(W_shape[2:])
    s = as_tuple(who, "stride", stride, n, minimum=1)
    d = as_tuple(who, "dilation", dilation, n, minimum=1)
    return kernel, s, padding_pairs(who, padding, kernel, d, s), d


def _check_grad_out(who: str, grad_out: Tensor, input_shape, kernel, s, p, d) -> None:
    want = tuple(conv_output_size(i, k, s_, p_, d_) for i, k, s_, p_, d_ in zip(input_shape[2:], kernel, s, p, d))
    if tuple(grad_out.shape[2:]) != want:
        raise ValueError(f"{who}: argument `grad_out` has spatial shape {tuple(grad_out.shape[2:])}; the convolution "
                         f"of an input {tuple(input_shape)} gives {want}")


def conv_input_grad(W: Float[Tensor, "c_out c_in_per_group *kernel"],
                    grad_out: Float[Tensor, "batch c_out *out_spatial"],
                    input_shape: tuple[int, ...], stride=1, padding=0, dilation=1,
                    groups: int = 1) -> Float[Tensor, "batch c_in *spatial"]:
    """``∂L/∂x = Cᵀ ∂L/∂y``: the transposed convolution of ``grad_out`` with ``W`` itself (its
    layout (c_out, c_in/groups, *k) is ConvTranspose's (c_in', c_out'/groups, *k)), with the
    output padding ``a`` of Relationship 14 that gives back the input size."""
    kernel, s, p, d = _geometry("conv_input_grad", W.shape, stride, padding, dilation)
    _check_grad_out("conv_input_grad", grad_out, input_shape, kernel, s, p, d)
    # a = (i + p_lo + p_hi − d(k − 1) − 1) mod s   (Relationship 14, with dilation)
    a = tuple(output_padding_for(i, k, s_, p_, d_) for i, k, s_, p_, d_ in zip(input_shape[2:], kernel, s, p, d))
    return conv_transpose(grad_out, W, None, s, p, a, d, groups)


def conv_weight_grad(x: Float[Tensor, "batch c_in *spatial"], grad_out: Float[Tensor, "batch c_out *out_spatial"],
                     W_shape: tuple[int, ...], stride=1, padding=0, dilation=1,
                     groups: int = 1) -> Float[Tensor, "c_out c_in_per_group *kernel"]:
    """``∂L/∂W``: the correlation of the padded input with the output gradient, contracted over
    the batch and the output positions, on the window view the forward uses."""
    kernel, s, p, d = _geometry("conv_weight_grad", W_shape, stride, padding, dilation)
    _check_grad_out("conv_weight_grad", grad_out, x.shape, kernel, s, p, d)
    # x̂[b, g, c, i, κ] = x_pad[b, g·c, s·i + d·κ], i and κ each one axis (as in `convolve`)
    x̂ = window_view(pad(x, p), kernel, s, d)
    out = x̂.shape[2:2 + len(kernel)]
    x̂ = x̂.reshape(len(x), groups, x.shape[1] // groups, math.prod(out), math.prod(kernel))
    δ = grad_out.reshape(len(x), groups, -1, math.prod(out))
    # ∂L/∂W[g, o, c, κ] = Σ_{b, i} ∂L/∂y[b, g, o, i] · x_pad[b, g, c, s·i + d·κ]
    gW = einsum(x̂, δ, "b g c i k, b g o i -> g o c k")
    return gW.reshape(W_shape)


def conv_bias_grad(grad_out: Float[Tensor, "batch c_out *out_spatial"]) -> Float[Tensor, "c_out"]:
    """``∂L/∂b[o] = Σ_{b, i} ∂L/∂y[b, o, i]``."""
    return reduce(grad_out, "batch o ... -> o", "sum")

