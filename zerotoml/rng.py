"""The states of every random number generator, saved with a checkpoint and restored on resume.

Note: notes/training.md#checkpoints.

`rng_state` returns torch's CPU generator, each initialised CUDA device's and MPS's as
uint8 tensors (what a checkpoint puts under ``rng.`` in its safetensors file), and
Python's and NumPy's global generators as JSON-able lists (its state.json).
`set_rng_state` puts them all back, so a resumed run draws the same dropout masks
and shuffles as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import torch

__all__ = ["rng_state", "set_rng_state"]


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The states of every random number generator: (tensors, JSON-able rest)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            tensors[f"rng.cuda.{i}"] = torch.cuda.get_rng_state(i)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        tensors["rng.mps"] = torch.mps.get_rng_state()
    v, internal, gauss = random.getstate()
    rest: dict[str, Any] = {"python": [v, list(internal), gauss]}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        rest["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:  # numpy is optional for the loop
        pass
    return tensors, rest


def set_rng_state(rng: dict[str, Any]) -> None:
    """Restore the generators saved by `rng_state` (``{"tensors": ..., "json": ...}``)."""
    tensors, rest = rng["tensors"], rng["json"]
    torch.set_rng_state(tensors["rng.torch"])
    for name, t in tensors.items():
        if name.startswith("rng.cuda.") and torch.cuda.is_available():
            i = int(name.rsplit(".", 1)[1])
            if i < torch.cuda.device_count():
                torch.cuda.set_rng_state(t, i)
        elif name == "rng.mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            torch.mps.set_rng_state(t)
    if "python" in rest:
        v, internal, gauss = rest["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in rest:
        import numpy as np

        name, keys, pos, has_gauss, cached = rest["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
