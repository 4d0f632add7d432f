"""zerotoml/layers/conv/windows.py (notes/cnn.md#convolution): padding, the window view and its
adjoint, the fold, derived by hand and checked against autograd."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotoml.layers.conv.arithmetic import conv_output_size, effective_kernel_size
from zerotoml.layers.conv.windows import fold, pad, window_view


@st.composite
def geometries(draw):
    """A padded input (2, 3, *spatial) just large enough, and per-axis kernel, stride, dilation."""
    n = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if n < 3 else 2)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    spatial = tuple(effective_kernel_size(k, d) + draw(st.integers(0, 3 if n < 3 else 1))
                    for k, d in zip(kernel, dilation))
    return (2, 3, *spatial), (kernel, stride, dilation), draw(st.integers(0, 999))


@settings(max_examples=40, deadline=None)
@given(c=geometries())
def test_the_window_view_reads_x_pad_at_s_i_plus_d_kappa(c):
    """x̂[..., i, κ] = x_pad[..., s·i + d·κ], entry by entry (1-d and the product over axes)."""
    shape, (kernel, stride, dilation), seed = c
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = window_view(x, kernel, stride, dilation)
    n = len(kernel)
    out = tuple(conv_output_size(P, k, s, 0, d) for P, k, s, d in zip(shape[2:], kernel, stride, dilation))
    assert v.shape == (*shape[:2], *out, *kernel)
    for i in torch.cartesian_prod(*(torch.arange(o) for o in out)).reshape(-1, n).tolist():
        for κ in torch.cartesian_prod(*(torch.arange(k) for k in kernel)).reshape(-1, n).tolist():
            at = tuple(s * a + d * q for s, a, d, q in zip(stride, i, dilation, κ))
            assert torch.equal(v[(..., *i, *κ)], x[(..., *at)])


@settings(max_examples=25, deadline=None)
@given(c=geometries())
def test_fold_is_autograds_vector_jacobian_product_of_the_window_view(c):
    """fold(g) = ∂<window_view(x), g>/∂x as autograd computes it through Tensor.unfold, and
    fold's own derivative (a second derivative of the view) is autograd's too."""
    shape, geometry, seed = c
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    v = window_view(x, *geometry)
    g = torch.randn(v.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    (vjp,) = torch.autograd.grad(v, x, g, create_graph=True)
    folded = fold(g, shape, *geometry)
    torch.testing.assert_close(folded, vjp, atol=1e-12, rtol=1e-12)
    # the adjoint identity: <window_view(x), g> = <x, fold(g)>
    torch.testing.assert_close((v * g).sum(), (x * folded).sum(), atol=1e-10, rtol=1e-10)
    # second derivative: ∂<vjp, u>/∂g by autograd of the view's backward against ∂<fold(g), u>/∂g
    u = torch.randn(shape, generator=gen, dtype=torch.float64)
    (autograd_again,) = torch.autograd.grad(vjp, g, u)
    (fold_again,) = torch.autograd.grad(folded, g, u)
    torch.testing.assert_close(fold_again, autograd_again, atol=1e-12, rtol=1e-12)


def test_pad_adds_zeros_then_crops():
    """Positive amounts pad with zeros (torch.nn.functional.pad's result), negative ones crop
    after the zeros are added, per side and per axis; ``value`` fills instead of 0."""
    x = torch.arange(12.0).reshape(1, 3, 4)
    torch.testing.assert_close(pad(x, ((1, 2),)), torch.nn.functional.pad(x, (1, 2)))
    torch.testing.assert_close(pad(x, ((1, 0), (0, 2))), torch.nn.functional.pad(x, (0, 2, 1, 0)))
    torch.testing.assert_close(pad(x, ((-1, 1), (2, -3))), torch.nn.functional.pad(x, (2, 0, 0, 1))[:, 1:, :-3])
    torch.testing.assert_close(pad(x, ((0, 0), (1, 0)), -torch.inf),
                               torch.nn.functional.pad(x, (1, 0), value=-torch.inf))
    assert pad(x, ((0, 0), (0, 0))) is x

