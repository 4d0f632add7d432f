"""Saving and loading models with safetensors. Note: notes/dispatch.md#the-pieces

A model (any `struct`) is saved as its tensors by dotted name, plus metadata that
records its type and static fields, so that `load` refuses, naming every
mismatch, a checkpoint of another model, another configuration, other shapes or
dtypes, or a file that is not a readable safetensors file. Writes are atomic
(write to a temporary name, fsync, rename). No pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, TypeVar

import torch

from .tree import _children, is_struct, map_tensors, named_tensors

__all__ = [
    "CheckpointError",
    "save",
    "load",
    "state_dict",
    "load_state_dict",
    "read_safetensors",
    "static_config",
    "type_name",
]

T = TypeVar("T")

class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that does not fit the model."""


def state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Every tensor, parameters and buffers, by dotted name."""
    return {n: t for n, t, _ in named_tensors(model)}


def type_name(obj: Any) -> str:
    """The qualified name of ``obj``'s type, as recorded in checkpoints."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _stable_repr(value: Any) -> str:
    """repr without memory addresses: functions and classes by their qualified name."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_stable_repr(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def static_config(obj: Any, prefix: str = "") -> dict[str, str]:
    """Static fields by dotted name, as stable repr strings (recorded by `save`, compared by `load`)."""
    out: dict[str, str] = {}
    if is_struct(obj):
        out[prefix or "."] = type(obj).__qualname__
        children = {n for n, _, _ in _children(obj)}
        for f in dataclasses.fields(obj):
            name = f"{prefix}.{f.name}" if prefix else f.name
            value = getattr(obj, f.name)
            if f.name in children:
                out.update(static_config(value, name))
            elif f.name != "training":
                out[name] = _stable_repr(value)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(static_config(v, f"{prefix}.{i}" if prefix else str(i)))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(static_config(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def save(model: Any, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> None:
    """Write every tensor of ``model`` to a safetensors file, atomically (write, then rename).

    The file's metadata records the model type and its static fields, so that
    `load` can refuse a checkpoint of another model."""
    from safetensors.torch import save_file

    tensors = {n: t.detach().contiguous().cpu() for n, t in state_dict(model).items()}
    meta = {
        "zerotoml.format": "1",
        "zerotoml.type": type_name(model),
        "zerotoml.static": json.dumps(static_config(model), sort_keys=True),
    }
    meta.update(metadata or {})
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; `CheckpointError` naming the file
    when it is missing or not readable (corrupt, truncated)."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises several types for corrupt files
        size = os.path.getsize(path)
        raise CheckpointError(
            f"checkpoint {path!r} ({size} bytes) is not a readable safetensors file: {e}"
        ) from None
    return tensors, meta


def load_state_dict(model: T, tensors: dict[str, torch.Tensor], *, source: str = "state dict") -> T:
    """A copy of ``model`` whose tensors are taken from ``tensors`` by dotted name.
    Names, shapes and dtypes must match exactly; every mismatch is listed."""
    expected = state_dict(model)
    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    for name in sorted(set(expected) & set(tensors)):
        e, g = expected[name], tensors[name]
        if tuple(e.shape) != tuple(g.shape):
            problems.append(f"{name}: shape {tuple(g.shape)} in {source}, model expects {tuple(e.shape)}")
        elif e.dtype != g.dtype:
            problems.append(f"{name}: dtype {g.dtype} in {source}, model expects {e.dtype}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__qualname__}:\n  " + "\n  ".join(problems))

    def take(t: torch.Tensor, _kind: str, names=iter(expected)) -> torch.Tensor:
        return tensors[next(names)].to(device=t.device)

    return map_tensors(take, model)


def load(model: T, path: str | os.PathLike) -> T:
    """A copy of ``model`` (the template: its type, sizes, device) with the tensors of
    the checkpoint at ``path``. Refuses, with every mismatch named, a file that is
    not a zerotoml checkpoint, belongs to another model type, or whose static
    fields, names, shapes or dtypes differ. The template is not modified."""
    path = os.fspath(path)
    tensors, meta = read_safetensors(path)
    source = f"checkpoint {path!r}"
    if "zerotoml.type" not in meta:
        raise CheckpointError(f"{source} has no zerotoml metadata; it was not written by zerotoml.save")
    if meta["zerotoml.type"] != type_name(model):
        raise CheckpointError(
            f"{source} holds a {meta['zerotoml.type']}, but the model is a {type_name(model)}"
        )
    try:
        saved_static = json.loads(meta.get("zerotoml.static", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: corrupt metadata ({e})") from None
    ours = static_config(model)
    diffs = [
        f"{k}: {saved_static.get(k, '(absent)')} in checkpoint, model has {ours.get(k, '(absent)')}"
        for k in sorted(set(saved_static) | set(ours))
        if saved_static.get(k) != ours.get(k)
    ]
    if diffs:
        raise CheckpointError(f"{source} was saved from a differently configured model:\n  " + "\n  ".join(diffs))
    return load_state_dict(model, tensors, source=source)
