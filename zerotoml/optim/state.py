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

from ..tree import named_params


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
    fit ``model`` (another count, name or shape) or when one of the state lists of
    ``opt`` named in ``state`` was not made for ``model`` (``Opt.init(model)``)."""
    who = f"step({type(opt).__name__})"
    make = f"make the optimizer with {type(opt).__name__}.init(model)"
    named_p, named_g = named_params(model), named_params(grads)
    if list(named_p) != list(named_g):
        raise ValueError(
            f"{who}: grads has {len(named_g)} parameter tensors ({', '.join(named_g) or 'none'}) "
            f"but model has {len(named_p)} ({', '.join(named_p) or 'none'}); pass the gradient "
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
    return list(named_p.values()), list(named_g.values())
