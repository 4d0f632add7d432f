"""Dataclasses as pytrees: parameters, devices, gradients, saving and loading.

Note: notes/dispatch.md#trees-parameters-buffers-and-static-fields.

A layer, model or optimizer is a dataclass decorated with `struct`. Its fields are
of three kinds:

* **parameters** -- tensors (or structs, or lists/tuples/dicts of them) that are
  trained: ``W: Float[Tensor, "d_in d_out"]``;
* **buffers** -- tensors that are state but not trained (BatchNorm running
  statistics, optimizer moments): declared with ``field = buffer()``; `params`
  and `grad` skip them, `to`, `save` and `load` keep them;
* **static** -- everything else (sizes, ``eps``, ``training``): part of the tree's
  structure, not a leaf.

Whether a field holds tensors is read from its annotation (cached per class) and,
for ``Any``-like annotations, from its value. `struct` also registers the class
with ``torch.utils._pytree`` so torch.func, torch.compile and torch.export see
models as trees. Every function here is written on one traversal, `_walk`, so no
code per model is needed for any of them.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.utils._pytree as pytree

from .shapes import strip

__all__ = ["struct", "buffer", "static", "is_struct", "named_tensors", "params", "named_params", "buffers",
           "param_count", "replace_params", "map_tensors", "to", "grad", "value_and_grad", "set_training"]

T = TypeVar("T")

_KIND = "zerotoml.kind"
_STRUCTS: set[type] = set()


def buffer(**kwargs) -> Any:
    """A tensor field that is state but not trained (running statistics, moments)."""
    return dataclasses.field(metadata={_KIND: "buffer"}, **kwargs)


def static(**kwargs) -> Any:
    """A field that is structure, never a leaf, whatever its value."""
    return dataclasses.field(metadata={_KIND: "static"}, **kwargs)


def is_struct(x: Any) -> bool:
    return type(x) in _STRUCTS


# ------------------------------------------------------------ field classification

_PARAM, _BUFFER, _STATIC, _BY_VALUE = "param", "buffer", "static", "by_value"


def _hint_holds_tensors(hint: Any) -> bool | None:
    """True/False from the annotation alone; None when only the value can tell."""
    hint = strip(hint)
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return None
    if hint is torch.Tensor or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):  # structs too
        return True
    if args := typing.get_args(hint):
        found = {_hint_holds_tensors(a) for a in args if a is not type(None) and a is not Ellipsis}
        return True if True in found else None if None in found else False
    if isinstance(hint, type) and issubclass(hint, (list, tuple, dict)):
        return None
    return False


@functools.cache
def _field_kinds(cls: type) -> tuple[tuple[str, str], ...]:
    """``(name, kind)`` of every field of a struct class, from metadata or annotation."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        hints = {}
    kinds = []
    for f in dataclasses.fields(cls):
        kind = f.metadata.get(_KIND)
        if kind is None:
            holds = _hint_holds_tensors(hints.get(f.name, Any))
            kind = _PARAM if holds else (_BY_VALUE if holds is None else _STATIC)
        kinds.append((f.name, kind))
    return tuple(kinds)


@functools.cache
def _live_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """`_field_kinds` without the static fields: what a traversal visits."""
    return tuple((n, k) for n, k in _field_kinds(cls) if k != _STATIC)


def _value_holds_tensors(v: Any) -> bool:
    if isinstance(v, torch.Tensor) or is_struct(v):
        return True
    if isinstance(v, (list, tuple)):
        return any(_value_holds_tensors(x) for x in v)
    if isinstance(v, dict):
        return any(_value_holds_tensors(x) for x in v.values())
    return False


def _children(obj: Any) -> Iterator[tuple[str, str, Any]]:
    """(name, kind, value) for the fields of a struct that hold tensors."""
    for name, kind in _live_fields(type(obj)):
        value = getattr(obj, name)
        if kind == _BY_VALUE:
            if not _value_holds_tensors(value):
                continue
            kind = _PARAM
        yield name, kind, value


# ----------------------------------------------------------------------- struct


def _flatten(obj):
    names, values, statics = [], [], []
    for name, kind in _field_kinds(type(obj)):
        value = getattr(obj, name)
        if kind == _BY_VALUE:
            kind = _PARAM if _value_holds_tensors(value) else _STATIC
        if kind == _STATIC or value is None:  # an absent tensor (no bias) is structure
            statics.append((name, value))
        else:
            names.append(name)
            values.append(value)
    return values, (type(obj), tuple(names), tuple(statics))


def _unflatten(values, context):
    cls, names, statics = context
    obj = object.__new__(cls)
    for name, value in (*statics, *zip(names, values)):
        object.__setattr__(obj, name, value)
    return obj


def _flatten_with_keys(obj):
    values, context = _flatten(obj)
    return [(pytree.GetAttrKey(n), v) for n, v in zip(context[1], values)], context


def struct(cls: type[T] | None = None, **dataclass_kwargs) -> type[T]:
    """Make ``cls`` a dataclass (if it is not one) and register it as a pytree."""
    if cls is None:
        return lambda c: struct(c, **dataclass_kwargs)
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
        cls = dataclasses.dataclass(cls, **dataclass_kwargs)
    if cls not in _STRUCTS:
        pytree.register_pytree_node(cls, _flatten, _unflatten, flatten_with_keys_fn=_flatten_with_keys,
                                    serialized_type_name=f"{cls.__module__}.{cls.__qualname__}")
        _STRUCTS.add(cls)
    return cls


# ------------------------------------------------------------------- traversal


def _walk(obj: Any, leaf: Callable[[torch.Tensor, str, str | None], Any], *, kind: str = _PARAM,
          path: str | None = None, only: str | None = None, build: bool = True,
          node: Callable[[Any], None] | None = None) -> Any:
    """The one traversal every function below is written on: depth first, in field order,
    through structs (their fields that hold tensors), lists, tuples and dicts.

    Calls ``leaf(tensor, kind, name)`` on every tensor of kind ``only`` (all when None):
    ``kind`` is "buffer" below a buffer field, else "param"; ``name`` is dotted, below
    ``path`` (None when ``path`` is None: no names are built). With ``build``, returns a copy
    of ``obj`` holding what ``leaf`` returned in place of those tensors, static fields
    shared, ``node(copy)`` called on each struct's copy; without, it only visits."""
    skip = _BUFFER if (only == _PARAM and not build) else None  # no parameter below a buffer field

    def go(obj: Any, kind: str, at: str | None) -> Any:
        t = type(obj)
        if t in _STRUCTS:  # the loop of `_children`, inlined
            new = None
            if build:
                new = object.__new__(t)
                new.__dict__.update(obj.__dict__)
                if node is not None:
                    node(new)
            for name, k in _live_fields(t):
                if k == skip:
                    continue
                value = getattr(obj, name)
                if k == _BY_VALUE and not _value_holds_tensors(value):
                    continue
                below = None if at is None else f"{at}.{name}" if at else name
                out = go(value, _BUFFER if k == _BUFFER else kind, below)
                if build:
                    object.__setattr__(new, name, out)
            return new
        if isinstance(obj, torch.Tensor):
            return leaf(obj, kind, at) if (only is None or only == kind) else obj
        if isinstance(obj, (list, tuple)):
            vals = [go(v, kind, None if at is None else f"{at}.{i}" if at else str(i)) for i, v in enumerate(obj)]
            if not build or isinstance(obj, list):
                return vals
            return t(*vals) if hasattr(obj, "_fields") else tuple(vals)
        if isinstance(obj, dict):
            return {key: go(v, kind, None if at is None else f"{at}.{key}" if at else str(key))
                    for key, v in obj.items()}
        return obj

    return go(obj, kind, path)


def named_tensors(obj: Any, prefix: str = "", *, kind: str | None = None) -> Iterator[tuple[str, Any, str]]:
    """Yield ``(dotted name, tensor, "param" | "buffer")`` for every tensor leaf."""
    found: list[tuple[str, Any, str]] = []
    _walk(obj, lambda t, k, name: found.append((name, t, k)), kind=kind or _PARAM, path=prefix, build=False)
    yield from found


def params(model: Any) -> list[torch.Tensor]:
    """The trained tensors of ``model``, in a fixed order (field order, depth first)."""
    found: list[torch.Tensor] = []
    _walk(model, lambda t, k, name: found.append(t), only=_PARAM, build=False)
    return found


def named_params(model: Any) -> dict[str, torch.Tensor]:
    return {n: t for n, t, k in named_tensors(model) if k == _PARAM}


def buffers(model: Any) -> dict[str, torch.Tensor]:
    return {n: t for n, t, k in named_tensors(model) if k == _BUFFER}


def param_count(model: Any) -> int:
    """The number of trained scalars."""
    return sum(t.numel() for t in params(model))


def map_tensors(fn: Callable[[torch.Tensor, str], Any], obj: Any, *, kind: str | None = None) -> Any:
    """A copy of ``obj`` with every tensor leaf ``t`` of ``kind`` (or every leaf)
    replaced by ``fn(t, leaf_kind)``. Structure and static fields are shared."""
    return _walk(obj, lambda t, k, name: fn(t, k), only=kind)


def replace_params(model: T, new: list[Any]) -> T:
    """A copy of ``model`` whose parameters are ``new`` (in `params` order)."""
    it = iter(new)
    out = map_tensors(lambda t, k: next(it), model, kind=_PARAM)
    rest = list(it)
    if rest:
        raise ValueError(f"replace_params: got {len(rest)} more values than the model has parameters")
    return out


def to(model: T, device: Any = None, dtype: torch.dtype | None = None) -> T:
    """A copy of ``model`` on ``device`` with floating tensors cast to ``dtype``.
    Integer and boolean tensors keep their dtype."""

    def move(t: torch.Tensor, _kind: str) -> torch.Tensor:
        d = dtype if (dtype is not None and (t.is_floating_point() or t.is_complex())) else None
        return t.to(device=device, dtype=d)

    return map_tensors(move, model)


def set_training(model: T, training: bool = True) -> T:
    """A copy of ``model`` with every ``training`` field set (Dropout, BatchNorm)."""

    def flag(new: Any) -> None:
        if isinstance(getattr(new, "training", None), bool):
            object.__setattr__(new, "training", training)

    return _walk(model, lambda t, k, name: t, node=flag)


# --------------------------------------------------------------------- gradients


def value_and_grad(f: Callable[..., torch.Tensor], model: T, *args, **kwargs) -> tuple[torch.Tensor, T]:
    """``(f(model, *args), ∂f/∂model)``: the gradient is a struct of the same type as
    ``model`` holding one gradient per parameter and ``None`` in buffer fields.
    Parameters that do not reach the output get zeros."""
    xs: list[torch.Tensor] = []

    def leaf(p: torch.Tensor, _kind: str) -> torch.Tensor:  # one pass: collect and replace
        xs.append(p.detach().requires_grad_(p.is_floating_point() or p.is_complex()))
        return xs[-1]

    out = f(map_tensors(leaf, model, kind=_PARAM), *args, **kwargs)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError(f"value_and_grad: f must return a scalar tensor, got {type(out).__name__}"
                         + (f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else ""))
    wants = [x for x in xs if x.requires_grad]
    gs = iter(torch.autograd.grad(out, wants, allow_unused=True))
    grads = []
    for x in xs:
        g = next(gs) if x.requires_grad else None
        grads.append(torch.zeros_like(x) if g is None else g)
    it = iter(grads)  # one pass: parameters become their gradients, buffers None
    return out.detach(), map_tensors(lambda t, k: next(it) if k == _PARAM else None, model)


def grad(f: Callable[..., torch.Tensor], model: T, *args, **kwargs) -> T:
    """``∂f/∂model`` as a struct of the same type as ``model`` (see `value_and_grad`)."""
    return value_and_grad(f, model, *args, **kwargs)[1]
