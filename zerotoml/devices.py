"""Devices: pick one, describe it, wait for it. Note: notes/training.md#devices.

Everything in zerotoml takes ``device`` and ``dtype`` as arguments; this module only
turns the user's ``"auto"`` / ``"cuda"`` / ``"cuda:1"`` / ``"mps"`` / ``"cpu"`` into a
`torch.device`, refusing one that is not present with a message that says which are.
"""

from __future__ import annotations

import torch

__all__ = ["pick_device", "available_devices", "describe_device", "synchronize"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device types present on this machine, best first: cuda, mps, cpu."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found + ["cpu"]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> cuda if present, then mps, then cpu; anything else is
    checked to exist and returned as a `torch.device`."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a device name ({e}); use 'auto', "
                         f"'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: CUDA is not available here "
                             f"(available: {', '.join(available_devices())})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps" and not _mps_available():
        raise ValueError(f"device={device!r}: MPS is not available here "
                         f"(available: {', '.join(available_devices())})")
    return dev


def describe_device(device: torch.device) -> str:
    """A short human description, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (so a timing measures the work, not its launch)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
