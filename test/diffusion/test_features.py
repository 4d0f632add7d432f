"""zerotoml/diffusion/features.py: the feature CNN is trained once by examples/cnn_fashion_mnist.py
into its run folder and reused from there; its penultimate activations put the test split much
nearer the train split than noise images, which is what the Fréchet distance of the diffusion
examples rests on."""

import pytest
import torch

from zerotoml.data.digits import digits
from zerotoml.diffusion import features as F


def test_the_feature_cnn_is_trained_once_then_reused(tmp_path, monkeypatch, capsys):
    x, _ = digits("train")
    x_test, _ = digits("test")
    net, summary = F.feature_net(tmp_path / "features", "digits", x, steps=40, progress=False)
    assert "training the feature network" in capsys.readouterr().out
    assert summary["dataset"] == "digits" and summary["steps"] == 40
    f = F.features(net, x_test, chunk=100)
    assert f.shape == (len(x_test), summary["channels"][-1]) and f.dtype == torch.float64
    ref = F.feature_stats(F.features(net, x))
    noise = torch.rand(len(x_test), 1, 8, 8, generator=torch.Generator().manual_seed(0))
    floor, far = F.frechet_to(f, ref), F.frechet_to(F.features(net, noise), ref)
    assert floor < 0.05 * far, (floor, far)

    def no_training(argv):  # a finished run is read, not trained again
        raise AssertionError(f"trained again: {argv}")

    monkeypatch.setattr(F.cnn_example(), "main", no_training)
    again, _ = F.feature_net(tmp_path / "features", "digits", x, steps=40, progress=False)
    torch.testing.assert_close(F.features(again, x_test), f)
    with pytest.raises(ValueError, match="holds a CNN run on 'digits', not 'fashion-mnist'"):
        F.feature_net(tmp_path / "features", "fashion-mnist", x)


def test_resize_averages_down_and_interpolates_up():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(F.resize(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert F.resize(F.resize(x, 2), 4).shape == (1, 1, 4, 4) and F.resize(x, 4) is x
