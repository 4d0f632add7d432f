"""zerotoml/diffusion/common.py: a sampler calls a model and a plain function the same way;
times are one per example."""

import pytest
import torch

from zerotoml.diffusion import MLPDenoiser
from zerotoml.diffusion.common import as_function, times
from zerotoml.generic import forward


def test_a_model_and_a_callable_are_called_alike():
    m = MLPDenoiser.init(2, width=8, depth=1, generator=torch.Generator().manual_seed(0))
    x, t = torch.randn(3, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([1, 2, 3])
    assert torch.equal(as_function(m)(x, t), forward(m, x, t))
    f = lambda x, t, scale=1.0: scale * x * t[:, None]  # noqa: E731
    assert as_function(f) is f
    assert torch.equal(as_function(f, scale=2.0)(x, t), 2.0 * x * t[:, None])
    with pytest.raises(TypeError, match="expected a zerotoml model or a callable f\\(x, t\\); got int"):
        as_function(3)


def test_times_are_one_per_example():
    x = torch.zeros(4, 2)
    assert torch.equal(times(0.5, x), torch.full((4,), 0.5))
    assert torch.equal(times(torch.tensor([1, 2, 3, 4]), x), torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="t has shape \\(3,\\); expected \\(\\) or \\(4,\\)"):
        times(torch.zeros(3), x)
