"""The shape checker: one jaxtyping memo per call for fields, arguments and result.

Note: notes/dispatch.md#why-not-bare-dispatch-on-jaxtyping-types.

`checked` wraps a method's body when shape checks are on (``ZEROTOML_CHECKS``, see
`zerotoml.shapes`). In one fresh jaxtyping memo it checks, in this order, the
annotated tensor fields of every dataclass argument, the annotated arguments
(keyword-only options too) and the return value, so ``Linear.W: "d_in d_out"`` is
tied to ``x: "*batch d_in"``; it also checks that the floating tensors of a call
share one dtype and all its tensors one device. A failure raises a `CheckError`
that names the call, the argument, what was expected, what came and what bound the
sizes. `zerotoml.generic.method` decides when to wrap; this module only checks.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Callable

import torch
from beartype import BeartypeConf
from beartype.door import is_bearable
from jaxtyping import jaxtyped

from .shapes import is_array_hint

__all__ = ["CheckError", "ShapeError", "DTypeError", "DeviceError", "checked"]


class CheckError(TypeError):
    """A value did not match its annotation (shape, dtype category or type)."""


class ShapeError(CheckError):
    """A tensor's shape did not match its jaxtyping annotation."""


class DTypeError(CheckError):
    """Floating tensors of one call do not share one dtype."""


class DeviceError(CheckError):
    """Tensors of one call do not live on one device."""


def type_label(t: Any) -> str:
    """A type's name as messages show it (``Linear``, ``Tensor``)."""
    return getattr(t, "__name__", None) or repr(t)


def call_name(name: str, args: tuple) -> str:
    """``forward(Linear, Tensor)``: a call as messages show it, by argument types."""
    return f"{name}({', '.join(type(a).__name__ for a in args)})"


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        shape = ", ".join(str(s) for s in value.shape)
        return f"{dtype}[{shape}] on {value.device}"
    return type(value).__name__


def _hint_name(hint: Any) -> str:
    if is_array_hint(hint):
        dtype = hint.__name__.split("[", 1)[0].removeprefix("jaxtyping.")
        return f"{dtype}[{type_label(hint.array_type)}, {hint.dim_str!r}]"
    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_hint_name(a) for a in args)
    if args:
        return f"{type_label(origin)}[{', '.join(_hint_name(a) for a in args)}]"
    return type_label(hint)


def _contains_array(hint: Any) -> bool:
    if is_array_hint(hint):
        return True
    return any(_contains_array(a) for a in typing.get_args(hint))


_field_hint_cache: dict[type, tuple[tuple[str, Any], ...]] = {}


def _field_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """The annotated tensor fields of a dataclass type, cached per type."""
    try:
        return _field_hint_cache[cls]
    except KeyError:
        pass
    out: tuple[tuple[str, Any], ...] = ()
    if dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # unresolvable forward references: check nothing
            hints = {}
        out = tuple(
            (f.name, hints[f.name])
            for f in dataclasses.fields(cls)
            if f.name in hints and _contains_array(hints[f.name])
        )
    _field_hint_cache[cls] = out
    return out


def _bindings() -> str:
    try:
        from jaxtyping._storage import get_shape_memo

        single, variadic, _, _ = get_shape_memo()
        pieces = [f"{k}={v}" for k, v in single.items() if not k.startswith("~")]
        pieces += [f"*{k}={tuple(v[1])}" for k, v in variadic.items() if not k.startswith("~")]
        return ", ".join(pieces)
    except Exception:  # private API moved: the message loses one line, nothing else
        return ""


def _fail(call: str, where: str, hint: Any, value: Any, seen: list[tuple[str, Any, Any]]):
    lines = [f"{call}: {where} expected {_hint_name(hint)}, got {_describe(value)}."]
    bound = _bindings()
    if bound:
        lines.append(f"Sizes bound so far: {bound}")
    if seen:
        lines.append("Bound by:")
        lines += [f"  {w}: {_hint_name(h)} = {_describe(v)}" for w, h, v in seen]
    if isinstance(value, torch.Tensor) and is_array_hint(hint):
        if str(value.dtype).removeprefix("torch.") not in hint.dtypes:
            lines.append(f"The dtype {value.dtype} is not one of {_hint_name(hint).split('[')[0]}.")
    raise ShapeError("\n".join(lines))


_CONF = BeartypeConf(is_pep484_tower=True)  # an int is a float, a float is a complex


def _check(value: Any, hint: Any) -> bool:
    if is_array_hint(hint):
        return isinstance(value, hint)
    return is_bearable(value, hint, conf=_CONF)


def _consistency(call: str, tensors: list[tuple[str, torch.Tensor]]) -> None:
    """Floating tensors share a dtype; all tensors share a device (0-dim CPU excepted)."""
    if len(tensors) < 2 or torch.is_autocast_enabled():
        return
    first: dict[str, tuple[str, torch.Tensor]] = {}  # "dtype" / "device": the tensor others must match
    for where, t in tensors:
        if t.is_floating_point() or t.is_complex():
            where0, t0 = first.setdefault("dtype", (where, t))
            if t.dtype != t0.dtype:
                raise DTypeError(f"{call}: {where} has dtype {t.dtype} but {where0} has {t0.dtype}; convert "
                                 f"one (zerotoml.to(model, dtype=...) or x.to(dtype)).")
        if t.dim() == 0 and t.device.type == "cpu":
            continue
        where0, t0 = first.setdefault("device", (where, t))
        if t.device != t0.device:
            raise DeviceError(f"{call}: {where} is on {t.device} but {where0} is on {t0.device}; move one "
                              f"(zerotoml.to(model, device=...)).")


def checked(f: Callable, name: str, sig: inspect.Signature, hints: dict[str, Any]) -> Callable:
    """Wrap ``f`` so that one jaxtyping memo checks fields, arguments and result."""
    ret_hint = hints.get("return")
    params = [
        (p.name, hints[p.name], p.kind) for p in sig.parameters.values() if p.name in hints
    ]

    def run_checked(*args, **kwargs):
        __tracebackhide__ = True
        call = call_name(name, args)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{call}: {e}") from None
        arguments = bound.arguments
        seen: list[tuple[str, Any, Any]] = []
        tensors: list[tuple[str, torch.Tensor]] = []
        with jaxtyped("context"):
            # 1. the annotated tensor fields of dataclass arguments
            for pname, value in arguments.items():
                for fname, fhint in _field_hints(type(value)):
                    fvalue = getattr(value, fname)
                    if fvalue is None:
                        continue
                    where = f"{type(value).__name__}.{fname} (argument `{pname}`)"
                    if not _check(fvalue, fhint):
                        _fail(call, where, fhint, fvalue, seen)
                    if isinstance(fvalue, torch.Tensor):
                        seen.append((where, fhint, fvalue))
                        tensors.append((where, fvalue))
            # 2. the annotated arguments
            for pname, hint, kind in params:
                if pname not in arguments:
                    continue
                value = arguments[pname]
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    items = [(f"argument `{pname}[{i}]`", v) for i, v in enumerate(value)]
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    items = [(f"argument `{k}`", v) for k, v in value.items()]
                else:
                    items = [(f"argument `{pname}`", value)]
                for where, v in items:
                    if not _check(v, hint):
                        _fail(call, where, hint, v, seen)
                    if isinstance(v, torch.Tensor):
                        seen.append((where, hint, v))
                        tensors.append((where, v))
            _consistency(call, tensors)
            out = f(*args, **kwargs)
            # 3. the return value, in the same memo
            if ret_hint is not None and not _check(out, ret_hint):
                _fail(call, "return value", ret_hint, out, seen)
        return out

    return run_checked
