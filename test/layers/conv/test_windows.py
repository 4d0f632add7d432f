"""zerotoml/layers/windows.py (notes/cnn.md#convolution): padding, the window view and its
adjoint, the fold."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import zerotoml.layers.windows as windows_module
from zerotoml.layers.conv_arithmetic import effective_kernel_size
from zerotoml.layers.windows import fold, pad, window_view, windows


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), k=st.integers(1, 3), s=st.integers(1, 3), d=st.integers(1, 2),
       extra=st.integers(0, 3), seed=st.integers(0, 999))
def test_fold_is_the_adjoint_of_the_window_view(n, k, s, d, extra, seed):
    """<window_view(x), g> = <x, fold(g)>, and the fold equals torch's own as_strided
    backward and is the backward of `windows` (which the pooling layers use)."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, *(effective_kernel_size(k, d) + extra,) * n)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    geometry = ((k,) * n, (s,) * n, (d,) * n)
    v = window_view(x, *geometry)
    gv = torch.randn(v.shape, generator=g, dtype=torch.float64)
    folded = fold(gv, shape, *geometry)
    torch.testing.assert_close((v * gv).sum(), (x * folded).sum(), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(torch.autograd.grad(v, x, gv)[0], folded, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(windows(x, *geometry), x, gv)[0], folded, atol=1e-12, rtol=1e-12)


def test_pad_adds_zeros_then_crops():
    """Positive amounts pad with zeros (torch.nn.functional.pad's result), negative ones crop
    after the zeros are added, per side and per axis."""
    x = torch.arange(12.0).reshape(1, 3, 4)
    torch.testing.assert_close(pad(x, ((1, 2),)), torch.nn.functional.pad(x, (1, 2)))
    torch.testing.assert_close(pad(x, ((1, 0), (0, 2))), torch.nn.functional.pad(x, (0, 2, 1, 0)))
    torch.testing.assert_close(pad(x, ((-1, 1), (2, -3))), torch.nn.functional.pad(x, (2, 0, 0, 1))[:, 1:, :-3])


def test_spare_window_matrices_are_bounded(monkeypatch):
    monkeypatch.setattr(windows_module, "SPARE_BYTES", 1000)
    windows_module.SPARE.clear()
    windows_module.spare_again(torch.zeros(100, dtype=torch.float64))  # 800 bytes: kept
    windows_module.spare_again(torch.zeros(100, dtype=torch.float64))  # 1600 in all: not
    assert [len(v) for v in windows_module.SPARE.values()] == [1]
    windows_module.SPARE.clear()
