"""Checkpoints that resume exactly: one folder per step, written atomically.

Note: notes/training.md#checkpoints.

``<run>/checkpoints/step-00000100/`` holds two files:

* ``tensors.safetensors`` -- every tensor: the model's under ``model.``, the
  optimizer's (moments, step counter ``t``) under ``optimizer.``, and the random
  number generators' states as uint8 tensors under ``rng.`` (torch CPU, each CUDA
  device, MPS);
* ``state.json`` -- everything else: the step, the model/optimizer/schedule type
  names and static configuration, the data iterator's position, Python's and
  NumPy's RNG states, the loop's own bookkeeping, and the size and sha256 of
  ``tensors.safetensors``.

A resumed run therefore continues with the same weights, optimizer state, learning
rate (the schedule is a pure function of the step), next batch and random numbers:
its losses are bit-identical to an uninterrupted run's. The folder is written under
a temporary name, each file fsynced, then renamed into place, so a kill at any
moment leaves either the whole checkpoint or none of it. Loading checks the hash,
the format, the model and optimizer types, static fields, names, shapes and dtypes,
and refuses anything else with a `CheckpointError` naming the file; it never
writes. No pickle anywhere. The generators' states are read and restored by
`zerotoml.rng` (re-exported here).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .rng import rng_state, set_rng_state
from .weights import CheckpointError, load_state_dict, read_safetensors, state_dict, static_config, type_name

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint", "list_checkpoints",
           "latest_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "zerotoml.checkpoint/1"
TENSORS, STATE = "tensors.safetensors", "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclasses.dataclass
class Checkpoint:
    """What `load_checkpoint` read: fresh copies of the model and optimizer, and the rest."""

    path: Path
    step: int
    model: Any
    optimizer: Any
    data_state: dict | None
    rng: dict[str, Any]  # pass to set_rng_state
    extra: dict[str, Any]


# ---------------------------------------------------------------------- write


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(obj: Any) -> dict[str, Any] | None:
    """Type name and static configuration of a struct (what `load_checkpoint` compares)."""
    if obj is None:
        return None
    return {"type": type_name(obj), "static": static_config(obj)}


def _cpu_tensors(prefix: str, obj: Any) -> dict[str, torch.Tensor]:
    out, seen = {}, set()
    for name, t in state_dict(obj).items():
        t = t.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # safetensors refuses shared or partial storage
        seen.add(key)
        out[f"{prefix}{name}"] = t
    return out


def save_checkpoint(root: str | os.PathLike, step: int, model: Any, optimizer: Any = None, *,
                    schedule: Any = None, data: Any = None, extra: dict[str, Any] | None = None,
                    keep: int | None = None) -> Path:
    """Write ``<root>/step-<step>/`` atomically and return its path; then, with ``keep``,
    delete all but the newest ``keep`` checkpoints in ``root``. Saves the current
    states of every RNG, so call it where a resumed run should pick up."""
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        tensors = _cpu_tensors("model.", model)
        if optimizer is not None:
            tensors.update(_cpu_tensors("optimizer.", optimizer))
        rng_tensors, rng_json = rng_state()
        tensors.update(rng_tensors)
        tpath = tmp / TENSORS
        save_file(tensors, str(tpath), metadata={"zerotoml.format": FORMAT, "zerotoml.step": str(step)})
        with open(tpath, "rb") as fh:
            os.fsync(fh.fileno())
        state = {
            "format": FORMAT,
            "step": int(step),
            "time": time.time(),
            "torch": torch.__version__,
            "model": _describe(model),
            "optimizer": _describe(optimizer),
            "schedule": _describe(schedule),
            "data": data.state() if data is not None else None,
            "rng": rng_json,
            "extra": extra or {},
            "tensors": {"file": TENSORS, "bytes": tpath.stat().st_size, "sha256": _sha256(tpath)},
        }
        with open(tmp / STATE, "w") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():  # a rerun of the same step: swap, never leave a half state
            old = root / f".old-step-{step:08d}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep is not None:
        for _, path in list_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(path, ignore_errors=True)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the complete checkpoints in ``root``, oldest first.
    Temporary folders of an interrupted write are not checkpoints and are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


# ----------------------------------------------------------------------- read


def _compare(what: str, saved: dict | None, ours: dict | None, where: str) -> None:
    if saved is None and ours is None:
        return
    if (saved is None) != (ours is None):
        raise CheckpointError(f"{where}: the checkpoint has {'no ' if saved is None else 'an '}{what}, "
                              f"this run has {'one' if saved is None else 'none'}")
    if saved["type"] != ours["type"]:
        raise CheckpointError(f"{where}: its {what} is a {saved['type']}, this run's {what} "
                              f"is a {ours['type']}")
    a, b = saved["static"], ours["static"]
    diffs = [f"{k}: {a.get(k, '(absent)')} in checkpoint, {b.get(k, '(absent)')} here"
             for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        raise CheckpointError(f"{where}: the {what} was configured differently:\n  " + "\n  ".join(diffs))


def load_checkpoint(path: str | os.PathLike, model: Any, optimizer: Any = None, *,
                    schedule: Any = None, data: Any = None) -> Checkpoint:
    """Read the checkpoint folder ``path`` into copies of the templates ``model`` and
    ``optimizer`` (their types, configuration and devices), checking everything.

    Refuses with `CheckpointError` (naming the file and the problem): a missing or
    unparsable file, a hash or size mismatch (truncated or corrupted), another
    model/optimizer/schedule type or configuration, other tensor names, shapes or
    dtypes, and a data state for other data. The templates and the files are
    left untouched; restore the RNGs with ``set_rng_state(ckpt.rng)``."""
    folder = Path(path)
    spath, tpath = folder / STATE, folder / TENSORS
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} is not a folder")
    if not spath.exists():
        raise CheckpointError(f"checkpoint {str(spath)!r} is missing: {str(folder)!r} is incomplete "
                              f"or not a zerotoml checkpoint")
    try:
        state = json.loads(spath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(spath)!r} is not valid JSON (truncated or corrupt?): {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {str(spath)!r} has format {got!r}, expected {FORMAT!r}")
    try:
        step, info = int(state["step"]), state["tensors"]
        want_bytes, want_sha = int(info["bytes"]), str(info["sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(spath)!r} lacks a field or has a bad one: {e!r}") from None
    if not tpath.exists():
        raise CheckpointError(f"checkpoint {str(tpath)!r} is missing")
    size = tpath.stat().st_size
    if size != want_bytes:
        raise CheckpointError(f"checkpoint {str(tpath)!r} has {size} bytes, {STATE} recorded {want_bytes} "
                              f"(truncated or replaced)")
    sha = _sha256(tpath)
    if sha != want_sha:
        raise CheckpointError(f"checkpoint {str(tpath)!r} is corrupt: sha256 {sha[:16]}... differs from "
                              f"the {want_sha[:16]}... recorded in {STATE}")
    tensors, _ = read_safetensors(str(tpath))
    where = f"checkpoint {str(folder)!r}"
    _compare("model", state.get("model"), _describe(model), where)
    _compare("optimizer", state.get("optimizer"), _describe(optimizer), where)
    _compare("schedule", state.get("schedule"), _describe(schedule), where)

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    source = f"checkpoint {str(tpath)!r}"
    new_model = load_state_dict(model, part("model."), source=source)
    new_opt = None if optimizer is None else load_state_dict(optimizer, part("optimizer."), source=source)
    data_state = state.get("data")
    if data is not None:
        if data_state is None:
            raise CheckpointError(f"{where} has no data iterator state, but this run has data to position")
        try:
            copy.copy(data).load_state(data_state)  # validate on a copy; the caller applies it
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(spath)!r}: data iterator does not fit: {e}") from None
    if "rng.torch" not in tensors:
        raise CheckpointError(f"{source} has no rng.torch tensor")
    rng = {"tensors": {k: v for k, v in tensors.items() if k.startswith("rng.")}, "json": state.get("rng", {})}
    return Checkpoint(folder, step, new_model, new_opt, data_state, rng, state.get("extra", {}))
