"""Generic functions and the `method` decorator that adds methods to them.

Note: notes/dispatch.md#the-pieces.

zerotoml keeps Julia's shape: models are plain data (dataclasses of tensors) and
behaviour is a small set of generic functions -- `forward`, `loss`, `step`,
`from_torch`, ... -- that dispatch on the types of their positional arguments
with one plum `Dispatcher`. A new model adds methods; it never edits a shared
``if isinstance`` chain.

    @method
    def forward(m: Linear, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        ...

`method` hands plum the signature with every jaxtyping type replaced by its array
type and without the return annotation, so plum dispatches on model types only
and stays cached. When shape checks are on (``ZEROTOML_CHECKS``, default on) the
body runs inside `zerotoml.checks.checked`: one jaxtyping memo in which, in this
order, the annotated tensor fields of every dataclass argument, the annotated
arguments and the return value are checked, so ``Linear.W: "d_in d_out"`` is tied
to ``x: "*batch d_in"``.

Dispatch is on positional arguments (as in plum and Julia); options are
keyword-only arguments (``*, key_padding_mask=None``) and take no part in it.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any, Callable

from plum import Dispatcher, Function

from . import shapes
from .checks import CheckError, DeviceError, DTypeError, ShapeError, call_name, checked, type_label
from .shapes import strip

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


class NoMethodError(TypeError):
    """A generic function has no method for the types it was called with."""


# ------------------------------------------------------------- generic functions

_registry: dict[str, list[str]] = {}  # name -> human-readable list of methods


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
            f"{call_name(name, args)} has no method for these argument types.\n"
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


# ------------------------------------------------------------------ registration


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
    that checks dataclass fields, arguments and the return value
    (`zerotoml.checks.checked`). Returns the generic function, like plum's ``@dispatch``.
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
    body = checked(f, name, sig, hints) if shapes.CHECKS else f
    g = _stripped_copy(f, body, sig, hints)
    fn.register(g, precedence=precedence)
    types_ = ", ".join(
        type_label(strip(hints.get(p.name, Any)))
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    )
    code = f.__code__
    _registry[name].append(f"{name}({types_})  [{f.__module__}:{code.co_firstlineno}]")
    return fn
