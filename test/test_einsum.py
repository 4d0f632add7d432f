"""zerotoml/einsum.py, the door every contraction goes through: under the reference engine it
is einops.einsum (torch.einsum) plus ``plus``; under the fast engine the planner, with the same
values (the planner itself: test/engine/test_planner.py)."""

import pytest
import torch

from zerotoml import engine
from zerotoml.einsum import einsum

f64 = torch.float64


@pytest.mark.parametrize("engine_name", ["reference", "fast"])
def test_the_door_equals_torch_einsum_plus(engine_name):
    g = torch.Generator().manual_seed(0)
    x, W, b = (torch.randn(*s, dtype=f64, generator=g) for s in ((2, 3, 4), (4, 5), (5,)))
    with engine.use(engine_name):
        y = einsum(x, W, "b t d_in, d_in d_out -> b t d_out", plus=b)
        s = einsum(x, x, "b t d, b u d -> b t u")
    torch.testing.assert_close(y, torch.einsum("btd,de->bte", x, W) + b, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(s, torch.einsum("btd,bud->btu", x, x), atol=1e-12, rtol=1e-12)


def test_only_the_fast_engine_calls_the_planner(monkeypatch):
    calls = []
    real = engine.planner.einsum
    monkeypatch.setattr(engine.planner, "einsum", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(2, 3)
    with engine.use("reference"):
        einsum(x, x, "a b, c b -> a c")
    assert not calls
    with engine.use("fast"):
        einsum(x, x, "a b, c b -> a c")
    assert calls == [1]
