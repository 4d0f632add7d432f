"""zerotoml/shapes.py: the switch and the type stripping plum sees."""

import pytest
import torch

from zerotoml.shapes import Float, Int, Tensor, _read_switch, is_array_hint, strip


def test_strip_replaces_array_types_everywhere():
    assert strip(Float[Tensor, "b d"]) is torch.Tensor
    assert strip(Int[Tensor, "b"] | None) == (torch.Tensor | None)
    assert strip(tuple[Float[Tensor, "b"], Float[Tensor, "c"]]) == tuple[torch.Tensor, torch.Tensor]
    assert strip(int) is int
    assert is_array_hint(Float[Tensor, ""]) and not is_array_hint(torch.Tensor)


def test_switch_values(monkeypatch):
    for value, expected in [("0", False), ("off", False), ("1", True), ("true", True), ("", True)]:
        monkeypatch.setenv("ZEROTOML_CHECKS", value)
        assert _read_switch() is expected
    monkeypatch.setenv("ZEROTOML_CHECKS", "maybe")
    with pytest.raises(ValueError, match="ZEROTOML_CHECKS='maybe'"):
        _read_switch()
