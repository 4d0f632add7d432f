"""Losses, with torch.nn.functional's arguments and layouts, written from their formulas.
Note: notes/layers.md#losses.

Class scores follow torch: ``(classes,)``, ``(b, classes)`` or ``(b, classes, d1, ...)``,
the classes on axis 1; targets are ``()``, ``(b,)`` or ``(b, d1, ...)``. Logits of a
sequence model laid out ``(b, t, classes)`` go in as ``rearrange(z, "b t c -> b c t")``.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce

from . import engine
from .einsum import einsum
from .layers.activation import log_softmax
from .shapes import Float, Int, Tensor

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits", "kl_div"]


def _reduce(losses: Tensor, reduction: str, who: str, allowed=("mean", "sum", "none")) -> Tensor:
    if reduction not in allowed:
        raise ValueError(f"{who}: reduction={reduction!r}; expected one of {', '.join(map(repr, allowed))}")
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def _classes_last(scores: Tensor, who: str) -> Tensor:
    """``(c)`` stays; ``(b c d1 ...)`` becomes ``(b d1 ... c)``."""
    if scores.dim() == 0:
        raise ValueError(f"{who}: argument `input` is a scalar; expected (classes,), (b, classes) or "
                         f"(b, classes, d1, ...)")
    return scores if scores.dim() == 1 else rearrange(scores, "b c ... -> b ... c")


def _check_targets(targets: Tensor, C: int, weight: Tensor | None, ignore_index: int, who: str,
                   shape: tuple) -> Tensor:
    """Class-index targets that fit scores of ``shape`` (classes on axis 1); returns the mask
    of the targets that are not ``ignore_index``."""
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"{who}: argument `target` has dtype {targets.dtype}; expected integer class indices")
    expected = (shape[0], *shape[2:]) if len(shape) > 1 else ()
    if tuple(targets.shape) != expected:
        raise ValueError(f"{who}: argument `target` has shape {tuple(targets.shape)}; for `input` of shape "
                         f"{tuple(shape)} (classes on axis 1) expected {expected}")
    if weight is not None and tuple(weight.shape) != (C,):
        raise ValueError(f"{who}: argument `weight` has shape {tuple(weight.shape)}; expected ({C},), one per class")
    kept = targets != ignore_index
    bad = kept & ((targets < 0) | (targets >= C))
    if bool(bad.any()):
        value = int(targets[bad].flatten()[0])
        raise IndexError(f"{who}: argument `target` holds class {value}, outside [0, {C}) for {C} classes "
                         f"(ignore_index={ignore_index})")
    return kept


def _class_terms(logp: Float[Tensor, "*batch c"], targets: Int[Tensor, "*batch"], weight: Tensor | None,
                 ignore_index: int, who: str, shape: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """``(−w_{y_i} log p_{i,y_i}, w_{y_i}, kept)``, with 0 where ``y_i = ignore_index``."""
    kept = _check_targets(targets, logp.shape[-1], weight, ignore_index, who, shape)
    y = torch.where(kept, targets, torch.zeros_like(targets))
    # log p_{i, y_i}: a gather (indexing, not a contraction)
    picked = torch.take_along_dim(logp, y[..., None], dim=-1)[..., 0]
    w = kept.to(logp.dtype) if weight is None else weight[y] * kept
    return -w * picked, w, kept


def nll_loss(input: Float[Tensor, "..."], target: Int[Tensor, "..."], *, weight: Float[Tensor, "c"] | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Float[Tensor, "..."]:
    """ℓ_i = −w_{y_i} log p_{i,y_i} from log-probabilities; "mean" is Σ_i ℓ_i / Σ_i w_{y_i}
    over the targets that are not ``ignore_index`` (as torch)."""
    logp = _classes_last(input, "nll_loss")
    losses, w, _ = _class_terms(logp, target, weight, ignore_index, "nll_loss", tuple(input.shape))
    if reduction == "mean":
        return losses.sum() / w.sum()
    return _reduce(losses, reduction, "nll_loss")


def cross_entropy(input: Float[Tensor, "..."], target: Tensor, *, weight: Float[Tensor, "c"] | None = None,
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0
                  ) -> Float[Tensor, "..."]:
    """Cross-entropy of logits against class indices (integer ``target``) or class
    probabilities (floating ``target`` of the shape of ``input``), as torch's F.cross_entropy.

    With label smoothing ε over C classes the target is (1 − ε) one-hot + ε/C (Szegedy et
    al. 2016, §7): ℓ_i = (1 − ε) w_{y_i} (−log p_{i,y_i}) + ε/C Σ_c w_c (−log p_{i,c})."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing={label_smoothing}; expected a value in [0, 1]")
    z = _classes_last(input, "cross_entropy")
    C = z.shape[-1]
    if engine.fast() and not target.is_floating_point():  # the fast engine takes over (zerotoml/engine/kernels.py)
        _check_targets(target, C, weight, ignore_index, "cross_entropy", tuple(input.shape))
        _reduce(input, reduction, "cross_entropy")  # (the reduction checked the same way)
        return engine.kernels.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    # log p_{i,c} = z_{i,c} − log Σ_k e^{z_{i,k}}
    logp = log_softmax(z, dim=-1)
    ε = label_smoothing
    if target.is_floating_point():
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"cross_entropy: probability `target` has shape {tuple(target.shape)}; expected the "
                             f"shape of `input`, {tuple(input.shape)}")
        q = _classes_last(target, "cross_entropy")
        # q' = (1 − ε) q + ε/C
        q = q * (1 - ε) + ε / C if ε > 0 else q
        q = q if weight is None else q * weight
        # ℓ_i = −Σ_c w_c q_{i,c} log p_{i,c}; "mean" averages over the examples
        losses = -einsum(logp, q, "... c, ... c -> ...")
        return _reduce(losses, reduction, "cross_entropy")
    nll, w, kept = _class_terms(logp, target, weight, ignore_index, "cross_entropy", tuple(input.shape))
    losses = nll
    if ε > 0:
        # −Σ_c w_c log p_{i,c}, zero where the target is ignored
        smooth = -(reduce(logp, "... c -> ...", "sum") if weight is None else einsum(logp, weight, "... c, c -> ..."))
        smooth = torch.where(kept, smooth, torch.zeros_like(smooth))
        losses = (1 - ε) * nll + (ε / C) * smooth
    if reduction == "mean":
        # normalised by Σ_i w_{y_i} over kept targets, for both terms (as torch)
        return losses.sum() / w.sum()
    return _reduce(losses, reduction, "cross_entropy")


def _same_shape(a: Tensor, b: Tensor, who: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{who}: argument `target` has shape {tuple(b.shape)}; expected the shape of "
                         f"`input`, {tuple(a.shape)}")


def mse_loss(input: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"], *, reduction: str = "mean"
             ) -> Float[Tensor, "..."]:
    """ℓ_i = (x_i − y_i)²."""
    _same_shape(input, target, "mse_loss")
    return _reduce((input - target) ** 2, reduction, "mse_loss")


def _softplus_neg(x: Tensor) -> Tensor:
    """−log σ(x) = log(1 + e^{−x}) = max(−x, 0) + log(1 + e^{−|x|}), with where so the
    gradient at 0 is −½ and nothing overflows."""
    pos = x >= 0
    s = torch.log1p(torch.exp(torch.where(pos, -x, x)))  # log(1 + e^{−|x|})
    return torch.where(pos, s, s - x)


def binary_cross_entropy_with_logits(input: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"], *,
                                     weight: Tensor | None = None, pos_weight: Tensor | None = None,
                                     reduction: str = "mean") -> Float[Tensor, "..."]:
    """ℓ = −w [p y log σ(x) + (1 − y) log(1 − σ(x))] = w [(1 − y) x + (1 + (p − 1) y) (−log σ(x))],
    with ``p = pos_weight`` broadcast along the last axis, ``w = weight`` broadcast to ``input``."""
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    sp = _softplus_neg(input)
    losses = (1 - target) * input + (sp if pos_weight is None else (1 + (pos_weight - 1) * target) * sp)
    losses = losses if weight is None else losses * weight
    return _reduce(losses, reduction, "binary_cross_entropy_with_logits")


def kl_div(input: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"], *, reduction: str = "mean",
           log_target: bool = False) -> Float[Tensor, "..."]:
    """KL(q ‖ p) pointwise from ``input = log p``: ℓ = q (log q − log p) with 0 log 0 = 0;
    ``log_target=True`` takes ``target = log q``. "batchmean" divides the sum by the batch
    size (the true KL per example); "mean" divides by the number of elements (as torch)."""
    _same_shape(input, target, "kl_div")
    if log_target:
        losses = torch.exp(target) * (target - input)
    else:
        losses = torch.xlogy(target, target) - target * input
    if reduction == "batchmean":
        return losses.sum() / (input.shape[0] if input.dim() > 0 else 1)
    return _reduce(losses, reduction, "kl_div", allowed=("mean", "sum", "none", "batchmean"))
