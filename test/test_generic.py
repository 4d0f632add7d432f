"""The dispatch convention: zerotoml/generic.py (notes/dispatch.md#the-pieces)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from zerotoml.generic import NoMethodError, ShapeError, forward, generic, method
from zerotoml.shapes import Float, Tensor, strip
from zerotoml.tree import struct


@struct
class Scale:
    s: Float[Tensor, "d"]


@struct
class Scale2(Scale):
    """A subclass: inherits Scale's methods unless it defines its own."""


@struct
class Shift(Scale):
    pass


@method
def forward(m: Scale, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b d"]:
    return x * m.s


@method
def forward(m: Shift, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b d"]:
    return x + m.s


def test_dispatch_on_dataclass_types_and_subclasses():
    x = torch.full((2, 3), 2.0)
    s = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(forward(Scale(s), x), x * s)
    torch.testing.assert_close(forward(Scale2(s), x), x * s)  # inherited method
    torch.testing.assert_close(forward(Shift(s), x), x + s)  # its own, more specific


def test_no_method_lists_the_methods_that_exist():
    with pytest.raises(NoMethodError) as info:
        forward("not a model", torch.zeros(3))
    msg = str(info.value)
    assert "forward(str, Tensor) has no method" in msg
    assert "forward(Linear, Tensor)" in msg
    assert "forward(Scale, Tensor)" in msg


def test_keyword_only_options_do_not_take_part_in_dispatch():
    @generic
    def scaled(model, x, **options):
        """test generic"""

    @method
    def scaled(m: Scale, x: Float[Tensor, "d"], *, factor: float = 1.0) -> Float[Tensor, "d"]:
        return m.s * x * factor

    s = Scale(torch.ones(3))
    assert scaled(s, torch.ones(3), factor=2.0).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ShapeError, match="argument `factor`"):
        scaled(s, torch.ones(3), factor="two")


def test_method_needs_a_declared_generic_function():
    with pytest.raises(NameError, match="no generic function named 'forwrd'"):
        @method
        def forwrd(m: Scale, x: Tensor):
            return x


def test_plum_sees_stripped_types():
    assert strip(Float[Tensor, "b d"]) is torch.Tensor
    assert strip(Float[Tensor, "b"] | None) == (torch.Tensor | None)
    assert strip(list[Float[Tensor, "d"]]) == list[torch.Tensor]
    sigs = [str(m.signature) for m in forward.methods]
    assert any("Linear" in s and "Tensor" in s for s in sigs)
    assert not any("Float[" in s for s in sigs)


def test_checks_off_registers_the_raw_function():
    code = textwrap.dedent(
        """
        import torch, zerotoml
        from zerotoml.layers import linear
        impl = [m.implementation for m in zerotoml.forward.methods
                if 'Linear' in str(m.signature)][0]
        # the body plum calls is the code written in linear.py, not a checking wrapper
        assert impl.__code__.co_filename.endswith('linear.py'), impl.__code__
        # no shape check: a wrong shape reaches torch and fails there
        m = linear.Linear.init(4, 3)
        try:
            zerotoml.forward(m, torch.zeros(2, 5))
        except zerotoml.ShapeError:
            raise SystemExit('checked')
        except RuntimeError:
            print('raw')
        """
    )
    env = dict(os.environ, ZEROTOML_CHECKS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "raw"
