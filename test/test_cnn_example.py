"""A CNN with a residual block learns scikit-learn's digits (8x8) with the training loop, and the
example examples/cnn_fashion_mnist.py runs on digits and writes its run folder."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from zerotoml.__main__ import main
from zerotoml.classifier import Classifier, accuracy
from zerotoml.data import Batches
from zerotoml.data.digits import digits
from zerotoml.layers import BatchNorm, Chain, Flatten, Linear, ReLU
from zerotoml.layers.conv import Conv, MaxPool
from zerotoml.layers.resnet import ResidualBlock
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import train
from zerotoml.tree import set_training


def test_cnn_on_digits_reaches_95_percent():
    """conv 3x3 (16) - BN - ReLU - max-pool 2 - residual block - flatten - linear, 120 steps of 64."""
    x, y = digits("train")  # (1438, 1, 8, 8)
    x_test, y_test = digits("test")
    g = torch.Generator().manual_seed(0)
    model = Classifier(Chain([
        Conv.init(1, 16, (3, 3), padding=1, bias=False, generator=g), BatchNorm.init(16), ReLU(),
        MaxPool.init((2, 2)), ResidualBlock.init(16, 16, generator=g), Flatten(), Linear.init(16 * 4 * 4, 10, generator=g),
    ]))
    r = train(model, AdamW.init(model, lr=3e-3), Batches((x, y), 64, seed=0), steps=120,
              schedule=Cosine(3e-3, 120, warmup_steps=10), progress=False, plot=False)
    assert accuracy(set_training(r.model, False), x_test, y_test) >= 0.95
    assert r.series("loss")[1][-1] < 0.3


@pytest.mark.slow
def test_run_cnn_example_on_digits(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "cnn_fashion_mnist", "--engine", "fast", "--dataset", "digits", "--steps", "150",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "digits" and result["steps"] == 150 and result["engine"] == "fast"
    assert result["test_accuracy"] >= 0.95
    for png in ("loss_curve.png", "predictions.png", "filters.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert "test accuracy" in capsys.readouterr().out


def test_example_falls_back_to_digits_with_a_notice(monkeypatch, capsys):
    import zerotoml.data

    def absent(*args, **kwargs):
        raise FileNotFoundError("fashion-mnist: train-images-idx3-ubyte.gz not found")

    monkeypatch.setattr(zerotoml.data, "fashion_mnist", absent)
    path = Path(__file__).resolve().parents[1] / "examples" / "cnn_fashion_mnist.py"
    spec = importlib.util.spec_from_file_location("cnn_fashion_mnist_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    name, (x, y, x_test, y_test), classes = example.load("auto")
    assert name == "digits" and x.shape[1:] == (1, 8, 8) and len(classes) == 10
    assert "notice: Fashion-MNIST is not on this machine" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        example.load("fashion-mnist")
