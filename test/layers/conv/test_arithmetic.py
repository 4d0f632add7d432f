"""Convolution arithmetic: zerotoml/layers/conv/arithmetic.py (notes/cnn.md#convolution-arithmetic).
Each relationship of Dumoulin & Visin (2016) against the shapes torch actually produces."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zerotoml.layers.conv import arithmetic as ca

small = st.integers(1, 12)
kern = st.integers(1, 6)
strides = st.integers(1, 4)
pads = st.integers(0, 4)
dils = st.integers(1, 3)


def torch_conv_size(i, k, s=1, p=(0, 0), d=1):
    """The output length torch gives: pad explicitly (any (lo, hi)), then an unpadded conv1d."""
    x = torch.constant_pad_nd(torch.zeros(1, 1, i), p)
    return F.conv1d(x, torch.zeros(1, 1, k), stride=s, dilation=d).shape[-1]


def torch_transposed_size(i_, k, s=1, p=0, d=1, a=0):
    return F.conv_transpose1d(torch.zeros(1, 1, i_), torch.zeros(1, 1, k), stride=s, padding=p,
                              output_padding=a, dilation=d).shape[-1]


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern)
def test_relationship_1_no_padding_unit_strides(i, k):
    assume(i >= k)
    assert ca.output_size_no_padding_unit_strides(i, k) == torch_conv_size(i, k)


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, p=pads)
def test_relationship_2_zero_padding_unit_strides(i, k, p):
    assume(i + 2 * p >= k)
    assert ca.output_size_unit_strides(i, k, p) == torch_conv_size(i, k, 1, (p, p))


@settings(max_examples=60, deadline=None)
@given(i=small, n=st.integers(0, 3))
def test_relationship_3_half_padding(i, n):
    k = 2 * n + 1
    p = ca.half_padding(k)
    assert torch_conv_size(i, k, 1, (p, p)) == i
    assert ca.same_padding(k) == (p, p)  # torch's "same" for an odd kernel is the paper's half padding


def test_relationship_3_needs_an_odd_kernel():
    with pytest.raises(ValueError, match="odd kernel"):
        ca.half_padding(4)


@settings(max_examples=60, deadline=None)
@given(i=small, k=kern)
def test_relationship_4_full_padding(i, k):
    p = ca.full_padding(k)
    assert torch_conv_size(i, k, 1, (p, p)) == i + (k - 1)


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, s=strides)
def test_relationship_5_no_padding_strides(i, k, s):
    assume(i >= k)
    assert ca.output_size_no_padding(i, k, s) == torch_conv_size(i, k, s)


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, s=strides, p=pads)
def test_relationship_6_padding_strides(i, k, s, p):
    assume(i + 2 * p >= k)
    assert ca.output_size_padding_strides(i, k, s, p) == torch_conv_size(i, k, s, (p, p))


@settings(max_examples=60, deadline=None)
@given(i=small, k=kern, s=strides)
def test_relationship_7_pooling(i, k, s):
    assume(i >= k)
    assert ca.pooling_output_size(i, k, s) == F.max_pool1d(torch.zeros(1, 1, i), k, s).shape[-1]
    assert ca.pooling_output_size(i, k, s) == F.avg_pool1d(torch.zeros(1, 1, i), k, s).shape[-1]


@settings(max_examples=60, deadline=None)
@given(i_=small, k=kern)
def test_relationships_8_10_11_unit_strides_transposed(i_, k):
    # 8: the transpose of (s = 1, p = 0) is a fully padded convolution
    assert ca.transposed_output_size_no_padding_unit_strides(i_, k) == torch_transposed_size(i_, k)
    assert torch_conv_size(i_, k, 1, (k - 1, k - 1)) == i_ + (k - 1)
    # 10: the transpose of half padding is half padding (k odd)
    if k % 2 == 1:
        assert ca.transposed_output_size_half_padding(i_, k) == torch_transposed_size(i_, k, 1, k // 2) == i_
    # 11: the transpose of full padding is an unpadded convolution
    if i_ > k - 1:
        assert ca.transposed_output_size_full_padding(i_, k) == torch_transposed_size(i_, k, 1, k - 1)


@settings(max_examples=80, deadline=None)
@given(i_=small, k=kern, p=pads)
def test_relationship_9_padding_unit_strides_transposed(i_, k, p):
    assume(i_ + (k - 1) - 2 * p >= 1)
    o_ = ca.transposed_output_size_unit_strides(i_, k, p)
    assert o_ == torch_transposed_size(i_, k, 1, p)
    # the equivalent direct convolution: same kernel, padding p' = k − p − 1
    p_ = ca.transposed_padding(k, p)
    if p_ >= 0:
        assert torch_conv_size(i_, k, 1, (p_, p_)) == o_


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, s=strides, p=pads)
def test_relationships_12_13_14_strided_transposed(i, k, s, p):
    """Each transpose takes the output size of its convolution back to i (the paper's setting)."""
    assume(i + 2 * p >= k)
    o = ca.output_size_padding_strides(i, k, s, p)
    a = (i + 2 * p - k) % s
    assume(ca.transposed_output_size(o, k, s, p, a) >= 1)
    assert ca.transposed_output_size(o, k, s, p, a) == torch_transposed_size(o, k, s, p, 1, a) == i  # 14
    if a == 0:
        assert ca.transposed_output_size_padding(o, k, s, p) == i  # 13
        if p == 0:
            assert ca.transposed_output_size_no_padding(o, k, s) == i  # 12
    # the equivalent direct convolution: the stretched input (o − 1)s + 1, padding p' = k − p − 1
    # on the low side and p' + a on the high side, unit strides
    p_ = ca.transposed_padding(k, p)
    stretched = (o - 1) * s + 1
    if p_ >= 0 and stretched + 2 * p_ + a >= k:
        assert torch_conv_size(stretched, k, 1, (p_, p_ + a)) == i


@settings(max_examples=100, deadline=None)
@given(i=small, k=kern, s=strides, p=pads, d=dils)
def test_relationship_15_dilation(i, k, s, p, d):
    assume(i + 2 * p >= ca.effective_kernel_size(k, d))
    assert ca.dilated_output_size(i, k, s, p, d) == torch_conv_size(i, k, s, (p, p), d)
    assert ca.dilated_output_size(i, k, s, p, 1) == ca.output_size_padding_strides(i, k, s, p)


@settings(max_examples=100, deadline=None)
@given(i=small, k=kern, s=strides, lo=pads, hi=pads, d=dils)
def test_conv_output_size_with_per_side_padding(i, k, s, lo, hi, d):
    assume(i + lo + hi >= ca.effective_kernel_size(k, d))
    assert ca.conv_output_size(i, k, s, (lo, hi), d) == torch_conv_size(i, k, s, (lo, hi), d)


@settings(max_examples=100, deadline=None)
@given(i_=small, k=kern, s=strides, p=pads, d=dils, a=st.integers(0, 3))
def test_conv_transpose_output_size(i_, k, s, p, d, a):
    assume(a < max(s, d))
    o_ = ca.conv_transpose_output_size(i_, k, s, p, d, a)
    assume(o_ >= 1)
    assert o_ == torch_transposed_size(i_, k, s, p, d, a)


@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, s=strides, lo=pads, hi=pads, d=dils)
def test_output_padding_for_gives_back_the_input_size(i, k, s, lo, hi, d):
    assume(i + lo + hi >= ca.effective_kernel_size(k, d))
    o = ca.conv_output_size(i, k, s, (lo, hi), d)
    a = ca.output_padding_for(i, k, s, (lo, hi), d)
    assert 0 <= a < s
    assert ca.conv_transpose_output_size(o, k, s, (lo, hi), d, a) == i


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@settings(max_examples=80, deadline=None)
@given(i=small, k=kern, d=dils, seed=st.integers(0, 99))
def test_same_padding_is_where_torch_puts_it(i, k, d, seed):
    """Values, not only sizes: an even total d(k − 1) puts the extra zero on the high side."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(1, 1, i, generator=g, dtype=torch.float64), torch.randn(1, 1, k, generator=g, dtype=torch.float64)
    lo, hi = ca.same_padding(k, d)
    ours = F.conv1d(torch.constant_pad_nd(x, (lo, hi)), w, dilation=d)
    torch.testing.assert_close(ours, F.conv1d(x, w, padding="same", dilation=d), atol=0, rtol=0)
    assert ca.valid_padding(k, d) == (0, 0)


def test_same_padding_with_stride_is_rejected_like_torch():
    with pytest.raises(RuntimeError, match="strided"):
        F.conv1d(torch.zeros(1, 1, 5), torch.zeros(1, 1, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="strided convolutions"):
        ca.same_padding(3, 1, 2)
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions \(stride=\(1, 2\)\)"):
        ca.padding_pairs("Conv", "same", (3, 3), (1, 1), (1, 2))


def test_padding_pairs_forms_and_errors():
    k, d, s = (3, 4), (1, 2), (1, 1)
    assert ca.padding_pairs("Conv", 2, k, d, s) == ((2, 2), (2, 2))
    assert ca.padding_pairs("Conv", (1, 0), k, d, s) == ((1, 1), (0, 0))
    assert ca.padding_pairs("Conv", ((1, 2), 3), k, d, s) == ((1, 2), (3, 3))
    assert ca.padding_pairs("Conv", "same", k, d, s) == ((1, 1), (3, 3))
    assert ca.padding_pairs("Conv", "valid", k, d, s) == ((0, 0), (0, 0))
    with pytest.raises(ValueError, match="padding='full'; expected 'same', 'valid'"):
        ca.padding_pairs("Conv", "full", k, d, s)
    with pytest.raises(ValueError, match="has 3 entries; expected 2"):
        ca.padding_pairs("Conv", (1, 1, 1), k, d, s)
    with pytest.raises(ValueError, match="ints >= 0"):
        ca.padding_pairs("Conv", (-1, 0), k, d, s)
    with pytest.raises(ValueError, match=r"stride=\(0, 1\); every entry must be >= 1"):
        ca.as_tuple("Conv", "stride", (0, 1), 2, minimum=1)
