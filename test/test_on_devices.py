"""The device contract: every layer gives torch's values and gradients on every device present
(CPU always; CUDA and MPS where the machine has them), under the engine the run selects,
within float64 tolerances: a GPU sums in another order than the CPU, so results are equal to
torch's on the same device within these tolerances, never promised bit-equal across devices.
CI runs this on the CPU; on a machine with a GPU the same file runs there too."""

import pytest
import torch
from torch import nn

from zerotoml.devices import available_devices
from zerotoml.testing import assert_matches_torch
from zerotoml.transformers import GPT
from zerotoml import loss

DEVICES = [d for d in available_devices() if d != "mps"]  # (MPS has no float64)
f64 = torch.float64


def _x(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed))


MODULES = {  # name -> (torch module, inputs)
    "Linear": (lambda: nn.Linear(6, 4), lambda: (_x(3, 6),)),
    "Embedding": (lambda: nn.Embedding(11, 4), lambda: (torch.tensor([[1, 5, 10], [0, 0, 3]]),)),
    "LayerNorm": (lambda: nn.LayerNorm(6), lambda: (_x(3, 6),)),
    "RMSNorm": (lambda: nn.RMSNorm(6), lambda: (_x(3, 6),)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), lambda: (_x(2, 3, 4, 4),)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), lambda: (_x(2, 4, 3, 3),)),
    "GELU tanh": (lambda: nn.GELU("tanh"), lambda: (_x(3, 6),)),
    "Softmax": (lambda: nn.Softmax(-1), lambda: (_x(3, 6),)),
    "MLP": (lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)), lambda: (_x(3, 6),)),
    "Conv2d": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), lambda: (_x(2, 4, 7, 7),)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
                        lambda: (_x(2, 4, 5, 5),)),
    "MaxPool2d": (lambda: nn.MaxPool2d(3, 2, padding=1), lambda: (_x(2, 3, 7, 7),)),
    "MultiheadAttention": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), lambda: (_x(2, 5, 8),) * 3),
    "TransformerEncoderLayer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                                lambda: (_x(2, 5, 8),)),
}


def _to(xs, device):
    return tuple(x.to(device) for x in xs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODULES)
def test_each_layer_matches_torch_on_each_device(name, device):
    make, inputs = MODULES[name]
    module = make().to(device=device, dtype=f64)
    select = (lambda o: o[0]) if name == "MultiheadAttention" else (lambda o: o)
    model = assert_matches_torch(module, _to(inputs(), device), select=select, atol=1e-10, rtol=1e-10)
    assert all(t.device.type == device for t in torch.utils._pytree.tree_leaves(model)
               if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("device", DEVICES)
def test_a_gpt_loss_on_each_device_equals_the_cpu_within_float64_tolerance(device):
    m = GPT.init(11, 8, 16, 2, 2, dropout=0.0, generator=torch.Generator().manual_seed(1), dtype=f64)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    on_cpu = loss(m, idx[:, :-1], idx[:, 1:])
    from zerotoml.tree import to
    there = loss(to(m, device), idx[:, :-1].to(device), idx[:, 1:].to(device))
    torch.testing.assert_close(there.cpu(), on_cpu, atol=1e-12, rtol=1e-12)
