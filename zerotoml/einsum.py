"""``einsum`` in einops' notation: the door every contraction of zerotoml goes through.
Note: notes/layers.md#einsum.

    y = einsum(x, W, "b t d_in, d_in d_out -> b t d_out")

The axis names match the jaxtyping names of the operands. Under the reference engine this is
einops.einsum (torch.einsum underneath) and nothing else; under the fast engine a planner that
turns a two-operand contraction into one matrix product takes over (zerotoml/engine/planner.py,
tested equal to this in test/engine/test_planner.py).
"""

from __future__ import annotations

import einops
from torch import Tensor

from . import engine

__all__ = ["einsum"]


def einsum(*tensors_and_pattern, plus: Tensor | None = None) -> Tensor:
    """``einsum(A, B, "a b, b c -> a c")``: einops' signature and notation; ``plus=b`` adds
    ``b`` to the result (``x W + b``)."""
    if engine.fast():  # the fast engine's planner (zerotoml/engine/planner.py)
        return engine.planner.einsum(*tensors_and_pattern, plus=plus)
    *tensors, pattern = tensors_and_pattern
    y = einops.einsum(*tensors, pattern)
    return y if plus is None else y + plus
