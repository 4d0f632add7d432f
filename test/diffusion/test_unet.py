"""The DDPM U-Net against diffusers' UNet2DModel: the same weights give the same outputs, input
gradients and parameter gradients in float64 (level 3); its parts, sizes and errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zerotoml import engine, forward, from_torch
from zerotoml.diffusion.embeddings import drop_labels
from zerotoml.diffusion.unet import UNet
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import named_params, param_count

diffusers = pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)


def diffusers_unet(seed=0, **config):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(**{**SMALL, **config}).double()


def inputs(unet, batch=2, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = unet.config.in_channels
    return [torch.randn(batch, c, size, size, generator=g, dtype=torch.float64), torch.tensor([3, 917][:batch])]


def sample(out):
    return getattr(out, "sample", out)  # diffusers returns UNet2DOutput(sample=...)


CONFIGS = {
    # one head, one block a level, 1 channel in and out
    "one-head": dict(in_channels=1, out_channels=1, layers_per_block=1, attention_head_dim=None),
    # 8 heads of 8 channels at the lowest level and in the middle, two blocks a level
    "heads-and-two-blocks": dict(in_channels=3, out_channels=3, layers_per_block=2, attention_head_dim=8),
    # the DDPM paper's sinusoids (sin first, shift 1), padding 0 downsampling, a scaled middle
    "paper-embedding": dict(in_channels=2, out_channels=3, layers_per_block=1, flip_sin_to_cos=False, freq_shift=1,
                            downsample_padding=0, mid_block_scale_factor=2.0, attention_head_dim=32),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_unet_matches_diffusers(name):
    unet = diffusers_unet(**CONFIGS[name])
    assert_matches_torch(unet, inputs(unet), select=sample)


def test_class_conditional_unet_matches_diffusers():
    unet = diffusers_unet(in_channels=1, out_channels=1, layers_per_block=1, num_class_embeds=5)
    labels = torch.tensor([4, 0])
    assert_matches_torch(unet, inputs(unet), kwargs={"class_labels": labels}, select=sample)


def test_unet_of_size_16_matches_diffusers():
    unet = diffusers_unet(in_channels=3, out_channels=3, layers_per_block=2, sample_size=16)
    assert_matches_torch(unet, inputs(unet, size=16), select=sample)


def test_init_builds_diffusers_architecture():
    """UNet.init makes the layers of the same UNet2DModel, with the same shapes and names' order."""
    config = dict(in_channels=2, out_channels=3, layers_per_block=2, block_out_channels=(16, 32, 32),
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), num_class_embeds=4)
    theirs = from_torch(diffusers_unet(**config))
    ours = UNet.init(2, 3, channels=(16, 32, 32), layers_per_block=2, attention=(False, True, True), num_classes=4,
                     heads=4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert [tuple(p.shape) for p in named_params(ours).values()] == \
        [tuple(p.shape) for p in named_params(theirs).values()]
    assert param_count(ours) == sum(p.numel() for p in diffusers_unet(**config).parameters())
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    assert forward(ours, x, torch.tensor([1, 2]), class_labels=torch.tensor([0, 3])).shape == (2, 3, 12, 12)


def test_a_size_that_cannot_be_halved_enough_is_refused_by_name():
    unet = UNet.init(1, channels=(8, 16, 16), layers_per_block=1, groups=4)
    assert forward(unet, torch.randn(1, 1, 28, 28), 5).shape == (1, 1, 28, 28)  # 28 → 14 → 7
    with pytest.raises(ValueError, match=r"30x30.*3 levels halves it 2 times.*multiple of 4"):
        forward(unet, torch.randn(1, 1, 30, 30), 5)
    with pytest.raises(ValueError, match=r"28x28.*4 levels halves it 3 times.*multiple of 8"):
        UNet.init(1, channels=(8, 8, 8, 8), groups=4, sample_size=28)


def test_null_class_is_the_unconditional_model():
    g = torch.Generator().manual_seed(0)
    unet = UNet.init(1, channels=(8, 16), layers_per_block=1, groups=4, num_classes=3, null_class=True, generator=g)
    assert unet.null_class == 3 and unet.class_embedding.W.shape[0] == 4
    x, t = torch.randn(2, 1, 8, 8, generator=g), torch.tensor([10, 20])
    torch.testing.assert_close(forward(unet, x, t), forward(unet, x, t, class_labels=torch.tensor([3, 3])))
    assert not torch.allclose(forward(unet, x, t), forward(unet, x, t, class_labels=torch.tensor([0, 1])))
    labels = drop_labels(unet, torch.zeros(4000, dtype=torch.long), 0.2, generator=g)
    assert set(labels.tolist()) == {0, 3} and abs((labels == 3).float().mean().item() - 0.2) < 0.03
    no_null = UNet.init(1, channels=(8, 16), layers_per_block=1, groups=4, num_classes=3)
    with pytest.raises(ValueError, match="no null class"):
        forward(no_null, x, t)
    with pytest.raises(ValueError, match="no class embedding"):
        forward(UNet.init(1, channels=(8, 16), layers_per_block=1, groups=4), x, t, class_labels=t)


def test_from_torch_names_a_null_class_and_keeps_the_mode():
    unet = diffusers_unet(in_channels=1, out_channels=1, layers_per_block=1, num_class_embeds=5, dropout=0.1)
    ours = from_torch(unet.eval(), null_class=4)
    assert ours.null_class == 4 and not ours.down[0].resnets[0].dropout.training
    assert from_torch(unet.train()).down[0].resnets[0].dropout.p == 0.1
    with pytest.raises(ValueError, match="null_class=5"):
        from_torch(unet, null_class=5)


@pytest.mark.parametrize("option,value", [("resnet_time_scale_shift", "scale_shift"),
                                          ("time_embedding_type", "fourier"), ("center_input_sample", True),
                                          ("down_block_types", ("SkipDownBlock2D", "AttnDownBlock2D")),
                                          ("act_fn", "mish")])
def test_unsupported_configurations_are_refused_by_name(option, value):
    name = "down_block_types" if option == "down_block_types" else option
    unet = diffusers_unet(layers_per_block=1, **{option: value})
    with pytest.raises(NotImplementedError, match=name if option != "down_block_types" else "SkipDownBlock2D"):
        from_torch(unet)


def test_fast_engine_gives_the_reference_values():
    unet = from_torch(diffusers_unet(in_channels=1, out_channels=1, layers_per_block=1, attention_head_dim=8))
    x, t = inputs(diffusers_unet(in_channels=1, layers_per_block=1))
    with engine.use("reference"):
        ref = forward(unet, x, t)
    with engine.use("fast"):
        fast = forward(unet, x, t)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=1e-12)


@pytest.mark.slow
def test_zerotoml_diffusion_imports_without_diffusers():
    code = ("import sys; sys.modules['diffusers'] = None\n"  # find_spec and import both fail
            "import torch, zerotoml.diffusion.unet as u\n"
            "from zerotoml import forward\n"
            "m = u.UNet.init(1, channels=(8, 16), layers_per_block=1, groups=4)\n"
            "assert forward(m, torch.randn(1, 1, 8, 8), 3).shape == (1, 1, 8, 8)\n"
            "assert 'diffusers' not in [k for k, v in sys.modules.items() if v is not None]\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
