"""Convolution arithmetic: output sizes and paddings, one function per relationship of
Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016,
arXiv:1603.07285). Note: notes/cnn.md#convolution-arithmetic.

Symbols as the paper: input size i, kernel size k, stride s, zero padding p, dilation d;
primes for the transposed convolution (i', o'); a = the zeros added at the high end
(torch's ``output_padding``). The paper pads p on both sides; `conv_output_size` and
`conv_transpose_output_size` take per-side padding (p_lo, p_hi), which is what "same"
padding of an even kernel needs. Everything here is integer arithmetic on one axis,
except the normalisers at the end, which turn torch-style arguments into per-axis tuples.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "output_size_no_padding_unit_strides",
    "output_size_unit_strides",
    "half_padding",
    "full_padding",
    "output_size_no_padding",
    "output_size_padding_strides",
    "pooling_output_size",
    "transposed_output_size_no_padding_unit_strides",
    "transposed_output_size_unit_strides",
    "transposed_output_size_half_padding",
    "transposed_output_size_full_padding",
    "transposed_output_size_no_padding",
    "transposed_output_size_padding",
    "transposed_output_size",
    "transposed_padding",
    "effective_kernel_size",
    "dilated_output_size",
    "conv_output_size",
    "conv_transpose_output_size",
    "output_padding_for",
    "same_padding",
    "valid_padding",
    "as_tuple",
    "padding_pairs",
]


# ------------------------------------------------------- chapter 2: convolution


def output_size_no_padding_unit_strides(i: int, k: int) -> int:
    """Relationship 1 (s = 1, p = 0): ``o = (i − k) + 1``."""
    return (i - k) + 1


def output_size_unit_strides(i: int, k: int, p: int) -> int:
    """Relationship 2 (s = 1): ``o = (i − k) + 2p + 1``."""
    return (i - k) + 2 * p + 1


def half_padding(k: int) -> int:
    """Relationship 3 (half or "same" padding, k odd, s = 1): ``p = ⌊k/2⌋`` gives ``o = i``."""
    if k % 2 != 1:
        raise ValueError(f"half_padding: k={k}; Relationship 3 needs an odd kernel (k = 2n + 1)")
    return k // 2


def full_padding(k: int) -> int:
    """Relationship 4 (full padding, s = 1): ``p = k − 1`` gives ``o = i + (k − 1)``."""
    return k - 1


def output_size_no_padding(i: int, k: int, s: int) -> int:
    """Relationship 5 (p = 0): ``o = ⌊(i − k)/s⌋ + 1``."""
    return (i - k) // s + 1


def output_size_padding_strides(i: int, k: int, s: int, p: int) -> int:
    """Relationship 6 (the general case without dilation): ``o = ⌊(i + 2p − k)/s⌋ + 1``."""
    return (i + 2 * p - k) // s + 1


# ----------------------------------------------------------- chapter 3: pooling


def pooling_output_size(i: int, k: int, s: int) -> int:
    """Relationship 7 (pooling, no padding): ``o = ⌊(i − k)/s⌋ + 1``.
    (zerotoml.layers.conv.pool_output_size adds padding, dilation and ceil_mode.)"""
    return (i - k) // s + 1


# ------------------------------------------- chapter 4: transposed convolution


def transposed_output_size_no_padding_unit_strides(i_: int, k: int) -> int:
    """Relationship 8 (the transpose of s = 1, p = 0): ``k' = k, s' = s, p' = k − 1``,
    ``o' = i' + (k − 1)``: a fully padded convolution."""
    return i_ + (k - 1)


def transposed_output_size_unit_strides(i_: int, k: int, p: int) -> int:
    """Relationship 9 (the transpose of s = 1, padding p): ``p' = k − p − 1``,
    ``o' = i' + (k − 1) − 2p``."""
    return i_ + (k - 1) - 2 * p


def transposed_output_size_half_padding(i_: int, k: int) -> int:
    """Relationship 10 (the transpose of half padding, k odd): ``p' = p``, ``o' = i'``."""
    p = half_padding(k)
    return i_ + (k - 1) - 2 * p


def transposed_output_size_full_padding(i_: int, k: int) -> int:
    """Relationship 11 (the transpose of full padding p = k − 1): ``p' = 0``,
    ``o' = i' − (k − 1)``."""
    return i_ - (k - 1)


def transposed_output_size_no_padding(i_: int, k: int, s: int) -> int:
    """Relationship 12 (the transpose of p = 0, stride s, i − k a multiple of s): the input
    stretched by s − 1 zeros between units, ``k' = k, s' = 1, p' = k − 1``,
    ``o' = s(i' − 1) + k``."""
    return s * (i_ - 1) + k


def transposed_output_size_padding(i_: int, k: int, s: int, p: int) -> int:
    """Relationship 13 (the transpose of padding p, stride s, i + 2p − k a multiple of s):
    stretched input, ``k' = k, s' = 1, p' = k − p − 1``, ``o' = s(i' − 1) + k − 2p``."""
    return s * (i_ - 1) + k - 2 * p


def transposed_output_size(i_: int, k: int, s: int, p: int, a: int) -> int:
    """Relationship 14 (the general transpose): ``a = (i + 2p − k) mod s`` zeros added at the
    bottom/right edges, ``o' = s(i' − 1) + a + k − 2p``."""
    return s * (i_ - 1) + a + k - 2 * p


def transposed_padding(k: int, p: int) -> int:
    """Relationships 9, 13, 14: the equivalent direct convolution pads by ``p' = k − p − 1``."""
    return k - p - 1


# ------------------------------------------------ chapter 5: dilated convolutions


def effective_kernel_size(k: int, d: int) -> int:
    """Section 5.1: a kernel of size k dilated by d spans ``k̂ = k + (k − 1)(d − 1)``."""
    return k + (k - 1) * (d - 1)


def dilated_output_size(i: int, k: int, s: int, p: int, d: int) -> int:
    """Relationship 15: ``o = ⌊(i + 2p − k − (k − 1)(d − 1))/s⌋ + 1``."""
    return (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1


# ---------------------------------------------------- the general forms torch uses


def conv_output_size(i: int, k: int, s: int = 1, p: int | tuple[int, int] = 0, d: int = 1) -> int:
    """Relationship 15 with per-side padding, as torch computes it:
    ``o = ⌊(i + p_lo + p_hi − d(k − 1) − 1)/s⌋ + 1`` (below 1: the kernel does not fit)."""
    p_lo, p_hi = (p, p) if isinstance(p, int) else p
    return (i + p_lo + p_hi - d * (k - 1) - 1) // s + 1


def conv_transpose_output_size(i_: int, k: int, s: int = 1, p: int | tuple[int, int] = 0,
                               d: int = 1, a: int = 0) -> int:
    """Relationship 14 with dilation and per-side padding, as torch's ConvTranspose:
    ``o' = (i' − 1)s − p_lo − p_hi + d(k − 1) + a + 1`` (a = ``output_padding``)."""
    p_lo, p_hi = (p, p) if isinstance(p, int) else p
    return (i_ - 1) * s - p_lo - p_hi + d * (k - 1) + a + 1


def output_padding_for(i: int, k: int, s: int = 1, p: int | tuple[int, int] = 0, d: int = 1) -> int:
    """Relationship 14's ``a``: the output padding that makes the transpose of a convolution
    of an input of size i give back size i, ``a = (i + p_lo + p_hi − d(k − 1) − 1) mod s``."""
    p_lo, p_hi = (p, p) if isinstance(p, int) else p
    return (i + p_lo + p_hi - d * (k - 1) - 1) % s


def same_padding(k: int, d: int = 1, s: int = 1) -> tuple[int, int]:
    """``padding="same"`` as torch: total ``d(k − 1)``, the odd one on the high side; for
    k odd and d = 1 this is Relationship 3. Strided "same" is rejected, as torch does."""
    if s != 1:
        raise ValueError(f"padding='same' is not supported for strided convolutions (stride={s}); "
                         f"give the padding as numbers")
    total = d * (k - 1)
    return total // 2, total - total // 2


def valid_padding(k: int, d: int = 1, s: int = 1) -> tuple[int, int]:
    """``padding="valid"``: no padding (Relationships 1 and 5)."""
    return 0, 0


# --------------------------------------------------- normalising torch arguments


def as_tuple(who: str, name: str, value: int | Sequence[int], n: int, *, minimum: int = 0) -> tuple[int, ...]:
    """``value`` as a tuple of n ints (an int is repeated), each at least ``minimum``."""
    t = (value,) * n if isinstance(value, int) else tuple(value)
    if len(t) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in t):
        raise ValueError(f"{who}: {name}={value!r}; expected an int or a tuple of {n} ints")
    if any(v < minimum for v in t):
        raise ValueError(f"{who}: {name}={value!r}; every entry must be >= {minimum}")
    return t


def padding_pairs(who: str, padding, kernel: Sequence[int], dilation: Sequence[int],
                  stride: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Per-axis ``(p_lo, p_hi)`` from ``"same"``, ``"valid"``, an int, a tuple of ints
    (one per axis, both sides) or a tuple of ``(lo, hi)`` pairs."""
    n = len(kernel)
    if isinstance(padding, str):
        rule = {"same": same_padding, "valid": valid_padding}.get(padding)
        if rule is None:
            raise ValueError(f"{who}: padding={padding!r}; expected 'same', 'valid', an int, "
                             f"{n} ints or {n} (lo, hi) pairs")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{who}: padding='same' is not supported for strided convolutions "
                             f"(stride={tuple(stride)}); give the padding as numbers")
        return tuple(rule(k, d) for k, d in zip(kernel, dilation))
    if isinstance(padding, int) and not isinstance(padding, bool):
        padding = (padding,) * n
    items = tuple(padding)
    if len(items) != n:
        raise ValueError(f"{who}: padding={padding!r} has {len(items)} entries; expected {n} "
                         f"(one per spatial axis), an int, 'same' or 'valid'")
    pairs = tuple((p, p) if isinstance(p, int) else tuple(p) for p in items)
    if not all(len(q) == 2 and all(isinstance(v, int) and v >= 0 for v in q) for q in pairs):
        raise ValueError(f"{who}: padding={padding!r}; expected ints >= 0 or (lo, hi) pairs of them")
    return pairs
