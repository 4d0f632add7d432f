"""Generic functions and the `method` decorator that adds methods to them.

zerotoml keeps Julia's shape: models are plain data (dataclasses of tensors) and
behaviour is a small set of generic functions -- `forward`, `loss`, `step`,
`from_torch`, ... -- that dispatch on the types of their positional arguments
with one plum `Dispatcher`. A new model adds methods; it never edits a shared
``if isinstance`` chain. See notes/dispatch.md for the why and the measurements.

    @method
    def forward(m: Linear, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        ...

`method` hands plum the signature with every jaxtyping type replaced by its array
type and without the return annotation, so plum dispatches on model types only
and stays cached. When shape checks are on (``ZEROTOML_CHECKS``, default on) the
body runs inside one jaxtyping memo in which, in this order, the annotated tensor
fields of every dataclass argument, the annotated arguments and the return value
are checked, so ``Linear.W: "d_in d_out"`` is tied to ``x: "*batch d_in"``.

Dispatch is on positional arguments (as in plum and Julia); options are
keyword-only arguments (``*, key_padding_mask=None``) and take no part in it.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from typing import Any, Callable

import torch
from beartype import BeartypeConf
from beartype.door import is_bearable
from jaxtyping import jaxtyped
from plum import Dispatcher, Function

from . import shapes
from .shapes import is_array_hint, strip

__all__ = [
    "CheckError",
    "ShapeError",
    "DTypeError",
    "DeviceError",
    "NoMethodError",
    "dispatch",
    "generic",
    "method",
    "forward",
    "loss",
    "step",
    "from_torch",
    "sample",
    "generate",
    "act",
    "lr_at",
]

dispatch = Dispatcher()


# --------------------------------------------------------------------------- errors


class CheckError(TypeError):
    """A value did not match its annotation (shape, dtype category or type)."""


class ShapeError(CheckError):
    """A tensor's shape did not match its jaxtyping annotation."""


class DTypeError(CheckError):
    """Floating tensors of one call do not share one dtype."""


class DeviceError(CheckError):
    """Tensors of one call do not live on one device."""


class NoMethodError(TypeError):
    """A generic function has no method for the types it was called with."""


# ------------------------------------------------------------- generic functions

_registry: dict[str, list[str]] = {}  # name -> human-readable list of methods


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)


def _arg_types(args: tuple) -> str:
    return ", ".join(type(a).__name__ for a in args)


def generic(f: Callable) -> Function:
    """Declare a generic function from a stub whose docstring documents it.

    The returned plum `Function` has one method of lowest precedence that raises
    `NoMethodError` listing the methods that exist.
    """
    name = f.__name__
    if name in dispatch.functions:
        return dispatch.functions[name]
    fn = dispatch.abstract(f)
    _registry[name] = []

    def no_method(*args: object, **kwargs: object):
        known = "\n  ".join(_registry[name]) or "(none yet)"
        raise NoMethodError(
            f"{name}({_arg_types(args)}) has no method for these argument types.\n"
            f"Methods of {name}:\n  {known}"
        )

    fn.register(no_method, precedence=-1_000_000)
    return fn


@generic
def forward(model, *inputs, **options):
    """Apply a layer or model to its inputs: ``y = forward(model, x)``."""


@generic
def loss(model, *batch, **options):
    """The scalar training loss of a model on a batch: ``L = loss(model, x, y)``."""


@generic
def step(optimizer, model, grads, **options):
    """One optimizer update. Mutates ``model`` and ``optimizer`` in place and returns ``model``."""


@generic
def sample(model, *args, **options):
    """Draw samples from a generative model (diffusion, flows, GANs)."""


@generic
def generate(model, *args, **options):
    """Generate a sequence from a language model."""


@generic
def act(policy, *args, **options):
    """Choose an action (RL policies)."""


@generic
def lr_at(schedule, t):
    """The learning rate a schedule gives at step ``t`` (0-based)."""


@generic
def from_torch(module, **options):
    """The zerotoml twin of a torch.nn module, with the same weights, dtype, device and mode."""


# ---------------------------------------------------------------------- checking


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        shape = ", ".join(str(s) for s in value.shape)
        return f"{dtype}[{shape}] on {value.device}"
    return type(value).__name__


def _hint_name(hint: Any) -> str:
    if is_array_hint(hint):
        dtype = hint.__name__.split("[", 1)[0].removeprefix("jaxtyping.")
        return f"{dtype}[{_type_name(hint.array_type)}, {hint.dim_str!r}]"
    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_hint_name(a) for a in args)
    if args:
        return f"{_type_name(origin)}[{', '.join(_hint_name(a) for a in args)}]"
    return _type_name(hint)


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
    first_float = None
    first_dev = None
    for where, t in tensors:
        if t.is_floating_point() or t.is_complex():
            if first_float is None:
                first_float = (where, t)
            elif t.dtype != first_float[1].dtype:
                raise DTypeError(
                    f"{call}: {where} has dtype {t.dtype} but {first_float[0]} has "
                    f"{first_float[1].dtype}; convert one (zerotoml.to(model, dtype=...) "
                    f"or x.to(dtype))."
                )
        if t.dim() == 0 and t.device.type == "cpu":
            continue
        if first_dev is None:
            first_dev = (where, t)
        elif t.device != first_dev[1].device:
            raise DeviceError(
                f"{call}: {where} is on {t.device} but {first_dev[0]} is on "
                f"{first_dev[1].device}; move one (zerotoml.to(model, device=...))."
            )


def _checked(f: Callable, name: str, sig: inspect.Signature, hints: dict[str, Any]) -> Callable:
    """Wrap ``f`` so that one jaxtyping memo checks fields, arguments and result."""
    ret_hint = hints.get("return")
    params = [
        (p.name, hints[p.name], p.kind) for p in sig.parameters.values() if p.name in hints
    ]

    def checked(*args, **kwargs):
        __tracebackhide__ = True
        call = f"{name}({_arg_types(args)})"
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

    return checked


def _stripped_copy(f: Callable, body: Callable, sig: inspect.Signature, hints: dict) -> Callable:
    """A function plum can read: the stripped signature, no return annotation."""
    params = []
    for p in sig.parameters.values():
        ann = strip(hints[p.name]) if p.name in hints else inspect.Parameter.empty
        params.append(p.replace(annotation=ann))
    stripped = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    if body is f:
        # checks off: the raw code object, so a call costs nothing beyond dispatch
        g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        g.__kwdefaults__ = f.__kwdefaults__
    else:
        g = body
    g.__name__ = f.__name__
    g.__qualname__ = f.__qualname__
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    g.__signature__ = stripped
    g.__annotations__ = {
        p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty
    }
    g.__zerotoml_source__ = f  # the function as written, annotations and all
    return g


def method(f: Callable | None = None, *, precedence: int = 0, _localns: dict | None = None):
    """Register ``f`` as a method of the generic function of the same name.

    Plum sees the signature with jaxtyping types stripped to their array types and
    no return annotation; with checks on, the body runs inside one jaxtyping memo
    that checks dataclass fields, arguments and the return value (see the module
    docstring). Returns the generic function, like plum's ``@dispatch``.
    """
    if f is None:
        def decorate(g: Callable):
            return method(g, precedence=precedence, _localns=sys._getframe(1).f_locals)
        return decorate
    if _localns is None:  # names of the defining scope, for classes defined in a function
        _localns = sys._getframe(1).f_locals
    name = f.__name__
    if name not in dispatch.functions:
        raise NameError(
            f"@method {name}: no generic function named {name!r}. Declare it first with "
            f"@generic (known: {', '.join(sorted(dispatch.functions))})."
        )
    fn: Function = dispatch.functions[name]
    sig = inspect.signature(f)
    try:
        hints = typing.get_type_hints(f, localns=_localns, include_extras=True)
    except NameError as e:
        raise NameError(f"@method {f.__qualname__}: cannot resolve an annotation: {e}") from None
    body = _checked(f, name, sig, hints) if shapes.CHECKS else f
    g = _stripped_copy(f, body, sig, hints)
    fn.register(g, precedence=precedence)
    types_ = ", ".join(
        _type_name(strip(hints.get(p.name, Any)))
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    )
    code = f.__code__
    _registry[name].append(f"{name}({types_})  [{f.__module__}:{code.co_firstlineno}]")
    return fn
