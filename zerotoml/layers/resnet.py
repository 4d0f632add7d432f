"""ResidualBlock: the basic block of a ResNet. He, Zhang, Ren, Sun, "Deep Residual Learning for
Image Recognition" (2015, arXiv:1512.03385), section 3 and Figure 2 (left of Figure 5).
Note: notes/resnet.md.

Two 3x3 convolutions, each followed by batch normalisation, a ReLU between them, the shortcut
added to their output and a ReLU after the sum (eq. 1); when the block changes the number of
channels or the resolution, the shortcut is a projection W_s, a 1x1 convolution of stride s
followed by batch normalisation (eq. 2, option B of section 4.1, as torchvision's BasicBlock).
"""

from __future__ import annotations

import math

import torch

from ..generic import forward, from_torch, method
from ..shapes import Float, Tensor
from ..tree import struct
from .activation import relu
from .conv import Conv
from .norm import BatchNorm

__all__ = ["ResidualBlock", "residual_block_from_parts"]


@struct
class ResidualBlock:
    """``y = relu(F(x) + x)`` (eq. 1) or ``y = relu(F(x) + W_s x)`` (eq. 2) with
    ``F(x) = bn2(conv2(relu(bn1(conv1(x)))))``. ``conv1`` carries the stride; ``proj_conv``
    and ``proj_bn`` (both or neither) form the projection shortcut W_s. The BatchNorm
    layers hold the train/eval mode (`zerotoml.tree.set_training` flips it)."""

    conv1: Conv
    bn1: BatchNorm
    conv2: Conv
    bn2: BatchNorm
    proj_conv: Conv | None = None
    proj_bn: BatchNorm | None = None

    def __post_init__(self):
        c_in, c_mid, c_out = self.conv1.W.shape[1], self.conv1.W.shape[0], self.conv2.W.shape[0]
        if self.conv2.W.shape[1] != c_mid:
            raise ValueError(f"ResidualBlock: conv2.W has shape {tuple(self.conv2.W.shape)}; expected "
                             f"{c_mid} input channels, the output channels of conv1 {tuple(self.conv1.W.shape)}")
        if (self.proj_conv is None) != (self.proj_bn is None):
            raise ValueError("ResidualBlock: proj_conv and proj_bn go together (the projection W_s is a 1x1 "
                             f"convolution and its BatchNorm); got proj_conv={type(self.proj_conv).__name__}, "
                             f"proj_bn={type(self.proj_bn).__name__}")
        if self.proj_conv is None and (c_in != c_out or any(s != 1 for s in self.conv1.stride)):
            raise ValueError(f"ResidualBlock: the identity shortcut of eq. 1 needs c_in == c_out and stride 1; "
                             f"got c_in={c_in}, c_out={c_out}, stride={self.conv1.stride}. Give the projection "
                             f"shortcut of eq. 2 (ResidualBlock.init does when shapes change)")
        if self.proj_conv is not None and tuple(self.proj_conv.W.shape[:2]) != (c_out, c_in):
            raise ValueError(f"ResidualBlock: proj_conv.W has shape {tuple(self.proj_conv.W.shape)}; expected "
                             f"({c_out}, {c_in}, ...) to map the block's input to its output channels")

    @classmethod
    def init(cls, c_in: int, c_out: int, stride: int = 1, *, projection: bool | None = None,
             generator=None, device=None, dtype=None) -> ResidualBlock:
        """The paper's initialiser (section 3.4: "as in [13]", He et al. 2015): convolution weights
        ~ N(0, 2/n), n = k²·c_out (fan-out, eq. 14 there; torchvision's ``kaiming_normal_(mode=
        "fan_out")``), no convolution biases (BN follows each), BN gain one and bias zero.
        ``projection=None`` uses the projection shortcut exactly when shapes change."""
        if projection is None:
            projection = c_in != c_out or stride != 1
        kw = dict(generator=generator, device=device, dtype=dtype)

        def conv(ci: int, co: int, k: int, s: int, p: int) -> Conv:
            # W ~ N(0, 2/n), n = k² c_out       (He et al. 2015, eq. 14)
            W = torch.randn(co, ci, k, k, **kw) * math.sqrt(2.0 / (k * k * co))
            return Conv(W, None, s, p)

        def bn(c: int) -> BatchNorm:
            return BatchNorm.init(c, device=device, dtype=dtype)

        proj = (conv(c_in, c_out, 1, stride, 0), bn(c_out)) if projection else (None, None)
        return cls(conv(c_in, c_out, 3, stride, 1), bn(c_out), conv(c_out, c_out, 3, 1, 1), bn(c_out), *proj)


@method
def forward(m: ResidualBlock, x: Float[Tensor, "batch c_in h w"]) -> Float[Tensor, "batch c_out h_out w_out"]:
    """In training mode the BatchNorm layers update their running statistics in place."""
    # F(x, {W_i}) = W_2 σ(W_1 x)   (eq. 1's residual, each W_i a 3x3 convolution followed by BN)
    F = forward(m.bn2, forward(m.conv2, relu(forward(m.bn1, forward(m.conv1, x)))))
    # y = F(x, {W_i}) + x   (eq. 1)   or   y = F(x, {W_i}) + W_s x   (eq. 2), then σ (Figure 2)
    shortcut = x if m.proj_conv is None else forward(m.proj_bn, forward(m.proj_conv, x))
    return relu(F + shortcut)


def residual_block_from_parts(conv1: torch.nn.Conv2d, bn1: torch.nn.BatchNorm2d, conv2: torch.nn.Conv2d,
                              bn2: torch.nn.BatchNorm2d, proj_conv: torch.nn.Conv2d | None = None,
                              proj_bn: torch.nn.BatchNorm2d | None = None) -> ResidualBlock:
    """The ResidualBlock with the weights, buffers and modes of these torch modules (names as
    torchvision's BasicBlock: conv1, bn1, conv2, bn2 and ``downsample = Sequential(proj_conv,
    proj_bn)``)."""
    if (proj_conv is None) != (proj_bn is None):
        raise ValueError(f"residual_block_from_parts: give both proj_conv and proj_bn, or neither; got "
                         f"proj_conv={type(proj_conv).__name__}, proj_bn={type(proj_bn).__name__}")
    proj = (None, None) if proj_conv is None else (from_torch(proj_conv), from_torch(proj_bn))
    return ResidualBlock(from_torch(conv1), from_torch(bn1), from_torch(conv2), from_torch(bn2), *proj)
