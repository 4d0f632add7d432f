"""IDX reader and the MNIST / Fashion-MNIST loaders, on files the tests write byte by
byte. No test touches the network: downloads are replaced by a local fake."""

import gzip
from pathlib import Path
import struct

import pytest
import torch

from zerotoml.data import idx
from zerotoml.data import DataFormatError, fashion_mnist, mnist, read_idx, read_idx_pair, write_idx


def idx_bytes(code: int, sizes: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file written from the format's definition, independently of write_idx."""
    return bytes([0, 0, code, len(sizes)]) + struct.pack(f">{len(sizes)}I", *sizes) + payload


def images_and_labels(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(256, (n, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(10, (n,), generator=g, dtype=torch.uint8))


def write_split(folder, prefix: str, images, labels, *, gz=True, dot=False):
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dot else "-"
    for base, x in ((f"{prefix}-images{sep}idx3-ubyte", images), (f"{prefix}-labels{sep}idx1-ubyte", labels)):
        data = idx_bytes(0x08, tuple(x.shape), x.numpy().tobytes())
        if gz:
            (folder / (base + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / base).write_bytes(data)


def write_dataset(folder, n_train=5, n_test=3, **kw):
    train, test = images_and_labels(n_train, 0), images_and_labels(n_test, 1)
    write_split(folder, "train", *train, **kw)
    write_split(folder, "t10k", *test, **kw)
    return train, test


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    """Empty cache, no Debian package, and a download that fails loudly if reached."""
    monkeypatch.setenv("ZEROTOML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(idx, "FASHION_MNIST_DEBIAN", tmp_path / "no-debian-package")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(idx, "_fetch", refuse)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_hand_written_uint8(tmp_path, gz):
    values = bytes(range(2 * 3 * 4))
    data = idx_bytes(0x08, (2, 3, 4), values)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(data) if gz else data)
    x = read_idx(path)
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 4)
    assert torch.equal(x, torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4))


def test_read_idx_is_big_endian(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(0x0B, (3,), struct.pack(">3h", -2, 258, 32767)))
    assert torch.equal(read_idx(path), torch.tensor([-2, 258, 32767], dtype=torch.int16))
    path.write_bytes(idx_bytes(0x0E, (1, 2), struct.pack(">2d", 0.1, -1e300)))
    assert torch.equal(read_idx(path), torch.tensor([[0.1, -1e300]], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_write_then_read_is_exact(tmp_path, dtype, name):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 2, generator=g, dtype=torch.float64) * 100).to(dtype)
    assert torch.equal(read_idx(write_idx(tmp_path / name, x)), x)
    assert read_idx(tmp_path / name).dtype == dtype


def test_write_idx_header_matches_the_format(tmp_path):
    write_idx(tmp_path / "x", torch.tensor([[1, -2]], dtype=torch.int32))
    assert (tmp_path / "x").read_bytes() == idx_bytes(0x0C, (1, 2), struct.pack(">2i", 1, -2))
    with pytest.raises(ValueError, match=r"write_idx: x has dtype torch.int64"):
        write_idx(tmp_path / "y", torch.zeros(2, dtype=torch.int64))


@pytest.mark.parametrize("data, message", [
    (b"\x00\x01\x08\x03" + b"\x00" * 12, r"bad magic number 0x00010803"),
    (b"\x00\x00\x07\x01" + b"\x00" * 4, r"bad magic number 0x00000701: expected 0x0000, a dtype code"),
    (b"\x00\x00", r"2 bytes, too short for the 4-byte IDX magic number"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"header truncated: ndim 3 needs 16 bytes, file has 8"),
    (idx_bytes(0x08, (2, 28, 28), bytes(1000)), r"payload truncated: sizes \(2, 28, 28\) of uint8 need 1568 bytes"),
    (idx_bytes(0x0C, (3,), bytes(16)), r"sizes \(3,\) of int32 need 12 bytes after the header, file has 16 "
                                       r"\(4 extra\): sizes do not match"),
    (idx_bytes(0x08, (), b""), r"magic number 0x00000800 says ndim 0; expected at least 1"),
], ids=["magic", "dtype-code", "short", "header", "truncated", "extra", "ndim0"])
def test_corrupt_files_are_named_and_explained(tmp_path, data, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=r"broken-idx3-ubyte: " + message):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (100,), bytes(100)))[:-10])
    with pytest.raises(DataFormatError, match=r"t.gz: broken gzip stream"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match=r"IDX file .*absent.gz' does not exist"):
        read_idx(tmp_path / "absent.gz")


def test_pair_checks_counts_shapes_and_labels(tmp_path):
    images, labels = images_and_labels(4, 0)
    write_idx(tmp_path / "im", images)
    write_idx(tmp_path / "lab", labels)
    x, y = read_idx_pair(tmp_path / "im", tmp_path / "lab", classes=10)
    assert torch.equal(x, images) and torch.equal(y, labels.long()) and y.dtype == torch.int64
    write_idx(tmp_path / "lab3", labels[:3])
    with pytest.raises(DataFormatError, match=r"count mismatch: .*im holds 4 images, .*lab3 holds 3 labels"):
        read_idx_pair(tmp_path / "im", tmp_path / "lab3")
    write_idx(tmp_path / "big", torch.tensor([1, 12, 3, 4], dtype=torch.uint8))
    with pytest.raises(DataFormatError, match=r"big: label 12 out of range 0..9"):
        read_idx_pair(tmp_path / "im", tmp_path / "big", classes=10)
    with pytest.raises(DataFormatError, match=r"lab: images of shape \(4,\) and dtype torch.uint8; expected uint8 \(n, h, w\)"):
        read_idx_pair(tmp_path / "lab", tmp_path / "lab")
    with pytest.raises(DataFormatError, match=r"im: labels of shape \(4, 28, 28\)"):
        read_idx_pair(tmp_path / "im", tmp_path / "im")


@pytest.mark.parametrize("loader", [fashion_mnist, mnist])
@pytest.mark.parametrize("kw", [dict(gz=True), dict(gz=False), dict(gz=False, dot=True)])
def test_loaders_read_the_folder_named(tmp_path, loader, kw):
    (train_x, train_y), (test_x, test_y) = write_dataset(tmp_path / "data", **kw)
    x, y = loader("train", root=tmp_path / "data")
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28) and y.dtype == torch.int64
    assert torch.equal(x, train_x) and torch.equal(y, train_y.long())
    x, y = loader("test", root=str(tmp_path / "data"))
    assert torch.equal(x, test_x) and torch.equal(y, test_y.long())


def test_root_missing_files_and_bad_split(tmp_path):
    write_split(tmp_path / "d", "train", *images_and_labels(2, 0))
    with pytest.raises(FileNotFoundError, match=r"fashion_mnist: no t10k-images-idx3-ubyte\[.gz\] or "
                                                r"t10k-labels-idx1-ubyte\[.gz\] in '.*d'"):
        fashion_mnist("test", root=tmp_path / "d")
    with pytest.raises(ValueError, match=r"mnist: split='val'; expected one of 'train', 'test'"):
        mnist("val", root=tmp_path / "d")


def test_fashion_mnist_finds_the_debian_folder(tmp_path, monkeypatch):
    (train_x, _), _ = write_dataset(tmp_path / "debian")
    monkeypatch.setattr(idx, "FASHION_MNIST_DEBIAN", tmp_path / "debian")
    assert torch.equal(fashion_mnist("train")[0], train_x)


def test_no_files_and_no_download_says_what_to_do():
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        fashion_mnist("train", download=False)
    with pytest.raises(FileNotFoundError, match=r"download failed \(network disabled in tests\)"
                                                r"(.|\n)*apt-get install dataset-fashion-mnist(.|\n)*root="):
        fashion_mnist("train")
    with pytest.raises(FileNotFoundError, match=r"No system package carries MNIST(.|\n)*pass root="):
        mnist("test")


def test_download_fills_the_cache_once(tmp_path, monkeypatch):
    source = tmp_path / "server"
    (train_x, train_y), _ = write_dataset(source)
    calls = []

    def fake_fetch(urls, dest, *, md5):
        calls.append(urls[0])
        assert urls[0].startswith("http://yann.lecun.com/exdb/mnist/") and len(md5) == 32
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((source / dest.name).read_bytes())
        return dest

    monkeypatch.setattr(idx, "_fetch", fake_fetch)
    x, y = mnist("train")
    assert torch.equal(x, train_x) and torch.equal(y, train_y.long())
    assert [u.rsplit("/", 1)[1] for u in calls] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    mnist("train")
    assert len(calls) == 2  # the second call reads the cache


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_test_split():
    x, y = fashion_mnist("test", root="/usr/share/datasets/fashion-mnist", download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))
    assert abs(x.double().mean().item() / 255 - 0.2868) < 1e-3
