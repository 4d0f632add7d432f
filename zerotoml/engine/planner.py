"""The fast engine's einsum: a two-operand contraction planned into one matrix product.
Note: notes/performance.md#the-einsum-planner.

    y = einsum(x, W, "b t d_in, d_in d_out -> b t d_out")

takes the arguments of `zerotoml.einsum.einsum` (einops' notation). A contraction of two operands always comes down to one (batched) matrix product: every axis
is a *batch* axis (in both operands and the output), a *contracted* axis (in both, not in
the output), or a *free* axis of one operand (kept in the output). Move the axes of A to
(batch, free_A, contracted) and those of B to (batch, contracted, free_B), merge each group
into one axis, multiply, split the groups again and put the axes in the output's order:

    C[β, i, j] = Σ_κ A[β, i, κ] B[β, κ, j]

torch.einsum does the same in C++, but always through ``bmm`` with unsqueezes, permutes and
reshapes around it, a dozen autograd nodes per call; the plan below keeps only the moves
that are needed (often none: ``x W`` is one ``mm`` on a view), and is cached per pattern and
number of axes. What it does not plan (one or three operands, an axis repeated in an
operand, broadcasting axes of size 1, ellipses in both operands) goes to einops.einsum.
The plain matrix product (no batch axis, or a batch of one) goes through
zerotoml/engine/gemm.py, which picks the library that multiplies. Tested equal to torch.einsum,
values and gradients, in test/engine/test_planner.py.
"""

from __future__ import annotations

import functools
import math

import einops
import torch
from torch import Tensor

from . import gemm

__all__ = ["einsum"]


def einsum(*tensors_and_pattern, plus: Tensor | None = None) -> Tensor:
    """``einsum(A, B, "a b, b c -> a c")``: einops' signature and notation.
    ``plus=b`` adds ``b`` to the result (``x W + b``); where ``b`` lies along the output's
    last axes and the plan is one matrix product, the addition happens inside it (addmm)."""
    *tensors, pattern = tensors_and_pattern
    if len(tensors) == 2:
        plan = _plan(pattern, tensors[0].dim(), tensors[1].dim())
        if plan is not None and _sizes_agree(plan, *tensors):
            return _run(plan, *tensors, plus)
    y = einops.einsum(*tensors, pattern)
    return y if plus is None else y + plus


def _axes(spec: str, ndim: int) -> list[str] | None:
    """The axis names of one operand, "..." expanded to as many axes as ``ndim`` leaves."""
    names = spec.split()
    if "..." in names:
        if names.count("...") > 1 or ndim < len(names) - 1:
            return None
        k = names.index("...")
        names = names[:k] + [f"…{j}" for j in range(ndim - len(names) + 1)] + names[k + 1:]
    return names if len(names) == ndim else None


@functools.lru_cache(maxsize=2048)
def _plan(pattern: str, ndim_a: int, ndim_b: int):
    """(perm_a, perm_b, #batch, #free_a, #contracted, output permutation) or None where one
    matmul does not fit."""
    try:
        lhs, out = pattern.split("->")
        spec_a, spec_b = lhs.split(",")
    except ValueError:
        return None
    if "..." in spec_a and "..." in spec_b:
        return None  # broadcasting between the two ellipses: einops decides
    a, b = _axes(spec_a, ndim_a), _axes(spec_b, ndim_b)
    if a is None or b is None:
        return None
    ellipsis = [n for n in a + b if n.startswith("…")]
    o = out.split()
    if o.count("...") > 1 or ("..." in o and "..." not in spec_a + spec_b):
        return None
    if "..." in o:
        k = o.index("...")
        o = o[:k] + ellipsis + o[k + 1:]
    if len(set(a)) < len(a) or len(set(b)) < len(b) or len(set(o)) < len(o) or not set(o) <= set(a) | set(b):
        return None
    batch = [n for n in a if n in b and n in o]
    contracted = [n for n in a if n in b and n not in o]
    free_a = [n for n in a if n not in b]
    free_b = [n for n in b if n not in a]
    if any(n not in o for n in free_a + free_b):
        return None  # an axis summed within one operand: einops handles it
    perm_a = [a.index(n) for n in batch + free_a + contracted]
    perm_b = [b.index(n) for n in batch + contracted + free_b]
    mid = batch + free_a + free_b
    perm_o = [mid.index(n) for n in o]
    return (tuple(perm_a), tuple(perm_b), len(batch), len(free_a), len(contracted),
            None if perm_o == sorted(perm_o) else tuple(perm_o))


def _sizes_agree(plan, A: Tensor, B: Tensor) -> bool:
    perm_a, perm_b, nb, na, nc, _ = plan
    sa = [A.shape[i] for i in perm_a]
    sb = [B.shape[i] for i in perm_b]
    return sa[:nb] == sb[:nb] and sa[nb + na:] == sb[nb:nb + nc]


def _permute(x: Tensor, perm: tuple[int, ...]) -> Tensor:
    return x if perm == tuple(range(len(perm))) else x.permute(perm)


def _matrix_shape(plus: Tensor | None, n_out: int, free_a: tuple, free_b: tuple) -> tuple | None:
    """How ``plus`` enters one (batched) matmul's output matrix: (1, F_b) or (F_a, F_b) when
    it is the same for every batch entry and lies along the free axes; else None."""
    if plus is None or plus.dim() > n_out:
        return None
    shape = tuple(plus.shape)
    while shape and shape[0] == 1 and len(shape) > len(free_b):
        shape = shape[1:]
    if free_b and shape == tuple(free_b):
        return 1, math.prod(free_b)
    if free_b and shape == (*free_a, *free_b):
        return math.prod(free_a), math.prod(free_b)
    return None


def _run(plan, A: Tensor, B: Tensor, plus: Tensor | None) -> Tensor:
    perm_a, perm_b, nb, na, nc, perm_o = plan
    A, B = _permute(A, perm_a), _permute(B, perm_b)
    batch, free_a = A.shape[:nb], A.shape[nb:nb + na]
    free_b = B.shape[nb + nc:]
    K = math.prod(A.shape[nb + na:])
    if not free_a and not free_b:  # no matrix left: a product and a sum over κ (not 1 x 1 matmuls)
        C = A * B if not nc else (A.reshape(*batch, K) * B.reshape(*batch, K)).sum(dim=-1)
        return C if plus is None else C + plus
    batched = math.prod(batch) != 1  # a batch of one is a plain matrix product (gemm.py)
    A = A.reshape(math.prod(batch), math.prod(free_a), K) if batched else A.reshape(math.prod(free_a), K)
    B = B.reshape(math.prod(batch), K, math.prod(free_b)) if batched else B.reshape(K, math.prod(free_b))
    P = _matrix_shape(plus, nb + na + len(free_b), free_a, free_b) if perm_o is None else None
    if P is not None:
        # C[β, i, j] = P[i, j] + Σ_κ A[β, i, κ] B[β, κ, j]: the sum inside the product's kernel
        C = torch.baddbmm(plus.reshape(1, *P), A, B) if batched else gemm.addmm(plus.reshape(P), A, B)
        return C.reshape((*batch, *free_a, *free_b))
    # C[β, i, j] = Σ_κ A[β, i, κ] B[β, κ, j]
    C = (torch.matmul(A, B) if batched else gemm.mm(A, B)).reshape((*batch, *free_a, *free_b))
    C = C if perm_o is None else C.permute(perm_o)
    return C if plus is None else C + plus
