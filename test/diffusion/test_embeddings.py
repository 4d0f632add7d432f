"""zerotoml/diffusion/embeddings.py: the sinusoidal time embedding is diffusers' bit for bit and
the Transformer's sinusoid; an odd width ends in a zero column."""

import pytest
import torch

from zerotoml.diffusion.embeddings import timestep_embedding

diffusers = pytest.importorskip("diffusers")
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402


@pytest.mark.parametrize("flip,shift,dim", [(True, 0, 32), (False, 1, 32), (True, 1, 33), (False, 0, 7)])
def test_time_embedding_is_diffusers_bit_for_bit(flip, shift, dim):
    t = torch.tensor([0.0, 1.0, 2.5, 17.0, 999.0])
    ours = timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    theirs = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, theirs)


def test_time_embedding_is_the_transformers_sinusoid():
    """shift 0, sines first: PE(t, k) = sin(t / 10000^{k/half}), PE(t, half + k) = cos(...)."""
    t = torch.tensor([0, 5, 40])
    pe = timestep_embedding(t, 8, flip_sin_to_cos=False).double()
    angle = t[:, None].double() / 10000.0 ** (torch.arange(4).double() / 4)
    torch.testing.assert_close(pe, torch.cat([angle.sin(), angle.cos()], dim=1), atol=1e-5, rtol=0)


def test_an_odd_width_ends_in_a_zero_column():
    e = timestep_embedding(torch.tensor([3.0, 8.0]), 9)
    assert e.shape == (2, 9) and torch.equal(e[:, -1], torch.zeros(2))
