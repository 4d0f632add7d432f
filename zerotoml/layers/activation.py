"""Activation functions, written from their formulas, and the layers that apply them.
Note: notes/layers.md#activations."""

from __future__ import annotations

import math

import torch

from .. import engine
from ..generic import forward, from_torch, method
from ..shapes import Float, Tensor
from ..tree import struct

__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu_vjp", "softmax_vjp",
           "log_softmax_vjp",
           "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "activation"]


def relu(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """relu(x) = max(x, 0); the gradient at 0 is 0, as torch."""
    # max(x, 0)
    return torch.relu(x)


def sigmoid(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """σ(x) = 1 / (1 + e^{−x})."""
    # torch evaluates it through e^{−|x|} ≤ 1, so it never overflows; dσ/dx = σ(x)(1 − σ(x))
    return torch.sigmoid(x)


def tanh(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """tanh(x) = (e^{x} − e^{−x}) / (e^{x} + e^{−x}) = 2σ(2x) − 1."""
    # accurate for small |x| and saturating without overflow; d tanh/dx = 1 − tanh²(x)
    return torch.tanh(x)


def silu(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """silu(x) = x σ(x) (Elfwing et al. 2018; "swish" in Ramachandran et al. 2017)."""
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.silu(x)
    return x * sigmoid(x)


def gelu(x: Float[Tensor, "*shape"], approximate: str = "none") -> Float[Tensor, "*shape"]:
    """GELU (Hendrycks & Gimpel 2016): x Φ(x). ``approximate="tanh"`` is the paper's
    0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))). Its derivative: `gelu_vjp`."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate={approximate!r}; expected 'none' or 'tanh'")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.gelu(x, approximate)
    if approximate == "none":
        # GELU(x) = x Φ(x) = x · ½ (1 + erf(x / √2))
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    # GELU(x) ≈ 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
    return 0.5 * x * (1 + torch.tanh(_K * (x + 0.044715 * x**3)))


_K = math.sqrt(2 / math.pi)


def gelu_vjp(g: Float[Tensor, "*shape"], x: Float[Tensor, "*shape"], approximate: str = "none"
             ) -> Float[Tensor, "*shape"]:
    """∂L/∂x of ``y = gelu(x)`` given ``g = ∂L/∂y``, derived by hand (checked against autograd,
    first and second derivatives, in test/layers/test_activation.py)."""
    if approximate == "none":
        # d/dx x Φ(x) = Φ(x) + x φ(x),   φ(x) = e^{−x²/2} / √(2π)
        Φ = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        φ = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return g * (Φ + x * φ)
    # u = √(2/π) (x + 0.044715 x³):  d/dx ½ x (1 + tanh u) = ½ (1 + tanh u) + ½ x (1 − tanh² u) u'(x),
    # u'(x) = √(2/π) (1 + 3 · 0.044715 x²)
    th = torch.tanh(_K * (x + 0.044715 * x**3))
    du = _K * (1 + 3 * 0.044715 * x * x)
    return g * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du)


def softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}, m = max_j x_j. A row that is −inf
    everywhere (attention whose keys are all masked) gives zeros, not NaN. Its vector-Jacobian
    product: `softmax_vjp`."""
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.softmax(x, dim)
    # any m gives the same value (and no gradient flows through it); the max keeps e^{·} ≤ 1.
    # A dead row has m = −inf: clamped to the lowest float, its e^{·} are 0, and its sum,
    # clamped to 1 (a live row's sum is at least e^0 = 1), gives weights 0
    m = torch.amax(x, dim=dim, keepdim=True).detach().clamp_min(torch.finfo(x.dtype).min)
    e = torch.exp(x - m)
    return e / torch.sum(e, dim=dim, keepdim=True).clamp_min(1.0)


def log_softmax(x: Float[Tensor, "*shape"], dim: int = -1) -> Float[Tensor, "*shape"]:
    """log softmax(x)_i = x_i − log Σ_j e^{x_j} = (x_i − m) − log Σ_j e^{x_j − m}, m = max_j x_j.
    Its vector-Jacobian product: `log_softmax_vjp`."""
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.log_softmax(x, dim)
    z = x - torch.amax(x, dim=dim, keepdim=True).detach()  # any m gives the same value; the max keeps e^{·} ≤ 1
    return z - torch.log(torch.sum(torch.exp(z), dim=dim, keepdim=True))


def softmax_vjp(g: Tensor, p: Tensor, dim: int = -1) -> Tensor:
    """∂/∂x_j Σ_i g_i p_i = p_j (g_j − Σ_i g_i p_i): the softmax's vector-Jacobian product,
    given ``p = softmax(x)``, derived by hand."""
    return p * (g - torch.sum(g * p, dim=dim, keepdim=True))


def log_softmax_vjp(g: Tensor, y: Tensor, dim: int = -1) -> Tensor:
    """∂/∂x_j Σ_i g_i log p_i = g_j − p_j Σ_i g_i, given ``y = log softmax(x)`` (p = e^y),
    derived by hand."""
    return g - torch.exp(y) * torch.sum(g, dim=dim, keepdim=True)


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
