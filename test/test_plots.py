"""Plots: zerotoml/plots.py (notes/training.md#plots)."""

import numpy as np
import pytest
import torch

from zerotoml.plots import grid_image, image_grid, line_plot, loss_curves, moving_average

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=5_000):
    raw = path.read_bytes()
    assert raw[:8] == PNG and len(raw) > min_bytes, (raw[:8], len(raw))


def test_loss_curves_draw_the_history(tmp_path):
    history = [{"kind": "train", "step": s, "loss": 2.0 / s} for s in range(1, 51)]
    history += [{"kind": "eval", "step": s, "val_loss": 2.5 / s} for s in (10, 20, 30, 40, 50)]
    fig = loss_curves(history, tmp_path / "curve.png", log_y=True, title="t")
    assert_png(tmp_path / "curve.png")
    train, val = fig.axes[0].lines
    assert train.get_label() == "loss" and val.get_label() == "val_loss"
    np.testing.assert_array_equal(train.get_xydata(), [[s, 2.0 / s] for s in range(1, 51)])
    np.testing.assert_array_equal(val.get_xydata(), [[s, 2.5 / s] for s in (10, 20, 30, 40, 50)])
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match=r"no record of the history has any of the keys \['acc'\]"):
        loss_curves(history, keys=["acc"])


def test_grid_image_tiles_in_reading_order():
    images = torch.stack([torch.full((2, 3), float(i)) for i in range(5)])
    grid = grid_image(images, nrow=3, pad=1, normalize=False)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2)
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[0, 8] == 2 and grid[3, 0] == 3 and grid[3, 4] == 4
    assert grid[2, 0] == 1.0 and grid[0, 3] == 1.0  # white gutters
    assert (grid[3:, 8:] == 1.0).all()  # the missing sixth tile is blank
    rgb = grid_image(torch.rand(4, 3, 5, 5), nrow=2, pad=0)
    assert rgb.shape == (10, 10, 3) and rgb.min() >= 0 and rgb.max() <= 1
    with pytest.raises(ValueError, match=r"`images` has shape \(2, 5\)"):
        grid_image(torch.rand(2, 5))


def test_image_grid_png_shows_the_grid(tmp_path):
    images = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fig = image_grid(images, tmp_path / "grid.png", title="samples")
    assert_png(tmp_path / "grid.png", min_bytes=2_000)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), grid_image(images).numpy())


def test_line_plot_with_moving_average(tmp_path):
    returns = [float(i % 7) for i in range(40)]
    fig = line_plot({"return": returns}, tmp_path / "returns.png", smooth=5)
    assert_png(tmp_path / "returns.png")
    raw, smooth = fig.axes[0].lines
    np.testing.assert_array_equal(raw.get_ydata(), returns)
    np.testing.assert_allclose(smooth.get_ydata(), moving_average(returns, 5))
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError, match="`xs` has 3 values but series 'return' has 40"):
        line_plot({"return": returns}, xs=[1, 2, 3])


def test_grid_reads_one_channel_filters_channels_first():
    from zerotoml.plots import grid_image

    filters = torch.arange(2 * 1 * 3 * 3, dtype=torch.float64).reshape(2, 1, 3, 3)
    grid = grid_image(filters, nrow=2, pad=1, normalize=False)
    assert grid.shape == (3, 7)  # two 3x3 grey tiles side by side, one gutter column
    assert torch.equal(grid[:, :3], filters[0, 0]) and torch.equal(grid[:, 4:], filters[1, 0])
    nhwc = grid_image(filters.reshape(2, 3, 3, 1), layout="nhwc", normalize=False)
    assert nhwc.shape == (3, 7)
