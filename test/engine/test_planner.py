"""zerotoml/engine/planner.py (the fast engine's einsum): every planned contraction equals torch.einsum (through einops), values
and gradients in float64; what one matmul cannot do goes to einops unchanged."""

import einops
import pytest
import torch

from zerotoml.engine.planner import _plan, einsum

f64 = torch.float64

PLANNED = [  # (pattern, shape of A, shape of B): one matmul (or a product and a sum) each
    ("b t d_in, d_in d_out -> b t d_out", (2, 3, 4), (4, 5)),          # Linear
    ("... d_in, d_in d_out -> ... d_out", (2, 3, 4), (4, 5)),          # Linear, any batch
    ("... d_in, d_in d_out -> ... d_out", (4,), (4, 5)),               # an empty ellipsis
    ("b t d, s d h e -> s b h t e", (2, 3, 4), (3, 4, 2, 5)),          # stacked Q, K, V heads
    ("b h q d, b h k d -> b h q k", (2, 3, 4, 5), (2, 3, 6, 5)),       # attention scores
    ("b h q k, b h k d -> b h q d", (2, 3, 4, 6), (2, 3, 6, 5)),       # weighted values
    ("b h t e, h e d -> b t d", (2, 3, 4, 5), (3, 5, 6)),              # merge heads
    ("b t d, v d -> b t v", (2, 3, 4), (7, 4)),                        # tied LM head
    ("b t d, b t d -> b t", (2, 3, 4), (2, 3, 4)),                     # row dot products
    ("i, i ->", (4,), (4,)),                                           # a full contraction
    ("a b, c d -> a b c d", (2, 3), (4, 5)),                           # an outer product
    ("a b, b c -> c a", (2, 3), (3, 4)),                               # output axes reordered
    ("a b, a b -> a b", (2, 3), (2, 3)),                               # elementwise
    ("x, y -> x y", (0,), (3,)),                                       # an empty axis
]

FALLBACK = [  # einops' path: the plan is None or the sizes do not agree
    ("a b, b c -> a", (2, 3), (3, 4)),            # c summed within one operand
    ("b i, b i j -> b j", (1, 3), (2, 3, 4)),     # size-1 axis broadcast against 2
    ("... i, ... i -> ...", (2, 3), (2, 3)),      # ellipses in both operands
    ("a a, a b -> b", (3, 3), (3, 2)),            # an axis repeated in an operand (a trace)
]


def _both(pattern, sa, sb, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(sa, dtype=f64, generator=g, requires_grad=True)
    B = torch.randn(sb, dtype=f64, generator=g, requires_grad=True)
    ours, ref = einsum(A, B, pattern), einops.einsum(A, B, pattern)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    δ = torch.randn(ref.shape, dtype=f64, generator=g)
    for a, b in zip(torch.autograd.grad(ours, (A, B), δ), torch.autograd.grad(ref, (A, B), δ)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("pattern,sa,sb", PLANNED)
def test_planned_contractions_equal_torch_einsum(pattern, sa, sb):
    assert _plan(pattern, len(sa), len(sb)) is not None
    _both(pattern, sa, sb)


@pytest.mark.parametrize("pattern,sa,sb", FALLBACK)
def test_unplanned_contractions_go_to_einops(pattern, sa, sb):
    _both(pattern, sa, sb)


def test_non_contiguous_operands_and_a_single_matmul():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 2, dtype=f64, generator=g).permute(2, 1, 0)  # (2, 3, 4), strided
    W = torch.randn(5, 4, dtype=f64, generator=g).T                    # (4, 5), transposed
    torch.testing.assert_close(einsum(x, W, "b t d, d e -> b t e"), torch.einsum("btd,de->bte", x, W))
    # x W on a contiguous x is one matmul on views: no permute, no copy
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x, W = torch.randn(2, 3, 4, dtype=f64), W.contiguous()
    with Log():
        einsum(x, W, "b t d, d e -> b t e")
    assert [op for op in seen if "mm" in op] == ["aten.mm.default"]
    assert not any("copy" in op or "clone" in op or "permute" in op for op in seen)


def test_errors_are_einops_errors():
    A, B = torch.randn(2, 3), torch.randn(4, 5)
    with pytest.raises(Exception, match="3|4"):
        einsum(A, B, "a b, b c -> a c")  # b is 3 in A and 4 in B
    with pytest.raises(Exception):
        einsum(A, B, "a b c, c d -> a d")  # A has 2 axes, not 3


@pytest.mark.parametrize("pattern,sa,sb,sp", [
    ("b t d_in, d_in d_out -> b t d_out", (2, 3, 4), (4, 5), (5,)),          # addmm
    ("... d_in, d_in d_out -> ... d_out", (4,), (4, 5), (5,)),               # one example
    ("b h t e, h e d -> b t d", (2, 3, 4, 5), (3, 5, 6), (6,)),              # merge heads + b_o
    ("b t d, s d h e -> s b h t e", (2, 3, 4), (3, 4, 2, 5), (3, 1, 2, 1, 5)),  # broadcast: added after
    ("b h q d, b h k d -> b h q k", (2, 3, 4, 5), (2, 3, 6, 5), (1, 1, 4, 6)),  # one mask: baddbmm
    ("b h q d, b h k d -> b h q k", (2, 3, 4, 5), (2, 3, 6, 5), (2, 1, 4, 6)),  # per example: added after
    ("b h q d, b h k d -> b h q k", (2, 3, 4, 5), (2, 3, 6, 5), (6,)),          # per key: baddbmm
    ("b t d, d e -> b t e", (2, 3, 4), (4, 5), (1, 1, 1, 5)),                   # more axes: added after
    ("b t d, d e -> b t e", (2, 3, 4), (4, 5), (3, 5)),                         # per position: added after
    ("a b, b c -> a", (2, 3), (3, 4), (2,)),                                 # einops' path
])
def test_plus_adds_to_the_result(pattern, sa, sb, sp):
    g = torch.Generator().manual_seed(2)
    A, B, c = (torch.randn(s, dtype=f64, generator=g, requires_grad=True) for s in (sa, sb, sp))
    ours, ref = einsum(A, B, pattern, plus=c), einops.einsum(A, B, pattern) + c
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    δ = torch.randn(ref.shape, dtype=f64, generator=g)
    for a, b in zip(torch.autograd.grad(ours, (A, B, c), δ), torch.autograd.grad(ref, (A, B, c), δ)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
