"""Plots people would rather look at than numbers: loss curves, image grids, returns.

Note: notes/training.md#plots.

Each helper builds a `matplotlib.figure.Figure` directly (no pyplot, so no global
figure registry and no display backend: it renders with Agg on a machine without
a screen), saves it as PNG when given a path, and returns the figure so that a
caller -- or a test -- can read back what was drawn
(``fig.axes[0].lines[0].get_xydata()``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from einops import rearrange

__all__ = ["loss_curves", "image_grid", "line_plot", "moving_average", "grid_image"]


def _figure(width: float = 7.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, format="png", bbox_inches="tight")
    os.replace(tmp, path)  # a reader never sees half a PNG


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each point (fewer at the start)."""
    if window < 1:
        raise ValueError(f"moving_average: window={window}; expected >= 1")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None, *,
                keys: Sequence[str] = ("loss", "val_loss"), log_y: bool = False,
                title: str | None = None, x: str = "step"):
    """One line per metric in ``keys`` (default train ``loss`` and ``val_loss``) against
    ``x``, from a history of records such as `zerotoml.train`'s metrics.jsonl; records
    without a key are skipped for that line. ``log_y`` puts the y axis on a log scale."""
    fig = _figure()
    ax = fig.add_subplot()
    drawn = 0
    for key in keys:
        pts = [(r[x], r[key]) for r in history if key in r and x in r and r[key] is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=key, marker="o" if len(pts) < 30 and key != keys[0] else None)
        drawn += 1
    if drawn == 0:
        raise ValueError(f"loss_curves: no record of the history has any of the keys {list(keys)} with {x!r}")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig


def grid_image(images: torch.Tensor, *, nrow: int | None = None, pad: int = 1,
               normalize: bool = True, layout: str = "auto") -> torch.Tensor:
    """The images ``(n, h, w)``, ``(n, c, h, w)`` or ``(n, h, w, c)`` (c in 1, 3, 4) tiled
    into one ``(H, W)`` or ``(H, W, c)`` array, ``nrow`` images per row, ``pad`` pixels
    apart; with ``normalize`` each image is scaled to [0, 1] by its own min and max.
    ``layout="auto"`` reads 4-d input as ``(n, c, h, w)`` when axis 1 has 1, 3 or 4
    entries, else as ``(n, h, w, c)``; ``"nchw"`` or ``"nhwc"`` say it outright."""
    x = torch.as_tensor(images).detach().cpu().to(torch.float64)
    if layout not in ("auto", "nchw", "nhwc"):
        raise ValueError(f"image_grid: layout={layout!r}; expected 'auto', 'nchw' or 'nhwc'")
    if x.dim() == 3:
        x = x[..., None]
    elif x.dim() == 4 and (layout == "nchw" or (layout == "auto" and x.shape[1] in (1, 3, 4))):
        # torch's layout wins a tie: (n, 1, 3, 3) is n one-channel 3x3 images (conv filters)
        x = rearrange(x, "n c h w -> n h w c")
    elif not (x.dim() == 4 and x.shape[-1] in (1, 3, 4)):
        raise ValueError(f"image_grid: `images` has shape {tuple(x.shape)}; expected (n, h, w), "
                         f"(n, c, h, w) or (n, h, w, c) with c in 1, 3, 4")
    n, h, w, c = x.shape
    if normalize:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    fill = torch.ones(rows * cols - n, h, w, c, dtype=x.dtype)  # blank (white) tiles
    x = torch.cat([x, fill])
    padded = torch.ones(rows * cols, h + pad, w + pad, c, dtype=x.dtype)  # white gutters
    padded[:, :h, :w] = x
    x = padded
    grid = rearrange(x, "(r k) h w c -> (r h) (k w) c", r=rows, k=cols)
    grid = grid[: grid.shape[0] - pad or None, : grid.shape[1] - pad or None]
    return grid[..., 0] if c == 1 else grid


def image_grid(images: torch.Tensor, path: str | os.PathLike | None = None, *, nrow: int | None = None,
               titles: Sequence[str] | None = None, cmap: str = "gray", normalize: bool = True,
               pad: int = 1, title: str | None = None):
    """Samples, reconstructions or filters as one tiled image (see `grid_image`); ``titles``
    are written under the grid in reading order."""
    grid = grid_image(images, nrow=nrow, pad=pad, normalize=normalize)
    fig = _figure(6.0, 6.0 * grid.shape[0] / max(grid.shape[1], 1) + (0.6 if title else 0.2))
    ax = fig.add_subplot()
    ax.imshow(grid.numpy(), cmap=cmap if grid.dim() == 2 else None, vmin=0.0 if normalize else None,
              vmax=1.0 if normalize else None, interpolation="nearest")
    ax.set_axis_off()
    if titles:
        ax.set_title(" | ".join(str(t) for t in titles), fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def line_plot(series: Mapping[str, Sequence[float]] | Sequence[float], path: str | os.PathLike | None = None, *,
              xs: Sequence[float] | None = None, smooth: int | None = None, xlabel: str = "episode",
              ylabel: str = "return", title: str | None = None, log_y: bool = False):
    """Lines for returns or any per-step values: ``series`` is one sequence or a dict
    name -> sequence; ``xs`` defaults to 0, 1, ...; ``smooth=k`` draws the k-point
    moving average on top of each (faint) raw line."""
    if not isinstance(series, Mapping):
        series = {ylabel: series}
    fig = _figure()
    ax = fig.add_subplot()
    for name, ys in series.items():
        ys = [float(v) for v in ys]
        x = list(xs) if xs is not None else list(range(len(ys)))
        if len(x) != len(ys):
            raise ValueError(f"line_plot: `xs` has {len(x)} values but series {name!r} has {len(ys)}")
        line = ax.plot(x, ys, label=name, alpha=0.35 if smooth else 1.0)[0]
        if smooth:
            ax.plot(x, moving_average(ys, smooth), color=line.get_color(), label=f"{name} (mean of {smooth})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig
