"""zerotoml/diffusion/unet_blocks.py: the U-Net's pieces (the whole U-Net is checked against
diffusers in test_unet.py)."""

import torch

from zerotoml.diffusion.unet_blocks import nearest_upsample


def test_nearest_upsample_is_torchs():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(nearest_upsample(x), torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
