"""Level-3 validation helpers: same weights, same inputs, same values and gradients.

Note: notes/layers.md#validation (optimizers: notes/optimizers.md#validation).

`assert_matches_torch` is how every ``from_torch`` twin in zerotoml is tested:

1. the torch module is converted with `from_torch` (so weights are identical);
2. both run forward on clones of the same float64 inputs;
3. outputs are compared, then both backpropagate the same random cotangent;
4. input gradients are compared directly, and parameter gradients by converting a
   copy of the torch module *whose parameters are its gradients* with
   `from_torch` -- so a layout change (``Linear.W`` is torch's ``weight.T``) is
   applied to the gradient by the same code that applies it to the weight;
5. buffers (BatchNorm running statistics) are compared after the forward.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch

from .generic import forward, from_torch, step
from .tree import buffers, named_params, params, replace_params

__all__ = ["assert_matches_torch", "assert_trees_close", "assert_optimizer_matches_torch"]


def _leaves(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _leaves(o)]
    if out is None:
        return []
    raise TypeError(f"cannot compare output of type {type(out).__name__}")


def assert_trees_close(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], *,
                       what: str, atol: float, rtol: float) -> None:
    assert set(ours) == set(theirs), f"{what}: names differ: {sorted(ours)} vs {sorted(theirs)}"
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"{what} {name}: {m}")


def assert_matches_torch(
    module: torch.nn.Module,
    inputs: Sequence[Any],
    *,
    kwargs: dict[str, Any] | None = None,
    torch_kwargs: dict[str, Any] | None = None,
    ours: Any = None,
    fn: Callable[..., Any] = forward,
    select: Callable[[Any], Any] = lambda out: out,
    atol: float = 1e-10,
    rtol: float = 1e-10,
    seed: int = 0,
) -> Any:
    """Assert that ``fn(from_torch(module), *inputs, **kwargs)`` equals
    ``module(*inputs, **torch_kwargs)`` in value, input gradients, parameter
    gradients and buffers. ``select`` picks the compared tensors from an output
    (e.g. ``lambda o: o[0]``). Returns the zerotoml model."""
    kwargs = dict(kwargs or {})
    torch_kwargs = dict(kwargs if torch_kwargs is None else torch_kwargs)
    module_ref = copy.deepcopy(module)  # gradients are read off a fresh copy
    model = from_torch(module) if ours is None else ours

    def clones(xs):
        return [x.detach().clone().requires_grad_(x.is_floating_point())
                if isinstance(x, torch.Tensor) else x for x in xs]

    x_t, x_o = clones(inputs), clones(inputs)
    p_o = [p.detach().requires_grad_(p.is_floating_point()) for p in params(model)]
    m_o = replace_params(model, p_o)

    out_t = _leaves(select(module(*x_t, **torch_kwargs)))
    out_o = _leaves(select(fn(m_o, *x_o, **kwargs)))
    assert len(out_t) == len(out_o), f"torch gave {len(out_t)} outputs, zerotoml {len(out_o)}"
    for i, (a, b) in enumerate(zip(out_o, out_t)):
        assert a.shape == b.shape, f"output {i}: shape {tuple(a.shape)} vs torch {tuple(b.shape)}"
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, i=i: f"output {i}: {m}")

    # buffers after the forward (running statistics in training mode)
    theirs_now = from_torch(module)
    assert_trees_close(buffers(m_o), buffers(theirs_now), what="buffer", atol=atol, rtol=rtol)

    diff_t = [o for o in out_t if o.requires_grad]
    diff_o = [o for o in out_o if o.requires_grad]
    if not diff_t:
        return model
    gen = torch.Generator().manual_seed(seed)
    cot = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device) for o in diff_t]

    t_params = [p for p in module.parameters()]
    wrt_t = [x for x in x_t if isinstance(x, torch.Tensor) and x.requires_grad] + t_params
    wrt_o = [x for x in x_o if isinstance(x, torch.Tensor) and x.requires_grad] + p_o
    g_t = torch.autograd.grad(diff_t, wrt_t, cot, allow_unused=True)
    g_o = torch.autograd.grad(diff_o, wrt_o, cot, allow_unused=True)
    n_in = len(wrt_t) - len(t_params)
    for i in range(n_in):
        a = g_o[i] if g_o[i] is not None else torch.zeros_like(wrt_o[i])
        b = g_t[i] if g_t[i] is not None else torch.zeros_like(wrt_t[i])
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, i=i: f"input {i} gradient: {m}")

    # parameter gradients, in zerotoml layout via from_torch of a gradient module
    grad_module = module_ref
    with torch.no_grad():
        for p, g in zip(grad_module.parameters(), g_t[n_in:]):
            p.copy_(torch.zeros_like(p) if g is None else g)
    theirs = named_params(from_torch(grad_module))
    mine = named_params(replace_params(model, [
        torch.zeros_like(p) if g is None else g for p, g in zip(p_o, g_o[n_in:])
    ]))
    assert_trees_close(mine, theirs, what="parameter gradient", atol=atol, rtol=rtol)
    return model


def assert_optimizer_matches_torch(opt: Any, model: Any, torch_opt_cls: type, steps: int = 6, seed: int = 0,
                                   lrs: Sequence[float] | None = None, atol: float = 1e-12,
                                   rtol: float = 1e-12, **torch_kwargs: Any) -> None:
    """Step `opt` on `model` and torch's optimizer on a copy with the same seeded gradients;
    compare every parameter after every step. `lrs` overrides the rate step by step."""
    theirs = [p.detach().clone().requires_grad_() for p in params(model)]
    torch_opt = torch_opt_cls(theirs, **torch_kwargs)
    gen = torch.Generator().manual_seed(seed)
    for k in range(steps):
        gs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params(model)]
        for p, g in zip(theirs, gs):
            p.grad = g.clone()
        if lrs is not None:
            torch_opt.param_groups[0]["lr"] = lrs[k]
        torch_opt.step()
        out = step(opt, model, replace_params(model, gs), lr=None if lrs is None else lrs[k])
        assert out is model
        for i, (a, b) in enumerate(zip(params(model), theirs)):
            torch.testing.assert_close(a, b.detach(), atol=atol, rtol=rtol, msg=lambda m: f"step {k + 1}, param {i}: {m}")
    assert int(opt.t) == steps
