"""Optimizer state: made like the parameters, checked against them at every step.

Every optimizer in zerotoml.optim is a `struct` whose static fields are its
hyper-parameters and whose buffers are its state: ``t``, the number of steps
taken (a 0-dim int64 tensor, so a checkpoint holds it and the static fields stay
constant), and lists with one tensor per parameter, in `zerotoml.tree.params`
order. Note: notes/optimizers.md#state
"""

from __future__ import annotations

from typing import Any

import torch

from ..tree import named_params, params


def step_counter() -> torch.Tensor:
    """A fresh step counter: ``tensor(0)`` (int64, on the CPU, like torch.optim's ``step``)."""
    return torch.zeros((), dtype=torch.int64)


def zeros_like_params(model: Any, fill: float = 0.0) -> list[torch.Tensor]:
    """One tensor per parameter of ``model``, of its shape, dtype and device, filled with ``fill``."""
    return [torch.full_like(p, fill) for p in named_params(model).values()]


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, {str(t.dtype).removeprefix('torch.')}"


def params_and_grads(opt: Any, model: Any, grads: Any, *state: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters of ``model`` and the gradients in ``grads``, in the same order.

    Raises ValueError, naming the parameter and the shapes, when ``grads`` does not
    fit ``model`` (another type, count, name or shape) or when one of the state lists
    of ``opt`` named in ``state`` was not made for ``model`` (``Opt.init(model)``).
    This runs at every step: names are only built when something is wrong."""
    ps, gs = params(model), params(grads)
    fits = type(grads) is type(model) and len(ps) == len(gs) and all(
        g.shape == p.shape for p, g in zip(ps, gs))
    states = [getattr(opt, field) for field in state]
    fits = fits and getattr(opt, "t", None) is not None and all(
        len(values) == len(ps) and all(s.shape == p.shape and s.dtype == p.dtype for s, p in zip(values, ps))
        for values in states)
    if not fits:
        _explain(opt, model, grads, state)
    return ps, gs


def _explain(opt: Any, model: Any, grads: Any, state: tuple[str, ...]) -> None:
    """Raise the error that says what in ``grads`` or ``opt`` does not fit ``model``."""
    who = f"step({type(opt).__name__})"
    make = f"make the optimizer with {type(opt).__name__}.init(model)"
    named_p, named_g = named_params(model), named_params(grads)
    if list(named_p) != list(named_g) or type(grads) is not type(model):
        raise ValueError(
            f"{who}: grads is a {type(grads).__name__} with {len(named_g)} parameter tensors "
            f"({', '.join(named_g) or 'none'}) but model is a {type(model).__name__} with "
            f"{len(named_p)} ({', '.join(named_p) or 'none'}); pass the gradient "
            f"struct from zerotoml.tree.value_and_grad(f, model, ...)"
        )
    for i, (name, p) in enumerate(named_p.items()):
        g = named_g[name]
        if g.shape != p.shape:
            raise ValueError(
                f"{who}: grads parameter {i} ({name!r}) has shape {tuple(g.shape)}, "
                f"model parameter {name!r} has shape {tuple(p.shape)}"
            )
    if getattr(opt, "t", None) is None:
        raise ValueError(f"{who}: the optimizer has no state (t is None); {make}")
    for field in state:
        values = getattr(opt, field)
        if len(values) != len(named_p):
            raise ValueError(
                f"{who}: optimizer state {type(opt).__name__}.{field} has {len(values)} tensors but "
                f"model has {len(named_p)} parameters; the state was made for another model: {make}"
            )
        for i, ((name, p), s) in enumerate(zip(named_p.items(), values)):
            if s.shape != p.shape or s.dtype != p.dtype:
                raise ValueError(
                    f"{who}: optimizer state {type(opt).__name__}.{field}[{i}] has {_describe(s)} "
                    f"but model parameter {i} ({name!r}) has {_describe(p)}; the state was made "
                    f"for another model: {make}"
                )
    raise AssertionError(f"{who}: grads and state fit the model")  # unreachable


def decay_mask(model: Any, decay: Any) -> tuple[bool, ...] | None:
    """``decay(name, parameter)`` for every parameter of ``model`` in `params` order, or None
    (decay everything) when ``decay`` is None."""
    if decay is None:
        return None
    return tuple(bool(decay(name, p)) for name, p in named_params(model).items())
