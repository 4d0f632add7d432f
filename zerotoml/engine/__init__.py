"""The two engines and the one switch between them. Note: notes/performance.md#engines.

zerotoml has two ways to run the same model:

* ``"reference"`` (the default): every layer is its formula, einsum with named axes and
  plain torch elementwise operations, gradients by autograd, optimizers as the paper's
  listing. This is the code the notes link to and the code a debugger steps through.
* ``"fast"``: what exists only for speed, all of it in this package. A layer file shows one
  visible call where it may take over, ``if engine.fast(): return engine.kernels.<name>(...)``,
  and every kernel it swaps in is tested equal to the reference (test/engine/).

Choose with ``ZEROTOML_ENGINE=reference|fast`` (read at import) or at run time with
``zerotoml.engine.use("fast")``, which also works as a context manager::

    with engine.use("fast"):
        loss(model, x, y)      # the fast kernels
    # the previous engine again

Layers read the switch at every call, so a change takes effect at once.
"""

from __future__ import annotations

import os

__all__ = ["ENGINES", "current", "fast", "use"]

ENGINES = ("reference", "fast")


def _read_environment() -> str:
    raw = os.environ.get("ZEROTOML_ENGINE", "")
    value = raw.strip().lower() or "reference"
    if value not in ENGINES:
        raise ValueError(f"ZEROTOML_ENGINE={raw!r}: expected one of {', '.join(map(repr, ENGINES))}")
    return value


_current: str = _read_environment()


def current() -> str:
    """The engine in use now: "reference" or "fast"."""
    return _current


def fast() -> bool:
    """Whether the fast engine is in use: the question each layer asks at its one visible call."""
    return _current == "fast"


class use:
    """``use("fast")`` switches the engine now; as a context manager it switches back on exit."""

    def __init__(self, name: str):
        global _current
        if not isinstance(name, str) or name.strip().lower() not in ENGINES:
            raise ValueError(f"engine.use: name={name!r}; expected one of {', '.join(map(repr, ENGINES))}")
        self.previous, _current = _current, name.strip().lower()
        self.name = _current

    def __enter__(self) -> "use":
        return self

    def __exit__(self, *exc) -> None:
        global _current
        _current = self.previous

    def __repr__(self) -> str:
        return f"engine.use({self.name!r})"


from . import kernels, memory, optim, planner  # noqa: E402  (reached as engine.kernels.<name>, ...)
