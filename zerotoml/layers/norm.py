"""Normalisation layers: LayerNorm, RMSNorm, BatchNorm, GroupNorm.
Note: notes/layers.md#normalisation."""

from __future__ import annotations

import torch
from einops import pack, rearrange, reduce, unpack

from .. import kernels
from ..derivatives import derived
from ..einsum import einsum
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
    if kernels.FUSED:  # the opt-in fast path (zerotoml/kernels.py)
        return torch.nn.functional.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
    return _layer_norm(x, m.weight, m.bias, m.eps, len(m.normalized_shape))


def _layer_norm_value(x, w, b, eps, k):
    H = x.shape[-k:].numel()
    a = x.reshape(-1, H)  # one row of the H = n_1···n_k normalised units per example
    # μ = 1/H Σ_i a_i,  σ = sqrt(1/H Σ_i (a_i − μ)²)        (Ba et al. eq. 3: biased variance)
    d = a - a.mean(dim=-1, keepdim=True)
    r = torch.rsqrt((d * d).mean(dim=-1, keepdim=True) + eps)  # (torch.var_mean: ~30x slower here)
    x̂ = d.mul_(r)  # (in place: notes/layers.md#hand-derived-gradients)
    # y = g ⊙ (a − μ) / σ + b,  σ = sqrt(σ² + ε)           (the gain g and bias b of eq. 4)
    if w is not None and b is not None:
        y = torch.addcmul(b.reshape(H), x̂, w.reshape(H))
    else:
        y = x̂ if w is None else x̂ * w.reshape(H)
        y = y if b is None else y + b.reshape(H)
    return y.reshape(x.shape), (x̂, r)


def _layer_norm_vjp(g, y, extras, x, w, b, eps, k):
    # x̂ = (a − μ) r, r = 1/σ:  ∂L/∂a = r (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)),  ĝ = g ⊙ gain
    x̂, r = extras
    H = x̂.shape[-1]
    g = g.reshape(-1, H)
    gx̂_x̂ = g * x̂  # g ⊙ x̂: its row sums with the gain give mean(ĝ x̂), its column sums ∂L/∂gain
    if w is None:
        gx̂, m1, m2 = g.clone(), g.mean(dim=-1, keepdim=True), gx̂_x̂.mean(dim=-1, keepdim=True)
    else:
        w_ = w.reshape(H)
        gx̂ = g * w_
        # mean_n(g w) and mean_n(g x̂ w): row dot products with the gain, one matrix-vector product each
        m1 = einsum(g, w_ / H, "rows n, n -> rows")[:, None]
        m2 = einsum(gx̂_x̂, w_ / H, "rows n, n -> rows")[:, None]
    gx = gx̂.sub_(m1).addcmul_(x̂, m2, value=-1).mul_(r)
    # ∂L/∂gain = Σ_rows g ⊙ x̂,  ∂L/∂b = Σ_rows g
    gw = None if w is None else gx̂_x̂.sum(dim=0).reshape(w.shape)
    gb = None if b is None else g.sum(dim=0).reshape(b.shape)
    return gx.reshape(x.shape), gw, gb, None, None


_layer_norm = derived(_layer_norm_value, _layer_norm_vjp)


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
    if batch_stats:
        count = xs.shape[0] * xs.shape[2]
        if m.training and count <= 1:
            raise ValueError(f"BatchNorm: argument `x` has shape {tuple(x.shape)}; training needs more than "
                             f"1 value per channel")
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
