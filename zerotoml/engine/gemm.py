"""Which library multiplies two float32 matrices on the CPU: the fast engine's choice, measured.
Note: notes/performance.md#matrix-products.

Every contraction ends in a matrix product (the fast engine's planner, planner.py, makes it
one), and on a CPU that product is most of a step's time. torch's ``mm`` hands float32 to its
BLAS (MKL on x86); the oneDNN library that torch also carries (it runs torch's CPU
convolutions) has an inner product, ``X Wᵀ``, that is faster on some processors and slower on
others, and faster for some shapes than for others on the same processor. So the choice is
measured, not assumed: the first time a large float32 CPU product of a given shape and layout
comes, `choose` times both libraries on it, interleaved, and keeps oneDNN for that shape only
where it is clearly faster; every later product of that shape goes where its first one
decided (`choices` holds the decisions). ``LIBRARY = "onednn"`` or ``"torch"`` decides by hand
for every shape (the tests and benchmarks use it). Everything else stays with torch: float64, GPUs, small products, batched products,
code under torch.compile or a torch.func transform. It is the same sum; only the order of the
additions inside it changes, as between any two BLAS libraries.
(``torch.ops.mkldnn._linear_pointwise`` is a private torch operator: where it is missing or
fails on a small product, torch.mm takes over.)

Tested against torch.mm in test/engine/test_gemm.py: values, gradients and second derivatives,
for every layout of the operands, and the fallbacks.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

__all__ = ["LIBRARY", "addmm", "choices", "choose", "mm", "uses_onednn"]

# None: each shape's library measured by `choose`; "onednn" or "torch": that one for every shape.
LIBRARY: str | None = None

# (m, k, n, A row-major, B row-major) -> whether oneDNN multiplies products of that shape
choices: dict[tuple[int, int, int, bool, bool], bool] = {}

# Below this many multiply-adds (m·k·n) a call's fixed cost (about 12 µs for oneDNN against
# 2 µs for torch.mm) outweighs a faster kernel (benchmarks/bench_gemm.py).
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


def choose(A: Tensor, B: Tensor) -> bool:
    """Whether oneDNN multiplies products of the shape and layout of ``A B``: measured the first
    time (three rounds of each library, interleaved, the fastest of each; oneDNN kept only if
    under 0.9 of torch's time), then read from `choices`."""
    key = (A.shape[0], A.shape[1], B.shape[1], A.is_contiguous(), B.is_contiguous())
    if key not in choices:
        times = {torch.mm: [], _inner: []}
        with torch.no_grad():
            for f in times:  # (warm both up)
                f(A, B)
            for _ in range(3):
                for f, ts in times.items():
                    t0 = time.perf_counter()
                    f(A, B)
                    ts.append(time.perf_counter() - t0)
        choices[key] = min(times[_inner]) < 0.9 * min(times[torch.mm])
    return choices[key]


def uses_onednn(A: Tensor, B: Tensor) -> bool:
    """Whether ``mm(A, B)`` runs on oneDNN: two float32 CPU matrices, a product of at least
    SMALL multiply-adds, oneDNN measured faster for this shape (`choose`), and no torch.func transform or torch.compile
    around (the compiler picks its own kernels)."""
    # (the cheapest tests first: most small products are decided by their size)
    return (A.dim() == 2 and B.dim() == 2 and A.shape[0] * A.shape[1] * B.shape[1] >= SMALL
            and A.dtype == torch.float32 and B.dtype == torch.float32
            and A.device.type == "cpu" and B.device.type == "cpu"
            and not torch._C._are_functorch_transforms_active() and not torch.compiler.is_compiling()
            and LIBRARY != "torch" and _onednn_works() and (LIBRARY == "onednn" or choose(A, B)))


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
