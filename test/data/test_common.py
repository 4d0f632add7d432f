"""The shared conventions: images to floats, and where the cache is."""

from pathlib import Path

import pytest
import torch

from zerotoml.data import cache_dir, fake_cifar, images_to_float


def test_uint8_images_become_x_over_255():
    x, _ = fake_cifar(4)
    f = images_to_float(x, dtype=torch.float64)
    assert f.dtype == torch.float64 and f.shape == x.shape
    assert torch.equal(f * 255, x.double())
    assert f.min() >= 0 and f.max() <= 1
    assert images_to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]


def test_float_images_are_only_cast_and_other_dtypes_refused():
    x = torch.tensor([0.25, 0.5], dtype=torch.float64)
    assert torch.equal(images_to_float(x, dtype=torch.float32), x.float())
    with pytest.raises(ValueError, match=r"images have dtype torch.int64; expected uint8"):
        images_to_float(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"dtype=torch.int32 is not a floating dtype"):
        images_to_float(x, dtype=torch.int32)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROTOML_CACHE", str(tmp_path / "zc"))
    assert cache_dir("mnist") == tmp_path / "zc" / "mnist"
    monkeypatch.delenv("ZEROTOML_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "zerotoml" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("cifar-10") == Path.home() / ".cache" / "zerotoml" / "cifar-10"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_argument_gives_the_same_values_on_gpu():
    from zerotoml.data import blobs, fake_digits

    x, _ = fake_cifar(3)
    # another device rounds within float32's precision, not bit for bit (notes/training.md#devices)
    torch.testing.assert_close(images_to_float(x, device="cuda").cpu(), images_to_float(x), atol=0, rtol=2.5e-7)
    assert torch.equal(blobs(50, device="cuda")[0].cpu(), blobs(50)[0])  # drawn on the CPU, then moved
    assert fake_digits(5, device="cuda")[1].device.type == "cuda"
