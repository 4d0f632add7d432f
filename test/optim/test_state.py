"""zerotoml/optim/state.py: state made like the parameters, and refused when foreign."""

import pytest
import torch

from zerotoml.layers import Linear
from zerotoml.optim import SGD, Adam
from zerotoml.optim.state import params_and_grads, step_counter, zeros_like_params
from zerotoml.tree import grad, params


def test_state_is_made_like_the_parameters():
    m = Linear.init(3, 2, dtype=torch.float64)
    zs = zeros_like_params(m, fill=0.5)
    assert [(z.shape, z.dtype) for z in zs] == [(p.shape, p.dtype) for p in params(m)]
    assert all(bool((z == 0.5).all()) for z in zs)
    t = step_counter()
    assert t.dtype == torch.int64 and t.dim() == 0 and int(t) == 0


def test_params_and_grads_pairs_parameters_with_their_gradients():
    m = Linear.init(3, 2)
    g = grad(lambda m, x: (x @ m.W + m.b).sum(), m, torch.ones(4, 3))
    ps, gs = params_and_grads(Adam.init(m), m, g, "m", "v")
    assert ps[0] is m.W and gs[0] is g.W
    torch.testing.assert_close(gs[1], torch.full((2,), 4.0))


def test_grads_of_another_model_type_are_refused():
    m = Linear.init(3, 2)
    with pytest.raises(ValueError, match=r"grads is a list .* but model is a Linear"):
        params_and_grads(SGD.init(m), m, [torch.zeros(3, 2), torch.zeros(2)])


def test_state_of_another_dtype_is_refused():
    m = Linear.init(3, 2)
    opt = Adam.init(Linear.init(3, 2, dtype=torch.float64))
    g = grad(lambda m, x: (x @ m.W).sum(), m, torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"Adam.m\[0\] has shape \(3, 2\), float64 but model parameter 0 \('W'\) has shape \(3, 2\), float32"):
        params_and_grads(opt, m, g, "m", "v")
