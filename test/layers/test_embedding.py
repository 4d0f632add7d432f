"""Embedding: zerotoml/layers/embedding.py (notes/layers.md#embedding). Level 3 against nn.Embedding."""

import pytest
import torch

from zerotoml import forward, from_torch, shapes
from zerotoml.generic import ShapeError
from zerotoml.layers.embedding import Embedding
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import grad


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
@pytest.mark.parametrize("ids_shape", [(), (5,), (2, 4), (2, 3, 2)])
def test_embedding_matches_torch(padding_idx, ids_shape):
    torch.manual_seed(0)
    module = torch.nn.Embedding(7, 4, padding_idx=padding_idx).double()
    with torch.no_grad():
        module.weight.normal_()  # a non-zero padding row: its value still reaches the output
    ids = torch.randint(0, 7, ids_shape)
    if ids.dim() > 0:
        ids.view(-1)[0] = module.padding_idx if padding_idx is not None else 1
    assert_matches_torch(module, [ids])


def test_padding_row_gets_no_gradient():
    m = Embedding.init(6, 3, padding_idx=2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.all(m.W[2] == 0)
    ids = torch.tensor([[2, 1, 2], [5, 2, 1]])
    g = grad(lambda m: forward(m, ids).pow(2).sum() + forward(m, ids).sum(), m)
    assert torch.all(g.W[2] == 0)
    assert torch.all(g.W[1] != 0) and torch.all(g.W[0] == 0)


@pytest.mark.parametrize("bad", [7, 12, -1])
def test_id_out_of_range_names_id_and_vocab(bad):
    m = Embedding.init(7, 2)
    with pytest.raises(IndexError, match=rf"id {bad}, outside \[0, 7\) for vocab=7"):
        forward(m, torch.tensor([0, bad, 1]))


@pytest.mark.skipif(not shapes.CHECKS, reason="shape checks are off (ZEROTOML_CHECKS=0)")
def test_float_ids_are_refused():
    with pytest.raises(ShapeError, match="argument `ids`"):
        forward(Embedding.init(7, 2), torch.tensor([0.0, 1.0]))


def test_from_torch_keeps_dtype_and_refuses_max_norm():
    m = from_torch(torch.nn.Embedding(5, 3, padding_idx=-2))
    assert m.W.dtype == torch.float32 and m.padding_idx == 3
    with pytest.raises(NotImplementedError, match="max_norm=1.0"):
        from_torch(torch.nn.Embedding(5, 3, max_norm=1.0))
    with pytest.raises(ValueError, match="padding_idx=9"):
        Embedding.init(5, 3, padding_idx=9)
