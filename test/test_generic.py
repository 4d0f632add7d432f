"""The dispatch convention: zerotoml/generic.py (notes/dispatch.md)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from zerotoml.generic import (
    DeviceError,
    DTypeError,
    NoMethodError,
    ShapeError,
    forward,
    generic,
    method,
)
from zerotoml.layers.linear import Linear
from zerotoml.shapes import Float, Int, Tensor, strip
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


@struct
class Pair:
    """Two Linear layers whose fields both use the names d_in and d_out, with
    different sizes: each call checks its own memo, so this must work."""

    first: Linear
    second: Linear


@method
def forward(m: Pair, x: Float[Tensor, "b d_in"]) -> Float[Tensor, "b d_out"]:
    return forward(m.second, forward(m.first, x))


def test_dispatch_on_dataclass_types_and_subclasses():
    x = torch.full((2, 3), 2.0)
    s = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(forward(Scale(s), x), x * s)
    torch.testing.assert_close(forward(Scale2(s), x), x * s)  # inherited method
    torch.testing.assert_close(forward(Shift(s), x), x + s)  # its own, more specific


def test_nested_model_reuses_dimension_names_with_other_sizes():
    g = torch.Generator().manual_seed(0)
    m = Pair(Linear.init(4, 7, generator=g), Linear.init(7, 2, generator=g))
    x = torch.randn(5, 4, generator=g)
    y = forward(m, x)
    expected = (x @ m.first.W + m.first.b) @ m.second.W + m.second.b
    torch.testing.assert_close(y, expected)


def test_shape_mismatch_names_function_argument_expected_and_actual():
    m = Linear.init(4, 3)
    with pytest.raises(ShapeError) as info:
        forward(m, torch.randn(2, 5))
    msg = str(info.value)
    assert "forward(Linear, Tensor)" in msg
    assert "argument `x`" in msg
    assert "'*batch d_in'" in msg
    assert "float32[2, 5]" in msg
    assert "d_in=4" in msg
    assert "Linear.W" in msg  # what bound d_in


def test_field_shapes_are_checked_against_each_other():
    bad = Linear(torch.zeros(4, 3), torch.zeros(5))  # b must have d_out=3 entries
    with pytest.raises(ShapeError, match=r"Linear\.b .*expected Float\[Tensor, 'd_out'\].*float32\[5\]"):
        forward(bad, torch.zeros(2, 4))


def test_return_value_is_checked_in_the_same_memo():
    @struct
    class Broken:
        W: Float[Tensor, "d_in d_out"]

    @method
    def forward(m: Broken, x: Float[Tensor, "b d_in"]) -> Float[Tensor, "b d_out"]:
        return x  # wrong: d_in columns instead of d_out

    with pytest.raises(ShapeError, match="return value"):
        forward(Broken(torch.zeros(3, 2)), torch.zeros(4, 3))


def test_dtype_category_is_checked():
    m = Linear.init(4, 3)
    with pytest.raises(ShapeError, match="int64"):
        forward(m, torch.zeros(2, 4, dtype=torch.long))


def test_mixed_float_dtypes_raise_a_clear_error():
    m = Linear.init(4, 3, dtype=torch.float64)
    with pytest.raises(DTypeError, match=r"argument `x` has dtype torch.float32 but Linear.W"):
        forward(m, torch.zeros(2, 4))


def test_mixed_devices_raise_a_clear_error():
    m = Linear.init(4, 3)
    with pytest.raises(DeviceError, match="meta"):
        forward(m, torch.zeros(2, 4, device="meta"))


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


def test_optional_tensor_arguments_are_checked_when_given():
    @generic
    def masked(model, x, **options):
        """test generic"""

    @method
    def masked(m: Scale, x: Float[Tensor, "t d"], *, mask: Int[Tensor, "t"] | None = None) -> Float[Tensor, "t d"]:
        return x if mask is None else x * mask[:, None]

    s = Scale(torch.ones(3))
    assert masked(s, torch.ones(2, 3)).shape == (2, 3)
    assert masked(s, torch.ones(2, 3), mask=torch.tensor([1, 0])).sum().item() == 3.0
    with pytest.raises(ShapeError, match=r"argument `mask`.*int64\[5\]"):
        masked(s, torch.ones(2, 3), mask=torch.zeros(5, dtype=torch.long))


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
