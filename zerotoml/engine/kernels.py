"""The fast engine's kernels: torch's fused operations standing in for zerotoml's formulas.
Note: notes/performance.md#engines.

Each function here takes the arguments of the reference formula it replaces and computes the
same function; the layer file calls it at one visible line,
``if engine.fast(): return engine.kernels.<name>(...)``. Each is tested equal to its reference,
values and gradients, in test/engine/test_kernels.py (float64).

Where a layer's semantics go beyond what torch's kernel does (a fully masked row of attention
scores gives zero weights in zerotoml, NaN in torch), the kernel here adds what is missing.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention", "batch_norm", "cross_entropy", "embedding", "gelu", "group_norm", "layer_norm", "log_softmax", "rms_norm",
           "silu", "softmax"]


def embedding(W: Tensor, ids: Tensor, padding_idx: int | None) -> Tensor:
    """`zerotoml.layers.embedding.Embedding`'s forward (ids already checked there): torch's
    gather, whose backward is one dense index-add; the padding row takes no gradient."""
    return F.embedding(ids, W, padding_idx=padding_idx)


def gelu(x: Tensor, approximate: str) -> Tensor:
    """`zerotoml.layers.activation.gelu`: one kernel forward, one backward."""
    return F.gelu(x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    """`zerotoml.layers.activation.silu`: one kernel forward, one backward."""
    return F.silu(x)


def softmax(x: Tensor, dim: int) -> Tensor:
    """`zerotoml.layers.activation.softmax`: torch's kernel, and zeros (not NaN) in a row
    whose entries are all −inf."""
    dead = torch.isneginf(x).all(dim=dim, keepdim=True)
    # (a dead row is given finite scores first, so that neither it nor its gradient is NaN)
    return torch.softmax(x.masked_fill(dead, 0.0), dim).masked_fill(dead, 0.0)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """`zerotoml.layers.activation.log_softmax`."""
    return torch.log_softmax(x, dim)


def layer_norm(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None, bias: Tensor | None,
               eps: float) -> Tensor:
    """`zerotoml.layers.norm.LayerNorm`'s forward."""
    return F.layer_norm(x, normalized_shape, weight, bias, eps)


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, num_batches_tracked: Tensor | None,
               weight: Tensor | None, bias: Tensor | None, training: bool, momentum: float | None,
               eps: float) -> Tensor:
    """`zerotoml.layers.norm.BatchNorm`'s forward, running statistics updated in place in
    training mode as there (``momentum=None``: the cumulative average)."""
    f = 0.0
    if training and running_mean is not None:
        num_batches_tracked.add_(1)
        f = 1.0 / float(num_batches_tracked) if momentum is None else momentum
    return F.batch_norm(x, running_mean, running_var, weight, bias, training or running_mean is None, f, eps)


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """`zerotoml.layers.norm.GroupNorm`'s forward."""
    return F.group_norm(x, num_groups, weight, bias, eps)


def rms_norm(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None, eps: float | None) -> Tensor:
    """`zerotoml.layers.norm.RMSNorm`'s forward (``eps=None``: the dtype's machine epsilon, as there)."""
    return F.rms_norm(x, normalized_shape, weight, eps)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str,
                  label_smoothing: float) -> Tensor:
    """`zerotoml.losses.cross_entropy` (its arguments checked there first)."""
    return F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, is_causal: bool) -> Tensor:
    """`zerotoml.layers.attention.attend` without its weights: torch's
    scaled_dot_product_attention (flash or memory-efficient kernels where the device has them).
    ``mask`` is additive (0 or −inf, or any float); ``is_causal`` says it is the plain causal
    mask of a square block, which torch's causal kernel applies itself. Rows whose keys are all
    masked give zeros, as in `attend`. Its dropout draws from torch's global generator."""
    if is_causal and q.shape[-2] == k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    # (a dead row's mask is made finite first, so that neither it nor its gradient is NaN)
    dead = torch.isneginf(mask).all(dim=-1, keepdim=True)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.masked_fill(dead, 0.0), dropout_p=dropout_p)
    return o.masked_fill(dead, 0.0)


from .conv import adaptive_avg_pool, avg_pool, conv, conv_transpose, max_pool  # noqa: E402,F401
