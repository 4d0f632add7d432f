"""No function changes a tensor it was given: over every layer and model, in both engines,
`forward`, `loss` and a backward pass leave every input and every weight as they were, with
and without autograd, and a second call with other inputs does not change the first call's
inputs (the memory of a tensor the caller holds is never reused). The documented exceptions:
`step` (it says so) and BatchNorm's running statistics in training mode."""

import pytest
import torch
from torch import nn

from zerotoml import engine, forward, from_torch, loss
from zerotoml.layers import (AdaptiveAvgPool, AvgPool, Chain, Dropout, GlobalAvgPool, MaxPool, ResidualBlock)
from zerotoml.diffusion import MLPDenoiser, UNet
from zerotoml.losses import binary_cross_entropy_with_logits, cross_entropy, kl_div, mse_loss, nll_loss
from zerotoml.transformers import BERT, GPT, KVCache
from zerotoml.tree import named_tensors, set_training

torch.manual_seed(0)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _ids(*shape, vocab=13, seed=0):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _gpt(**kw):
    return GPT.init(13, 16, 16, 2, 2, dropout=0.0, generator=torch.Generator().manual_seed(0), **kw)


def _gpt_cached(m, idx):
    logits, cache = forward(m, idx[:, :3], KVCache.init(m, idx.shape[0]))
    more, _ = forward(m, idx[:, 3:], cache)
    return torch.cat([logits, more], dim=1)


def _seq(*modules):
    return from_torch(nn.Sequential(*modules).eval())


# name -> (model, a function making the inputs from a seed, the call)
CASES = {
    "Linear": (lambda: from_torch(nn.Linear(6, 4)), lambda s: (_x(3, 6, seed=s),), forward),
    "Embedding": (lambda: from_torch(nn.Embedding(13, 4)), lambda s: (_ids(2, 5, seed=s),), forward),
    "LayerNorm": (lambda: from_torch(nn.LayerNorm(6)), lambda s: (_x(3, 6, seed=s),), forward),
    "RMSNorm": (lambda: from_torch(nn.RMSNorm(6)), lambda s: (_x(3, 6, seed=s),), forward),
    "BatchNorm eval": (lambda: from_torch(nn.BatchNorm2d(3).eval()), lambda s: (_x(2, 3, 4, 4, seed=s),), forward),
    "GroupNorm": (lambda: from_torch(nn.GroupNorm(2, 4)), lambda s: (_x(2, 4, 3, 3, seed=s),), forward),
    "activations": (lambda: _seq(nn.GELU("tanh"), nn.GELU(), nn.SiLU(), nn.Tanh(), nn.Sigmoid(), nn.ReLU(),
                                 nn.Softmax(-1), nn.LogSoftmax(-1)),
                    lambda s: (_x(3, 6, seed=s),), forward),
    "Dropout": (lambda: Dropout(0.3), lambda s: (_x(3, 6, seed=s),),
                lambda m, x: forward(m, x, generator=torch.Generator().manual_seed(1))),
    "MLP": (lambda: _seq(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)),
            lambda s: (_x(2, 3, 4, seed=s),), forward),
    "MultiheadAttention": (lambda: from_torch(nn.MultiheadAttention(8, 2, batch_first=True)),
                           lambda s: (_x(2, 5, 8, seed=s),),
                           lambda m, x: forward(m, x, x, x, need_weights=False)[0]),
    "MultiheadAttention masked": (lambda: from_torch(nn.MultiheadAttention(8, 2, batch_first=True)),
                                  lambda s: (_x(2, 5, 8, seed=s), _x(2, 4, 8, seed=s + 1)),
                                  lambda m, q, kv: forward(m, q, kv, kv, key_padding_mask=torch.tensor(
                                      [[False, False, True, True], [True, True, True, True]]))[0]),
    "Conv 1x1, batch 1": (lambda: from_torch(nn.Conv2d(8, 8, 1)), lambda s: (_x(1, 8, 16, 16, seed=s),), forward),
    "Conv strided, grouped": (lambda: from_torch(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)),
                              lambda s: (_x(2, 4, 7, 7, seed=s),), forward),
    "Conv1d dilated": (lambda: from_torch(nn.Conv1d(3, 4, 3, dilation=2, padding="same")),
                       lambda s: (_x(2, 3, 9, seed=s),), forward),
    "ConvTranspose": (lambda: from_torch(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)),
                      lambda s: (_x(2, 4, 5, 5, seed=s),), forward),
    "ConvTranspose 1x1": (lambda: from_torch(nn.ConvTranspose2d(4, 4, 1)), lambda s: (_x(1, 4, 6, 6, seed=s),),
                          forward),
    "MaxPool": (lambda: from_torch(nn.MaxPool2d(3, 2, padding=1)), lambda s: (_x(2, 3, 7, 7, seed=s),), forward),
    "AvgPool": (lambda: from_torch(nn.AvgPool2d(2)), lambda s: (_x(2, 3, 6, 6, seed=s),), forward),
    "AdaptiveAvgPool": (lambda: AdaptiveAvgPool((3, 2)), lambda s: (_x(2, 3, 7, 5, seed=s),), forward),
    "GlobalAvgPool": (lambda: GlobalAvgPool(), lambda s: (_x(2, 3, 4, 4, seed=s),), forward),
    "ResidualBlock": (lambda: set_training(ResidualBlock.init(3, 4, stride=2,
                                                              generator=torch.Generator().manual_seed(0)), False),
                      lambda s: (_x(2, 3, 6, 6, seed=s),), forward),
    "EncoderLayer": (lambda: from_torch(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)),
                     lambda s: (_x(2, 5, 8, seed=s),), lambda m, x: forward(m, x, is_causal=False)),
    "Transformer": (lambda: from_torch(nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True)),
                    lambda s: (_x(2, 5, 8, seed=s), _x(2, 4, 8, seed=s + 1)), forward),
    "GPT loss": (_gpt, lambda s: (_ids(2, 8, seed=s), _ids(2, 8, seed=s + 1)), loss),
    "GPT rotary": (lambda: _gpt(positions="rotary"), lambda s: (_ids(2, 8, seed=s),), forward),
    "GPT with a KV cache": (_gpt, lambda s: (_ids(2, 6, seed=s),), _gpt_cached),
    "BERT loss": (lambda: BERT.init(13, 16, 16, 1, 2, dropout=0.0, generator=torch.Generator().manual_seed(0)),
                  lambda s: (_ids(2, 8, seed=s), torch.where(_ids(2, 8, seed=s + 1) < 4, _ids(2, 8, seed=s + 2),
                                                             torch.full((2, 8), -100))), loss),
    "UNet": (lambda: UNet.init(1, channels=(8, 16), layers_per_block=1, groups=4, num_classes=3,
                               generator=torch.Generator().manual_seed(0)),
             lambda s: (_x(2, 1, 8, 8, seed=s), _ids(2, vocab=1000, seed=s)),
             lambda m, x, t: forward(m, x, t, class_labels=torch.tensor([0, 2]))),
    "MLPDenoiser": (lambda: MLPDenoiser.init(2, width=16, depth=2), lambda s: (_x(5, 2, seed=s), _x(5, seed=s).abs()),
                    forward),
    "cross_entropy": (lambda: None, lambda s: (_x(4, 5, seed=s), _ids(4, vocab=5, seed=s)),
                      lambda _, z, t: cross_entropy(z, t, label_smoothing=0.1)),
    "other losses": (lambda: None, lambda s: (_x(4, 5, seed=s), _x(4, 5, seed=s + 1).sigmoid()),
                     lambda _, z, q: mse_loss(z, q) + binary_cross_entropy_with_logits(z, q)
                     + kl_div(z.log_softmax(-1), q.softmax(-1), reduction="batchmean")
                     + nll_loss(z.log_softmax(-1), q.argmax(-1))),
}


def _tensors(model, inputs):
    found = [(f"input {i}", x) for i, x in enumerate(inputs)]
    if model is not None:
        found += [(name, t) for name, t, _ in named_tensors(model)]
    return found


def _run(call, model, inputs, grad):
    inputs = tuple(x.requires_grad_() if grad and x.is_floating_point() else x for x in inputs)
    if not grad:
        with torch.no_grad():
            return call(model, *inputs)
    y = call(model, *inputs)
    wants = [t for _, t in _tensors(model, inputs) if t.requires_grad]
    torch.autograd.grad(y.float().sum() if y.dim() else y, wants, allow_unused=True)
    return y


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("engine_name", ["reference", "fast"])
@pytest.mark.parametrize("name", CASES)
def test_nothing_a_caller_holds_is_changed(name, engine_name, grad):
    make_model, make_inputs, call = CASES[name]
    with engine.use(engine_name):
        model = make_model()
        if model is not None:  # parameters that ask for gradients, as in training
            for _, t, kind in named_tensors(model):
                if kind == "param" and t.is_floating_point() and grad:
                    t.requires_grad_()
        first = make_inputs(0)
        held = [(n, t, t.detach().clone()) for n, t in _tensors(model, first)]
        _run(call, model, first, grad)
        _run(call, model, make_inputs(7), grad)  # a second call, other inputs of the same shapes
        _run(call, model, make_inputs(9), grad)
    changed = [n for n, t, before in held if not torch.equal(t.detach(), before)]
    assert not changed, f"{name} ({engine_name}, {'autograd' if grad else 'no_grad'}) changed {changed}"


@pytest.mark.parametrize("engine_name", ["reference", "fast"])
def test_batchnorm_in_training_changes_only_its_running_statistics(engine_name):
    with engine.use(engine_name):
        m = from_torch(nn.BatchNorm2d(3))
        x = _x(2, 3, 4, 4)
        x0, w0, b0 = x.clone(), m.weight.clone(), m.bias.clone()
        rm0 = m.running_mean.clone()
        forward(m, x)
    assert torch.equal(x, x0) and torch.equal(m.weight, w0) and torch.equal(m.bias, b0)
    assert not torch.equal(m.running_mean, rm0)  # (documented: updated in place, as torch)
