"""Shape annotations and the shape-check switch.

Note: notes/dispatch.md#why-not-bare-dispatch-on-jaxtyping-types.

Every tensor in zerotoml is annotated with a jaxtyping type such as
``Float[Tensor, "*batch d_in"]``. The names are the axes of the einsum that uses
the tensor, so the annotation, the formula and the check say the same thing.

Checks are on by default and read one switch, the environment variable
``ZEROTOML_CHECKS`` (``0``, ``false`` or ``off`` turns them off). The switch is
read when a method is registered, i.e. when zerotoml is imported: with checks
off the registered function is the raw function, with no wrapper, which is what
speed measurements and ``torch.compile`` want; with checks on, the wrapper is
`zerotoml.checks.checked`.
"""

from __future__ import annotations

import os
import types
import typing
from typing import Any, Union

import torch
from jaxtyping import AbstractArray, Bool, Float, Float64, Int, Integer, Num, Shaped

Tensor = torch.Tensor

__all__ = [
    "Tensor",
    "Float",
    "Float64",
    "Int",
    "Integer",
    "Bool",
    "Num",
    "Shaped",
    "CHECKS",
    "checks_enabled",
    "is_array_hint",
    "strip",
]


def _read_switch() -> bool:
    value = os.environ.get("ZEROTOML_CHECKS", "1").strip().lower()
    if value in ("1", "true", "on", "yes", ""):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ValueError(
        f"ZEROTOML_CHECKS={os.environ['ZEROTOML_CHECKS']!r}: expected 1/0, true/false, on/off"
    )


CHECKS: bool = _read_switch()


def checks_enabled() -> bool:
    """True when methods registered from now on check shapes (``ZEROTOML_CHECKS``)."""
    return CHECKS


def is_array_hint(hint: Any) -> bool:
    """True for a jaxtyping array type such as ``Float[Tensor, "b d"]``."""
    return isinstance(hint, type) and issubclass(hint, AbstractArray)


_UNION_TYPES = (Union, types.UnionType)


def strip(hint: Any) -> Any:
    """The hint with every jaxtyping array type replaced by its array type.

    ``Float[Tensor, "b d"] -> Tensor``; ``Float[Tensor, "b"] | None -> Tensor | None``;
    ``list[Float[Tensor, "d"]] -> list[Tensor]``. This is what the dispatcher sees:
    it dispatches on types, never on shapes.
    """
    if is_array_hint(hint):
        return hint.array_type
    origin = typing.get_origin(hint)
    if origin is None:
        return hint
    args = typing.get_args(hint)
    if not args:
        return hint
    new_args = tuple(strip(a) for a in args)
    if new_args == args:
        return hint
    if origin in _UNION_TYPES:
        return Union[new_args]  # noqa: UP007 - built from a tuple
    if origin is typing.Annotated:
        return typing.Annotated[new_args]
    try:
        return origin[new_args]
    except TypeError:
        # typing aliases such as typing.List: fall back to the builtin origin
        return origin
