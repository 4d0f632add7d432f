"""Dataclasses as pytrees: parameters, devices, gradients, saving and loading.

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
models as trees. No code per model is needed for any function here.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.utils._pytree as pytree

from .shapes import strip

__all__ = [
    "struct",
    "buffer",
    "static",
    "is_struct",
    "named_tensors",
    "params",
    "named_params",
    "buffers",
    "param_count",
    "replace_params",
    "map_tensors",
    "to",
    "grad",
    "value_and_grad",
    "set_training",
]

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
    if hint is torch.Tensor or (isinstance(hint, type) and hint in _STRUCTS):
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return True
    args = typing.get_args(hint)
    if args:
        found = [_hint_holds_tensors(a) for a in args if a is not type(None) and a is not Ellipsis]
        if any(f is True for f in found):
            return True
        if any(f is None for f in found):
            return None
        return False
    if isinstance(hint, type) and issubclass(hint, (list, tuple, dict)):
        return None
    return False


_kinds_cache: dict[type, tuple[tuple[str, str], ...]] = {}


def _field_kinds(cls: type) -> tuple[tuple[str, str], ...]:
    try:
        return _kinds_cache[cls]
    except KeyError:
        pass
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
    _kinds_cache[cls] = tuple(kinds)
    return _kinds_cache[cls]


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


_live_cache: dict[type, tuple[tuple[str, str], ...]] = {}


def _live_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """`_field_kinds` without the static fields: what a traversal visits (cached per class)."""
    try:
        return _live_cache[cls]
    except KeyError:
        _live_cache[cls] = tuple((n, k) for n, k in _field_kinds(cls) if k != _STATIC)
        return _live_cache[cls]


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
    for name, value in statics:
        object.__setattr__(obj, name, value)
    for name, value in zip(names, values):
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
        pytree.register_pytree_node(
            cls,
            _flatten,
            _unflatten,
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            flatten_with_keys_fn=_flatten_with_keys,
        )
        _STRUCTS.add(cls)
    return cls


# ------------------------------------------------------------------- traversal


def named_tensors(obj: Any, prefix: str = "", *, kind: str | None = None) -> Iterator[tuple[str, Any, str]]:
    """Yield ``(dotted name, tensor, "param" | "buffer")`` for every tensor leaf."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj, kind or _PARAM
    elif is_struct(obj):
        for name, k, value in _children(obj):
            yield from named_tensors(value, f"{prefix}{name}" if not prefix else f"{prefix}.{name}",
                                     kind=_BUFFER if (k == _BUFFER or kind == _BUFFER) else None)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from named_tensors(value, f"{prefix}.{i}" if prefix else str(i), kind=kind)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from named_tensors(value, f"{prefix}.{key}" if prefix else str(key), kind=kind)


def _param_leaves(obj: Any, out: list) -> list:
    """`params` without building names: it runs at every training step."""
    t = type(obj)
    if t in _STRUCTS:
        for name, kind in _live_fields(t):
            if kind != _BUFFER:
                value = getattr(obj, name)
                if kind != _BY_VALUE or _value_holds_tensors(value):
                    _param_leaves(value, out)
    elif isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _param_leaves(value, out)
    elif isinstance(obj, dict):
        for value in obj.values():
            _param_leaves(value, out)
    return out


def params(model: Any) -> list[torch.Tensor]:
    """The trained tensors of ``model``, in a fixed order (field order, depth first)."""
    return _param_leaves(model, [])


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
    return _map(fn, obj, kind, None)


def _map(fn, obj, want, inherited):
    t = type(obj)
    if t in _STRUCTS:
        new = object.__new__(t)
        new.__dict__.update(obj.__dict__)
        for name, kind in _live_fields(t):
            value = getattr(obj, name)
            if kind == _BY_VALUE and not _value_holds_tensors(value):
                continue
            sub = _BUFFER if (kind == _BUFFER or inherited == _BUFFER) else None
            object.__setattr__(new, name, _map(fn, value, want, sub))
        return new
    if isinstance(obj, torch.Tensor):
        k = inherited or _PARAM
        return fn(obj, k) if (want is None or want == k) else obj
    if isinstance(obj, list):
        return [_map(fn, v, want, inherited) for v in obj]
    if isinstance(obj, tuple):
        vals = [_map(fn, v, want, inherited) for v in obj]
        return type(obj)(*vals) if hasattr(obj, "_fields") else tuple(vals)
    if isinstance(obj, dict):
        return {key: _map(fn, v, want, inherited) for key, v in obj.items()}
    return obj


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
    if is_struct(model):
        new = copy.copy(model)
        if hasattr(new, "training") and isinstance(getattr(new, "training"), bool):
            object.__setattr__(new, "training", training)
        for name, _, value in _children(model):
            object.__setattr__(new, name, set_training(value, training))
        return new
    if isinstance(model, list):
        return [set_training(v, training) for v in model]
    if isinstance(model, tuple):
        return tuple(set_training(v, training) for v in model)
    if isinstance(model, dict):
        return {k: set_training(v, training) for k, v in model.items()}
    return model


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
