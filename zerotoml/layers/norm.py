"""Normalisation layers: LayerNorm, RMSNorm, BatchNorm, GroupNorm.
Note: notes/layers.md#normalisation."""

from __future__ import annotations

import torch
from einops import pack, rearrange, reduce, unpack

from .. import engine
from ..generic import forward, from_torch, method
from ..shapes import Float, Int, Tensor
from ..tree import buffer, struct


def _trailing(shape: tuple[int, ...], normalized: tuple[int, ...], who: str) -> tuple[str, str]:
    """The einops names of the normalised trailing axes and their kept-as-1 form."""
    k = len(normalized)
    if tuple(shape[len(shape) - k:]) != normalized or len(shape) < k:
        raise ValueError(f"{who}: argument `x` has shape {tuple(shape)}; expected it to end with "
                         f"normalized_shape={normalized}")
    names = " ".join(f"n{i}" for i in range(k))
    return names, " ".join("1" for _ in range(k))


def _shape(normalized_shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


# ------------------------------------------------------------------- LayerNorm


@struct
class LayerNorm:
    """Ba et al. 2016: normalise over the trailing ``normalized_shape`` axes of each example."""

    weight: Float[Tensor, "*normalized"] | None
    bias: Float[Tensor, "*normalized"] | None
    normalized_shape: tuple[int, ...]
    eps: float = 1e-5

    @classmethod
    def init(cls, normalized_shape, *, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
             device=None, dtype=None) -> LayerNorm:
        """torch's default: gain one, bias zero."""
        shape = _shape(normalized_shape)
        kw = dict(device=device, dtype=dtype)
        w = torch.ones(shape, **kw) if elementwise_affine else None
        b = torch.zeros(shape, **kw) if elementwise_affine and bias else None
        return cls(w, b, shape, eps)


@method
def forward(m: LayerNorm, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    _trailing(x.shape, m.normalized_shape, "LayerNorm")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
    axes = tuple(range(-len(m.normalized_shape), 0))  # the H = n_1···n_k normalised units of each example
    # μ = 1/H Σ_i a_i,  σ = sqrt(1/H Σ_i (a_i − μ)²)        (Ba et al. eq. 3: the biased variance)
    μ = x.mean(dim=axes, keepdim=True)
    σ2 = ((x - μ) ** 2).mean(dim=axes, keepdim=True)
    # y = g ⊙ (a − μ) / σ + b,  σ = sqrt(σ² + ε)           (the gain g and bias b of eq. 4)
    y = (x - μ) / torch.sqrt(σ2 + m.eps)
    y = y if m.weight is None else y * m.weight
    return y if m.bias is None else y + m.bias


def layer_norm_vjp(g: Float[Tensor, "*shape"], x: Float[Tensor, "*shape"], m: LayerNorm
                   ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(∂L/∂x, ∂L/∂gain, ∂L/∂bias)`` of ``y = forward(m, x)`` given ``g = ∂L/∂y``, derived by
    hand (checked against autograd, first and second derivatives, in test/layers/test_norm.py)."""
    axes = tuple(range(-len(m.normalized_shape), 0))
    batch = tuple(range(x.dim() - len(m.normalized_shape)))
    μ = x.mean(dim=axes, keepdim=True)
    r = 1 / torch.sqrt(((x - μ) ** 2).mean(dim=axes, keepdim=True) + m.eps)  # r = 1/σ
    x̂ = (x - μ) * r
    ĝ = g if m.weight is None else g * m.weight  # ĝ = g ⊙ gain: the gradient with respect to x̂
    # x̂ = (a − μ) r:  ∂L/∂a = r (ĝ − mean(ĝ) − x̂ mean(ĝ ⊙ x̂))
    gx = r * (ĝ - ĝ.mean(dim=axes, keepdim=True) - x̂ * (ĝ * x̂).mean(dim=axes, keepdim=True))
    # ∂L/∂gain = Σ_examples g ⊙ x̂,  ∂L/∂bias = Σ_examples g
    gw = None if m.weight is None else (g * x̂).sum(dim=batch)
    gb = None if m.bias is None else g.sum(dim=batch)
    return gx, gw, gb


@method
def from_torch(module: torch.nn.LayerNorm) -> LayerNorm:
    w = None if module.weight is None else module.weight.detach().clone()
    b = None if module.bias is None else module.bias.detach().clone()
    return LayerNorm(w, b, tuple(module.normalized_shape), module.eps)


# --------------------------------------------------------------------- RMSNorm


@struct
class RMSNorm:
    """Zhang & Sennrich 2019: divide by the root mean square, no centring, no bias.
    ``eps=None`` is torch's default, the machine epsilon of the input's dtype."""

    weight: Float[Tensor, "*normalized"] | None
    normalized_shape: tuple[int, ...]
    eps: float | None = None

    @classmethod
    def init(cls, normalized_shape, *, eps: float | None = None, elementwise_affine: bool = True,
             device=None, dtype=None) -> RMSNorm:
        """torch's default: gain one."""
        shape = _shape(normalized_shape)
        w = torch.ones(shape, device=device, dtype=dtype) if elementwise_affine else None
        return cls(w, shape, eps)


@method
def forward(m: RMSNorm, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    n, ones = _trailing(x.shape, m.normalized_shape, "RMSNorm")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.rms_norm(x, m.normalized_shape, m.weight, m.eps)
    ε = torch.finfo(x.dtype).eps if m.eps is None else m.eps
    # RMS(a) = sqrt(1/n Σ_i a_i²),  ā_i = a_i / RMS(a) · g_i       (Zhang & Sennrich eq. 4)
    ms = reduce(x * x, f"... {n} -> ... {ones}", "mean")
    y = x * torch.rsqrt(ms + ε)
    return y if m.weight is None else y * m.weight


@method
def from_torch(module: torch.nn.RMSNorm) -> RMSNorm:
    w = None if module.weight is None else module.weight.detach().clone()
    return RMSNorm(w, tuple(module.normalized_shape), module.eps)


# ------------------------------------------------------------------- BatchNorm


@struct
class BatchNorm:
    """Ioffe & Szegedy 2015, for inputs ``(b c)``, ``(b c l)`` (torch's BatchNorm1d) and
    ``(b c h w)`` (BatchNorm2d). In training mode `forward` normalises with the batch
    statistics and updates the running statistics **in place** (as torch does); in eval
    mode it uses the running statistics. ``momentum=None`` is a cumulative average."""

    weight: Float[Tensor, "c"] | None
    bias: Float[Tensor, "c"] | None
    running_mean: Float[Tensor, "c"] | None = buffer()
    running_var: Float[Tensor, "c"] | None = buffer()
    num_batches_tracked: Int[Tensor, ""] | None = buffer()
    eps: float = 1e-5
    momentum: float | None = 0.1
    training: bool = True

    @classmethod
    def init(cls, num_features: int, *, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
             track_running_stats: bool = True, bias: bool = True, device=None, dtype=None) -> BatchNorm:
        """torch's default: gain one, bias zero, running mean 0, running variance 1."""
        kw = dict(device=device, dtype=dtype)
        w = torch.ones(num_features, **kw) if affine else None
        b = torch.zeros(num_features, **kw) if affine and bias else None
        rm = torch.zeros(num_features, **kw) if track_running_stats else None
        rv = torch.ones(num_features, **kw) if track_running_stats else None
        nb = torch.tensor(0, dtype=torch.long, device=device) if track_running_stats else None
        return cls(w, b, rm, rv, nb, eps, momentum, True)


@method
def forward(m: BatchNorm, x: Float[Tensor, "b c *spatial"]) -> Float[Tensor, "b c *spatial"]:
    """Mutates ``m.running_mean``, ``m.running_var`` and ``m.num_batches_tracked`` in
    training mode (when it tracks running statistics)."""
    xs, ps = pack([x], "b c *")  # (b c n): the spatial axes as one
    batch_stats = m.training or m.running_mean is None
    count = xs.shape[0] * xs.shape[2]
    if m.training and count <= 1:
        raise ValueError(f"BatchNorm: argument `x` has shape {tuple(x.shape)}; training needs more than "
                         f"1 value per channel")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.batch_norm(x, m.running_mean, m.running_var, m.num_batches_tracked, m.weight, m.bias,
                                         m.training, m.momentum, m.eps)
    if batch_stats:
        # μ_B = 1/m Σ_i x_i,  σ²_B = 1/m Σ_i (x_i − μ_B)²    (Ioffe & Szegedy, Algorithm 1; biased)
        μ = reduce(xs, "b c n -> c", "mean")
        σ2 = reduce((xs - rearrange(μ, "c -> c 1")) ** 2, "b c n -> c", "mean")
        if m.training and m.running_mean is not None:
            with torch.no_grad():
                m.num_batches_tracked.add_(1)
                f = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
                # running ← (1 − f) running + f stat; Var[x] = m/(m−1) E_B[σ²_B]  (Algorithm 2, unbiased)
                m.running_mean.mul_(1 - f).add_(μ.detach(), alpha=f)
                m.running_var.mul_(1 - f).add_(σ2.detach() * (count / (count - 1)), alpha=f)
    else:
        μ, σ2 = m.running_mean, m.running_var
    # x̂ = (x − μ) / sqrt(σ² + ε),  y = γ x̂ + β
    y = (xs - rearrange(μ, "c -> c 1")) / rearrange(torch.sqrt(σ2 + m.eps), "c -> c 1")
    y = y if m.weight is None else y * rearrange(m.weight, "c -> c 1")
    y = y if m.bias is None else y + rearrange(m.bias, "c -> c 1")
    [y] = unpack(y, ps, "b c *")
    return y


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


@method
def from_torch(module: torch.nn.modules.batchnorm._BatchNorm) -> BatchNorm:
    return BatchNorm(_clone(module.weight), _clone(module.bias), _clone(module.running_mean),
                     _clone(module.running_var), _clone(module.num_batches_tracked),
                     module.eps, module.momentum, module.training)


# ------------------------------------------------------------------- GroupNorm


@struct
class GroupNorm:
    """Wu & He 2018: normalise each example over groups of ``c / groups`` channels and all
    spatial positions; the gain and bias are per channel."""

    weight: Float[Tensor, "c"] | None
    bias: Float[Tensor, "c"] | None
    num_groups: int
    eps: float = 1e-5

    @classmethod
    def init(cls, num_groups: int, num_channels: int, *, eps: float = 1e-5, affine: bool = True, bias: bool = True,
             device=None, dtype=None) -> GroupNorm:
        """torch's default: gain one, bias zero."""
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} is not divisible by num_groups={num_groups}")
        kw = dict(device=device, dtype=dtype)
        w = torch.ones(num_channels, **kw) if affine else None
        b = torch.zeros(num_channels, **kw) if affine and bias else None
        return cls(w, b, num_groups, eps)


@method
def forward(m: GroupNorm, x: Float[Tensor, "b c *spatial"]) -> Float[Tensor, "b c *spatial"]:
    if x.shape[1] % m.num_groups:
        raise ValueError(f"GroupNorm: argument `x` has {x.shape[1]} channels (shape {tuple(x.shape)}), "
                         f"not divisible by num_groups={m.num_groups}")
    if engine.fast():  # the fast engine takes over here (zerotoml/engine/kernels.py)
        return engine.kernels.group_norm(x, m.num_groups, m.weight, m.bias, m.eps)
    xs, ps = pack([x], "b c *")
    xg = rearrange(xs, "b (g k) n -> b g (k n)", g=m.num_groups)
    # μ_i = 1/m Σ_{k∈S_i} x_k,  σ_i² = 1/m Σ_{k∈S_i} (x_k − μ_i)²   (Wu & He eq. 2, S_i: one group)
    μ = reduce(xg, "b g kn -> b g 1", "mean")
    σ2 = reduce((xg - μ) ** 2, "b g kn -> b g 1", "mean")
    # x̂_i = (x_i − μ_i) / sqrt(σ_i² + ε)   (eq. 1),  y = γ x̂ + β   (eq. 3, per channel)
    x_hat = rearrange((xg - μ) / torch.sqrt(σ2 + m.eps), "b g (k n) -> b (g k) n", n=xs.shape[2])
    y = x_hat if m.weight is None else x_hat * rearrange(m.weight, "c -> c 1")
    y = y if m.bias is None else y + rearrange(m.bias, "c -> c 1")
    [y] = unpack(y, ps, "b c *")
    return y


@method
def from_torch(module: torch.nn.GroupNorm) -> GroupNorm:
    return GroupNorm(_clone(module.weight), _clone(module.bias), module.num_groups, module.eps)
