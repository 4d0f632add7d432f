"""Activation functions, written from their formulas, and the layers that apply them.
Note: notes/layers.md#activations."""

from __future__ import annotations

import math

import torch

from ..generic import forward, from_torch, method
from ..shapes import Float, Tensor
from ..tree import struct

__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax",
           "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "activation"]


def relu(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """relu(x) = max(x, 0); the gradient at 0 is 0, as torch."""
    # max(x, 0) as one elementwise kernel (torch.where(x > 0, x, 0) is the same
    # function, gradient included, at twice the memory traffic)
    return torch.relu(x)


def sigmoid(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """σ(x) = 1 / (1 + e^{−x})."""
    # One elementwise kernel: torch evaluates it through e^{−|x|} ≤ 1, so it never
    # overflows, with the derivative σ(x)(1 − σ(x)). Written out with torch.where the
    # same function costs several kernels and their intermediates, on a hot path.
    return torch.sigmoid(x)


def tanh(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """tanh(x) = (e^{x} − e^{−x}) / (e^{x} + e^{−x}) = 2σ(2x) − 1."""
    # One elementwise kernel, accurate for small |x| and saturating without overflow,
    # with the derivative 1 − tanh²(x) (see sigmoid for why not torch.where).
    return torch.tanh(x)


def silu(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """silu(x) = x σ(x) (Elfwing et al. 2018; "swish" in Ramachandran et al. 2017)."""
    return x * sigmoid(x)


def gelu(x: Float[Tensor, "*shape"], approximate: str = "none") -> Float[Tensor, "*shape"]:
    """GELU (Hendrycks & Gimpel 2016): x Φ(x). ``approximate="tanh"`` is the paper's
    0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))."""
    if approximate == "none":
        # x Φ(x) = x · ½ (1 + erf(x / √2))
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    if approximate == "tanh":
        # 0.5 x (1 + tanh[√(2/π) (x + 0.044715 x³)])
        return 0.5 * x * (1 + tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"gelu: approximate={approximate!r}; expected 'none' or 'tanh'")


def log_softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """log softmax(x)_i = x_i − log Σ_j e^{x_j} = (x_i − m) − log Σ_j e^{x_j − m}, m = max_j x_j."""
    m = torch.amax(x, dim=dim, keepdim=True).detach()  # any m gives the same value; the max keeps e^{·} ≤ 1
    z = x - m
    return z - torch.log(torch.sum(torch.exp(z), dim=dim, keepdim=True))


def softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}, m = max_j x_j."""
    e = torch.exp(x - torch.amax(x, dim=dim, keepdim=True).detach())
    return e / torch.sum(e, dim=dim, keepdim=True)


# ---------------------------------------------------------------------- layers


@struct
class ReLU:
    pass


@struct
class GELU:
    approximate: str = "none"


@struct
class SiLU:
    pass


@struct
class Sigmoid:
    pass


@struct
class Tanh:
    pass


@struct
class Softmax:
    dim: int = -1


@struct
class LogSoftmax:
    dim: int = -1


@method
def forward(m: ReLU, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return relu(x)


@method
def forward(m: GELU, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return gelu(x, m.approximate)


@method
def forward(m: SiLU, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return silu(x)


@method
def forward(m: Sigmoid, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return sigmoid(x)


@method
def forward(m: Tanh, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return tanh(x)


@method
def forward(m: Softmax, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return softmax(x, m.dim)


@method
def forward(m: LogSoftmax, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    return log_softmax(x, m.dim)


@method
def from_torch(module: torch.nn.ReLU) -> ReLU:
    return ReLU()


@method
def from_torch(module: torch.nn.GELU) -> GELU:
    return GELU(module.approximate)


@method
def from_torch(module: torch.nn.SiLU) -> SiLU:
    return SiLU()


@method
def from_torch(module: torch.nn.Sigmoid) -> Sigmoid:
    return Sigmoid()


@method
def from_torch(module: torch.nn.Tanh) -> Tanh:
    return Tanh()


def _dim(module: torch.nn.Module) -> int:
    if module.dim is None:
        raise ValueError(f"from_torch({type(module).__name__}): dim=None (torch's deprecated implicit "
                         f"dimension); build the torch module with an explicit dim")
    return module.dim


@method
def from_torch(module: torch.nn.Softmax) -> Softmax:
    return Softmax(_dim(module))


@method
def from_torch(module: torch.nn.LogSoftmax) -> LogSoftmax:
    return LogSoftmax(_dim(module))


_BY_NAME = {"relu": ReLU, "gelu": GELU, "silu": SiLU, "sigmoid": Sigmoid, "tanh": Tanh}


def activation(name: str | object) -> object:
    """The activation layer called ``name`` ("relu", "gelu", "silu", "sigmoid", "tanh");
    a layer passed in is returned as is."""
    if not isinstance(name, str):
        return name
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise ValueError(f"activation: unknown name {name!r}; expected one of {sorted(_BY_NAME)}") from None
