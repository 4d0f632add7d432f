"""Image features for a Fréchet distance where Inception cannot be downloaded: the penultimate
activations of the CNN of examples/cnn_fashion_mnist.py, trained in zerotoml. Note:
notes/ddpm.md#results.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to Inception-v3's pool
features of two image sets. Offline there is no Inception network, so the diffusion examples use
the same distance (`zerotoml.metrics.gaussian_frechet_distance`) on the 64 (Fashion-MNIST) or 32
(digits) global-average-pooled activations of that example's classifier: the numbers are
comparable with each other, not with published FIDs. The classifier is trained by the example's
own ``main`` into a run folder, and reused from there when it has finished:

    python -m zerotoml run cnn_fashion_mnist --steps 600 --out runs/ddpm_fashion_mnist/features
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoint import TENSORS, latest_checkpoint, list_checkpoints
from ..generic import forward
from ..layers.chain import Chain
from ..layers.conv import AdaptiveAvgPool
from ..metrics import gaussian_frechet_distance
from ..shapes import Float, Tensor
from ..tree import set_training, struct, to
from ..weights import load_state_dict, read_safetensors

__all__ = ["FeatureNet", "features", "feature_stats", "frechet_to", "cnn_example", "feature_net", "resize"]


@struct
class FeatureNet:
    """A trained classifier (a Chain ending in global average pooling and a linear layer) read
    at its penultimate layer; images in [0, 1] are standardised with ``mean`` and ``std`` of
    its training set and resized to ``size`` first."""

    classifier: Any
    mean: float
    std: float
    size: int


def resize(images: Float[Tensor, "n c h w"], size: int) -> Float[Tensor, "n c size size"]:
    """Square images at another resolution: area averaging down, bilinear interpolation up."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return forward(AdaptiveAvgPool((size, size)), images)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def features(net: FeatureNet, images: Float[Tensor, "n c h w"], *, chunk: int = 1000) -> Float[Tensor, "n d"]:
    """The penultimate activations of ``images`` (values in [0, 1]), ``chunk`` at a time."""
    body = net.classifier.body
    trunk = Chain(body.layers[:-1])  # every layer but the last linear one: up to the global average pool
    device = body.layers[0].W.device
    out = []
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            x = resize(images[i:i + chunk].to(device=device, dtype=torch.float32), net.size)
            out.append(forward(trunk, (x - net.mean) / net.std).double().cpu())
    return torch.cat(out)


def feature_stats(f: Float[Tensor, "n d"]) -> tuple[Float[Tensor, "d"], Float[Tensor, "d d"]]:
    """(μ, Σ) of the Gaussian fitted to features f, in float64."""
    f = f.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_to(f: Float[Tensor, "n d"], stats: tuple[Tensor, Tensor]) -> float:
    """The Fréchet distance between the Gaussian fitted to features f and the reference (μ, Σ)."""
    return gaussian_frechet_distance(*feature_stats(f), *stats)


def cnn_example() -> Any:
    """examples/cnn_fashion_mnist.py as a module (found where ``python -m zerotoml`` finds examples)."""
    from ..__main__ import find_examples

    found = find_examples()
    if "cnn_fashion_mnist" not in found:
        raise FileNotFoundError("the feature network is trained by examples/cnn_fashion_mnist.py, which is not "
                                "here; run from a checkout or set ZEROTOML_EXAMPLES to its examples/ folder")
    name = "zerotoml_example_cnn_fashion_mnist"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, found["cnn_fashion_mnist"][0])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _finished(folder: Path) -> dict | None:
    """The result.json of a finished CNN run in ``folder`` (its newest checkpoint at its last step)."""
    result, found = folder / "result.json", list_checkpoints(folder / "checkpoints")
    if not result.exists() or not found:
        return None
    summary = json.loads(result.read_text())
    return summary if found[-1][0] == summary["steps"] else None


def feature_net(folder: str | Path, dataset: str, x_train: Tensor, *, steps: int | None = None,
                device: torch.device | str = "cpu", progress: bool = True) -> tuple[FeatureNet, dict]:
    """The feature network of ``dataset`` ("fashion-mnist" or "digits") from the CNN run in
    ``folder``: reused when that run has finished, continued when it was interrupted, trained
    by the example's ``main`` (``steps`` optimizer steps, the example's default if None)
    otherwise. ``x_train`` (the training images in [0, 1]) gives the standardisation, as in the
    example. Returns the network and the run's result.json."""
    folder = Path(folder)
    example = cnn_example()
    summary = _finished(folder)
    if summary is None:
        argv = ["--dataset", dataset, "--out", str(folder), "--device", str(device)]
        argv += ["--steps", str(steps)] * (steps is not None)
        argv += ["--resume"] * (folder / "checkpoints").is_dir() + ["--no-progress"] * (not progress)
        print(f"training the feature network: cnn_fashion_mnist {' '.join(argv)}", flush=True)
        if example.main(argv) != 0:
            raise RuntimeError(f"the feature network's run in {folder} failed (see above)")
        summary = _finished(folder)
    if summary is None or summary["dataset"] != dataset:
        raise ValueError(f"{folder} holds a CNN run on {summary and summary['dataset']!r}, not {dataset!r}; "
                         f"pass another --features folder")
    template = example.cnn(tuple(summary["channels"]), 10)
    path = latest_checkpoint(folder / "checkpoints") / TENSORS  # the model's tensors, without its optimizer's
    tensors = {k[len("model."):]: v for k, v in read_safetensors(path)[0].items() if k.startswith("model.")}
    model = load_state_dict(template, tensors, source=str(path))
    # the example standardises with the training set's statistics: x ← (x − μ) / σ
    μ, σ = float(x_train.double().mean().float()), float(x_train.double().std().float())
    net = FeatureNet(set_training(to(model, device=device), False), μ, σ, x_train.shape[-1])
    return net, summary
