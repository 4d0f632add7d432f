"""Chain, MLP, Flatten: zerotoml/layers/chain.py (notes/layers.md#chain). Level 3 against nn.Sequential."""

import pytest
import torch
from torch import nn

from zerotoml import forward, from_torch
from zerotoml.generic import NoMethodError
from zerotoml.layers.activation import GELU, ReLU
from zerotoml.layers.chain import MLP, Chain, Flatten
from zerotoml.layers.dropout import Dropout
from zerotoml.layers.linear import Linear
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import param_count, set_training


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


SEQUENTIALS = {
    "linear-relu-layernorm-gelu": lambda: nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.LayerNorm(6), nn.GELU(),
                                                        nn.Dropout(0.3), nn.Linear(6, 2)).eval(),
    "batchnorm-train-tanh": lambda: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(),
                                                  nn.Linear(4, 3), nn.LogSoftmax(dim=-1)),
    "nested-silu-rmsnorm": lambda: nn.Sequential(nn.Sequential(nn.Linear(5, 5), nn.SiLU()), nn.RMSNorm(5),
                                                 nn.Linear(5, 1, bias=False), nn.Sigmoid()),
}


@pytest.mark.parametrize("name", SEQUENTIALS)
def test_sequential_matches_torch(name):
    torch.manual_seed(0)
    module = SEQUENTIALS[name]().double()
    assert_matches_torch(module, [x64(7, 5)])


def test_flatten_then_linear_on_images_matches_torch():
    torch.manual_seed(0)
    module = nn.Sequential(nn.GroupNorm(1, 2), nn.Flatten(), nn.Linear(2 * 3 * 4, 5), nn.Softmax(dim=1)).double()
    assert_matches_torch(module, [x64(3, 2, 3, 4)])


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (1, 2), (2, 3), (0, 0), (-2, -1)])
def test_flatten_matches_torch(start, end):
    assert_matches_torch(nn.Flatten(start, end), [x64(2, 3, 4, 5)])


def test_flatten_refuses_an_empty_range():
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\); start_dim=2, end_dim=1"):
        forward(Flatten(2, 1), torch.zeros(2, 3, 4))


def test_from_torch_keeps_mode_and_dtype_of_children():
    m = from_torch(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.BatchNorm1d(3)).eval())
    assert m.layers[1] == Dropout(0.5, False) and m.layers[2].training is False
    assert m.layers[0].W.dtype == torch.float32


def test_unknown_child_module_raises_no_method_error():
    with pytest.raises(NoMethodError, match="from_torch"):
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.Bilinear(3, 3, 1)))


def test_mlp_init_structure_and_forward():
    g = torch.Generator().manual_seed(0)
    m = MLP.init([4, 8, 8, 3], activation="gelu", dropout=0.25, generator=g, dtype=torch.float64)
    kinds = [type(layer) for layer in m.layers]
    assert kinds == [Linear, GELU, Dropout, Linear, GELU, Dropout, Linear]
    assert param_count(m) == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3
    x = x64(10, 4)
    a = forward(m, x, generator=torch.Generator().manual_seed(1))
    b = forward(m, x, generator=torch.Generator().manual_seed(1))
    assert a.shape == (10, 3) and torch.equal(a, b)
    # eval: the same as applying the layers by hand without dropout
    e = set_training(m, False)
    h = x
    for layer in (e.layers[0], e.layers[1], e.layers[3], e.layers[4], e.layers[6]):
        h = forward(layer, h)
    torch.testing.assert_close(forward(e, x), h, atol=0, rtol=0)


def test_chain_of_chains_passes_the_generator():
    inner = Chain([Dropout(0.5)])
    x = torch.ones(100)
    a = forward(Chain([inner, ReLU()]), x, generator=torch.Generator().manual_seed(2))
    b = forward(Dropout(0.5), x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_mlp_needs_two_sizes():
    with pytest.raises(ValueError, match=r"sizes=\[3\]"):
        MLP.init([3])
