"""ResidualBlock against the same block written in torch.nn (torchvision's BasicBlock, which is
not installed here, so the test writes it): values, input and parameter gradients and the
BatchNorm running statistics, float64, train and eval, stride 1 and 2, identity and projection."""

import math

import pytest
import torch
from torch import nn

from zerotoml import engine, forward, from_torch
from zerotoml.generic import method
from zerotoml.layers.conv import Conv
from zerotoml.layers.norm import BatchNorm
from zerotoml.layers.resnet import ResidualBlock, residual_block_from_parts
from zerotoml.testing import assert_matches_torch
from zerotoml.tree import buffers, param_count, set_training


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, as torchvision writes it."""

    def __init__(self, c_in, c_out, stride=1, projection=None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if projection is None:
            projection = c_in != c_out or stride != 1
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                        nn.BatchNorm2d(c_out)) if projection else None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


@method
def from_torch(module: BasicBlock) -> ResidualBlock:
    return residual_block_from_parts(module.conv1, module.bn1, module.conv2, module.bn2,
                                     *(module.downsample or ()))


def torch_block(c_in, c_out, stride, seed, projection=None):
    torch.manual_seed(seed)
    block = BasicBlock(c_in, c_out, stride, projection).double()
    with torch.no_grad():  # BN gains, biases and running statistics away from their defaults
        for bn in [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return block


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("c_in, c_out, stride, projection", [
    (4, 4, 1, False),  # eq. 1: identity shortcut
    (4, 4, 1, True),   # eq. 2 with equal shapes (a projection that changes nothing's shape)
    (3, 5, 1, True),   # eq. 2: more channels
    (4, 6, 2, True),   # eq. 2: more channels, half the resolution
    (4, 4, 2, True),   # eq. 2: half the resolution only
], ids=["identity", "proj-s1", "proj-channels", "proj-s2", "proj-s2-same-c"])
def test_residual_block_matches_torch(c_in, c_out, stride, projection, training):
    block = torch_block(c_in, c_out, stride, seed=c_in * 10 + c_out + stride, projection=projection)
    block.train(training)
    x = torch.randn(3, c_in, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = assert_matches_torch(block, [x], atol=1e-10, rtol=1e-9)
    assert isinstance(ours, ResidualBlock) and (ours.proj_conv is not None) == projection
    assert ours.bn1.training is training and ours.conv1.stride == (stride, stride)


def test_running_statistics_follow_torch_over_steps_then_eval():
    """Three training batches update the running statistics of all three BatchNorms as torch's
    do; the block in eval mode then matches torch's eval output."""
    block = torch_block(3, 6, 2, seed=0)
    ours = from_torch(block)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=g)
        torch.testing.assert_close(forward(ours, x), block(x), atol=1e-10, rtol=1e-10)
    for name, value in buffers(ours).items():
        torch.testing.assert_close(value, buffers(from_torch(block))[name], atol=1e-12, rtol=1e-12)
    block.eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g)
    torch.testing.assert_close(forward(set_training(ours, False), x), block(x), atol=1e-10, rtol=1e-10)


def test_fast_conv_path_gives_the_same_block():
    block = torch_block(4, 6, 2, seed=3).eval()
    ours = from_torch(block)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with engine.use("reference"):
        reference = forward(ours, x)
    with engine.use("fast"):
        torch.testing.assert_close(forward(ours, x), reference, atol=1e-12, rtol=1e-12)


def test_init_follows_the_paper():
    """He et al. 2015 (fan-out, as torchvision): W ~ N(0, 2 / (k² c_out)); no conv biases;
    BN gain 1, bias 0; the projection exactly when shapes change; as many parameters as torch."""
    g = torch.Generator().manual_seed(0)
    block = ResidualBlock.init(64, 128, 2, generator=g, dtype=torch.float64)
    assert block.proj_conv is not None and block.conv1.b is None and block.conv1.stride == (2, 2)
    assert param_count(block) == sum(p.numel() for p in BasicBlock(64, 128, 2).parameters())
    for c, k in ((block.conv1, 3), (block.conv2, 3), (block.proj_conv, 1)):
        std = math.sqrt(2 / (k * k * 128))
        assert abs(c.W.std().item() / std - 1) < 0.05 and abs(c.W.mean().item()) < 0.05 * std
    assert torch.equal(block.bn1.weight, torch.ones(128, dtype=torch.float64))
    assert ResidualBlock.init(8, 8).proj_conv is None
    assert ResidualBlock.init(8, 8, projection=True).proj_bn is not None
    x = torch.randn(2, 64, 10, 10, dtype=torch.float64, generator=g)
    assert forward(block, x).shape == (2, 128, 5, 5)


def test_bad_blocks_and_inputs_are_refused():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="identity shortcut of eq. 1 needs c_in == c_out and stride 1"):
        ResidualBlock.init(4, 8, projection=False)
    with pytest.raises(ValueError, match="identity shortcut.*stride=\\(2, 2\\)"):
        ResidualBlock.init(4, 4, 2, projection=False)
    b = ResidualBlock.init(4, 8, generator=g)
    with pytest.raises(ValueError, match="proj_conv and proj_bn go together"):
        ResidualBlock(b.conv1, b.bn1, b.conv2, b.bn2, b.proj_conv, None)
    with pytest.raises(ValueError, match="conv2.W has shape \\(8, 5, 3, 3\\); expected 8 input channels"):
        ResidualBlock(b.conv1, b.bn1, Conv.init(5, 8, (3, 3), padding=1), b.bn2, b.proj_conv, b.proj_bn)
    with pytest.raises(ValueError, match="proj_conv.W has shape \\(8, 3, 1, 1\\); expected \\(8, 4, ...\\)"):
        ResidualBlock(b.conv1, b.bn1, b.conv2, b.bn2, Conv.init(3, 8, (1, 1)), BatchNorm.init(8))
    with pytest.raises(ValueError, match="give both proj_conv and proj_bn"):
        residual_block_from_parts(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3),
                                  nn.BatchNorm2d(8), nn.Conv2d(4, 8, 1))
    with pytest.raises(ValueError, match="argument `x` has 3 channels .* expects c_in=4"):
        forward(b, torch.randn(2, 3, 8, 8))
