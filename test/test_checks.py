"""The shape checker: zerotoml/checks.py (notes/dispatch.md#why-not-bare-dispatch-on-jaxtyping-types)."""

import pytest
import torch

from zerotoml.checks import CheckError, DeviceError, DTypeError, ShapeError
from zerotoml.generic import CheckError as CheckErrorOfGeneric
from zerotoml.generic import ShapeError as ShapeErrorOfGeneric
from zerotoml.generic import forward, generic, method
from zerotoml.layers.linear import Linear
from zerotoml.shapes import Float, Int, Tensor
from zerotoml.tree import struct


@struct
class Pair:
    """Two Linear layers whose fields both use the names d_in and d_out, with
    different sizes: each call checks its own memo, so this must work."""

    first: Linear
    second: Linear


@method
def forward(m: Pair, x: Float[Tensor, "b d_in"]) -> Float[Tensor, "b d_out"]:
    return forward(m.second, forward(m.first, x))


@struct
class Gain:
    s: Float[Tensor, "d"]


def test_errors_are_importable_from_generic_too():
    assert ShapeErrorOfGeneric is ShapeError and CheckErrorOfGeneric is CheckError
    assert issubclass(DTypeError, CheckError) and issubclass(DeviceError, CheckError)


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


def test_optional_tensor_arguments_are_checked_when_given():
    @generic
    def masked(model, x, **options):
        """test generic"""

    @method
    def masked(m: Gain, x: Float[Tensor, "t d"], *, mask: Int[Tensor, "t"] | None = None) -> Float[Tensor, "t d"]:
        return x if mask is None else x * mask[:, None]

    s = Gain(torch.ones(3))
    assert masked(s, torch.ones(2, 3)).shape == (2, 3)
    assert masked(s, torch.ones(2, 3), mask=torch.tensor([1, 0])).sum().item() == 3.0
    with pytest.raises(ShapeError, match=r"argument `mask`.*int64\[5\]"):
        masked(s, torch.ones(2, 3), mask=torch.zeros(5, dtype=torch.long))
