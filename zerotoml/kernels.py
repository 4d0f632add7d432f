"""The opt-in fast paths, chosen here and nowhere else. Note: notes/transformers.md#fast-paths.

zerotoml's default is the code the notes explain: einsums, formulas and their hand-derived
gradients. For long trainings torch's fused kernels may stand in for a few of them; each
is tested equal to the default path (values and gradients, float64).

``FUSED`` (``ZEROTOML_FUSED=1``; ``ZEROTOML_FUSED_ATTENTION=1`` is read too) swaps in:

- F.scaled_dot_product_attention for `attend` where no weights are returned
  (zerotoml/layers/attention.py),
- F.layer_norm for `LayerNorm` (zerotoml/layers/norm.py),
- F.gelu for `gelu` (zerotoml/layers/activation.py),
- F.cross_entropy for `cross_entropy` (zerotoml/losses.py),
- torch's fused Adam/AdamW kernel (what torch.optim's ``fused=True`` runs) for `Adam` and
  `AdamW` (zerotoml/optim/adam.py).

Set it before a run (environment) or at run time (``zerotoml.kernels.FUSED = True``); the
layers read it at every call. It also turns on the convolutions' fast path (F.conv{n}d and
conv_transpose{n}d), which has a switch of its own besides, ``zerotoml.layers.conv.FAST``
(``ZEROTOML_FAST_CONV=1``), for the CNN examples' ``--fast-conv``.
"""

from __future__ import annotations

import os

__all__ = ["FUSED", "read_switch"]


def read_switch(*names: str) -> bool:
    """True if any of the environment variables ``names`` says on (1/true/on/yes); an
    unreadable value is an error that names it."""
    on = False
    for name in names:
        value = os.environ.get(name, "0").strip().lower()
        if value in ("1", "true", "on", "yes"):
            on = True
        elif value not in ("0", "false", "off", "no", ""):
            raise ValueError(f"{name}={os.environ[name]!r}: expected 1/0, true/false, on/off")
    return on


FUSED: bool = read_switch("ZEROTOML_FUSED", "ZEROTOML_FUSED_ATTENTION")
