"""Activation functions, written from their formulas, and the layers that apply them.
Note: notes/layers.md#activations."""

from __future__ import annotations

import math

import torch

from .. import kernels
from ..derivatives import derived
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
    0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))). Both with their derivative written out
    (`zerotoml.derivatives`)."""
    if kernels.FUSED and approximate in ("none", "tanh"):  # the opt-in fast path (zerotoml/kernels.py)
        return torch.nn.functional.gelu(x, approximate=approximate)
    if approximate == "none":
        return _gelu_erf(x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    raise ValueError(f"gelu: approximate={approximate!r}; expected 'none' or 'tanh'")


def _gelu_erf_value(x):
    # x Φ(x) = x · ½ (1 + erf(x / √2))
    # (each temporary is made once and updated in place: on this machine a fresh buffer costs
    # page faults, more than the arithmetic)
    Φ = torch.erf(x * (1 / math.sqrt(2))).add_(1).mul_(0.5)
    return x * Φ, (Φ,)


def _gelu_erf_vjp(g, y, extras, x):
    # d/dx x Φ(x) = Φ(x) + x φ(x),  φ(x) = e^{−x²/2} / √(2π)
    (Φ,) = extras
    φ = (x * x).mul_(-0.5).exp_().mul_(1 / math.sqrt(2 * math.pi))
    return (φ.mul_(x).add_(Φ).mul_(g),)


_K = math.sqrt(2 / math.pi)


def _gelu_tanh_value(x):
    # 0.5 x (1 + tanh u) = x σ(2u),  u = √(2/π) (x + 0.044715 x³)   (1 + tanh u = 2σ(2u))
    s = (x * x).mul_(2 * _K * 0.044715).add_(2 * _K).mul_(x).sigmoid_()
    return x * s, (s,)


def _gelu_tanh_vjp(g, y, extras, x):
    # d/dx x σ(2u) = σ(2u) + x σ(2u)(1 − σ(2u)) · 2u'(x),  2u'(x) = 2√(2/π) (1 + 3 · 0.044715 x²)
    (s,) = extras
    d = (x * x).mul_(6 * _K * 0.044715).add_(2 * _K)  # 2u'(x)
    d.mul_(x).mul_(s)
    return (d.addcmul_(d, s, value=-1).add_(s).mul_(g),)  # d − d s = d (1 − s), no temporary


# one sigmoid instead of tanh: torch.tanh is ~10x slower than torch.sigmoid on the CPU here
_gelu_tanh = derived(_gelu_tanh_value, _gelu_tanh_vjp)
_gelu_erf = derived(_gelu_erf_value, _gelu_erf_vjp)


def log_softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """log softmax(x)_i = x_i − log Σ_j e^{x_j} = (x_i − m) − log Σ_j e^{x_j − m}, m = max_j x_j."""
    return _log_softmax(x, dim)


def softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}, m = max_j x_j."""
    return _softmax(x, dim)


def _log_softmax_value(x, dim):
    z = x - torch.amax(x, dim=dim, keepdim=True)  # any m gives the same value; the max keeps e^{·} ≤ 1
    return z.sub_(torch.log(torch.sum(torch.exp(z), dim=dim, keepdim=True))), ()


def _log_softmax_vjp(g, y, extras, x, dim):
    # ∂/∂x_j Σ_i g_i log p_i = g_j − p_j Σ_i g_i,   p = e^{y}
    return torch.exp(y).mul_(torch.sum(g, dim=dim, keepdim=True)).neg_().add_(g), None


def _softmax_value(x, dim):
    e = (x - torch.amax(x, dim=dim, keepdim=True)).exp_()
    return e.div_(torch.sum(e, dim=dim, keepdim=True)), ()


def softmax_vjp(g: Tensor, p: Tensor, dim: int = -1) -> Tensor:
    """∂/∂x_j Σ_i g_i p_i = p_j (g_j − Σ_i g_i p_i): the softmax's vector-Jacobian product."""
    gp = g * p
    return gp.addcmul_(p, torch.sum(gp, dim=dim, keepdim=True), value=-1)  # p g − p Σ g p


_log_softmax = derived(_log_softmax_value, _log_softmax_vjp)
_softmax = derived(_softmax_value, lambda g, p, extras, x, dim: (softmax_vjp(g, p, dim), None))


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
