"""Which engine multiplies two matrices. Note: notes/layers.md#which-engine-multiplies.

Every contraction in zerotoml ends in a matrix product (zerotoml/einsum.py plans it), and on
a CPU that product is most of a step's time. torch's ``mm`` hands float32 to MKL's sgemm; on
the AMD EPYC these notes were measured on, that runs at 100-200 GFLOP/s, while the oneDNN
library that torch also carries (it runs torch's CPU convolutions) multiplies the same
matrices at 200-420 GFLOP/s. ``mm`` here sends a float32 CPU product of at least `SMALL`
multiply-adds to oneDNN's inner product, ``X Wᵀ``; everything else (float64, GPUs, small
products, batched products, code under torch.compile or a torch.func transform) stays with
torch. It is the same sum; only the order of the additions inside it changes, as between
any two BLAS libraries. (``torch.ops.mkldnn._linear_pointwise`` is a private torch operator:
it is tried once, on a small product, and torch.mm takes over where it is missing.)

``ENGINE``: "onednn" (the default, where torch was built with it) or "torch" (always
torch.mm). Set it before a run (``ZEROTOML_GEMM``, read at import) or at run time
(``zerotoml.gemm.ENGINE = "torch"``); `mm` reads it at every call. Tested against torch.mm in
test/test_gemm.py: values, gradients and second derivatives, for every layout of the operands.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["ENGINE", "addmm", "mm", "onednn_in_use", "uses_onednn"]


def _read_engine() -> str:
    value = os.environ.get("ZEROTOML_GEMM", "onednn").strip().lower() or "onednn"
    if value not in ("onednn", "torch"):
        raise ValueError(f"ZEROTOML_GEMM={os.environ['ZEROTOML_GEMM']!r}: expected 'onednn' or 'torch'")
    return value


ENGINE: str = _read_engine()

# Below this many multiply-adds (m·k·n) a call's fixed cost (about 12 µs for oneDNN against
# 2 µs for torch.mm) outweighs the faster kernel; the two cross near 2²¹ (benchmarks/bench_gemm.py).
SMALL = 1 << 21

_available: bool | None = None


def _onednn_works() -> bool:
    """Whether torch carries oneDNN's inner product, checked once on a small product."""
    global _available
    if _available is None:
        try:
            a, b = torch.arange(6.0).reshape(2, 3), torch.arange(12.0).reshape(3, 4)
            _available = bool(torch.equal(_inner(a, b), a @ b))
        except (AttributeError, RuntimeError, NotImplementedError):
            _available = False
    return _available


def _inner(A: Tensor, B: Tensor, bias: Tensor | None = None) -> Tensor:
    """``A B (+ bias)`` by oneDNN's inner product, which computes ``X Wᵀ`` for a row-major
    X (m, k) and a W (n, k), row- or column-major: X = A, W = Bᵀ (a view). An operand in
    another layout (a slice with a step, a broadcast) is copied first: oneDNN would run its
    reference kernel on it, a thousand times slower."""
    W = B.t() if _plain(B) else B.contiguous().t()
    return torch.ops.mkldnn._linear_pointwise(A.contiguous(), W, bias, "none", [], "")


def _plain(M: Tensor) -> bool:
    """Row-major or column-major, with no gaps and no broadcast axis."""
    return M.is_contiguous() or M.t().is_contiguous()


def onednn_in_use() -> bool:
    """Whether large float32 CPU products go to oneDNN now: the engine switched on and there."""
    return ENGINE == "onednn" and _onednn_works()


def uses_onednn(A: Tensor, B: Tensor) -> bool:
    """Whether ``mm(A, B)`` runs on oneDNN: two float32 CPU matrices, a product of at least
    SMALL multiply-adds, the engine switched on, and no torch.func transform or torch.compile
    around (the compiler picks its own kernels)."""
    # (the cheapest tests first: most small products are decided by their size)
    return (A.dim() == 2 and B.dim() == 2 and A.shape[0] * A.shape[1] * B.shape[1] >= SMALL
            and ENGINE == "onednn" and A.dtype == torch.float32 and B.dtype == torch.float32
            and A.device.type == "cpu" and B.device.type == "cpu"
            and not torch._C._are_functorch_transforms_active() and not torch.compiler.is_compiling()
            and _onednn_works())


def mm(A: Tensor, B: Tensor, bias: Tensor | None = None) -> Tensor:
    """``C[i, j] = bias[j] + Σ_κ A[i, κ] B[κ, j]`` (bias a vector over the columns, or None),
    differentiable to any order."""
    if bias is not None and (tuple(bias.shape) != (B.shape[-1],) or bias.dtype != A.dtype or bias.device != A.device):
        return torch.addmm(bias, A, B)  # a bias broadcast from one entry, or of another type: torch
    if not uses_onednn(A, B):
        return A @ B if bias is None else torch.addmm(bias, A, B)
    bias = None if bias is None else bias.contiguous()
    if torch.is_grad_enabled() and (A.requires_grad or B.requires_grad or (bias is not None and bias.requires_grad)):
        return _Product.apply(A, B, bias)
    return _inner(A, B, bias)


class _Product(torch.autograd.Function):
    """``C = A B + bias`` on oneDNN; its backward is two more products, ``∂L/∂A = G Bᵀ`` and
    ``∂L/∂B = Aᵀ G``, made through `mm` again, so that they are differentiable in turn."""

    @staticmethod
    def forward(ctx, A, B, bias):
        ctx.save_for_backward(A, B)
        ctx.has_bias = bias is not None
        return _inner(A, B, bias)

    @staticmethod
    def backward(ctx, G):
        A, B = ctx.saved_tensors
        need_A, need_B, need_bias = ctx.needs_input_grad
        gA = mm(G, B.t()) if need_A else None
        # Aᵀ G: Aᵀ is copied to row-major (`_inner`); when G is the narrower of the two, copying
        # Gᵀ instead and transposing the product back is less to copy
        gB = None
        if need_B:
            gB = mm(A.t(), G) if A.shape[1] <= G.shape[1] else mm(G.t(), A).t().contiguous()
        gbias = G.sum(0) if ctx.has_bias and need_bias else None
        return gA, gB, gbias


def addmm(P: Tensor, A: Tensor, B: Tensor) -> Tensor:
    """``P + A B`` for a P of shape (1, n) (a bias, added inside the product) or (m, n)."""
    if P.shape[0] == 1 and P.dim() == 2:
        return mm(A, B, P.reshape(-1))
    return P + mm(A, B) if uses_onednn(A, B) else torch.addmm(P, A, B)
