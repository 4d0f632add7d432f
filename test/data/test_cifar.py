"""CIFAR-10 in both distributed formats, from tiny fake batches the tests write."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from zerotoml.data import cifar
from zerotoml.data import CIFAR10_CLASSES, DataFormatError, cifar10, read_cifar_binary, read_cifar_python

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def fake_batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def python_batch_bytes(data, labels, *, old_numpy_names=False) -> bytes:
    """A batch pickled as the authors did: a dict with bytes keys, protocol 2. With
    old_numpy_names the array refers to numpy.core.multiarray, as the real files do."""
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    raw = pickle.dumps(batch, protocol=2)
    return raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n") if old_numpy_names else raw


def binary_batch_bytes(data, labels) -> bytes:
    return b"".join(bytes([y]) + row.tobytes() for row, y in zip(data, labels))


def write_cifar(root, fmt: str, sizes=(2, 3, 1, 2, 2, 3)):
    """All six batches under root/cifar-10-batches-<fmt>; returns {name: (data, labels)}."""
    folder = root / f"cifar-10-batches-{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for seed, (name, n) in enumerate(zip(TRAIN + ["test_batch"], sizes)):
        data, labels = batches[name] = fake_batch(n, seed)
        if fmt == "py":
            (folder / name).write_bytes(python_batch_bytes(data, labels, old_numpy_names=seed % 2 == 0))
        else:
            (folder / f"{name}.bin").write_bytes(binary_batch_bytes(data, labels))
    return batches


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROTOML_CACHE", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(cifar, "_fetch", refuse)


def test_pixel_layout_is_channel_then_row_then_column(tmp_path):
    data, labels = fake_batch(3, 0)
    (tmp_path / "b").write_bytes(python_batch_bytes(data, labels))
    images, y = read_cifar_python(tmp_path / "b")
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == labels
    for i, c, h, w in [(0, 0, 0, 0), (1, 1, 5, 7), (2, 2, 31, 31), (2, 0, 31, 0)]:
        assert images[i, c, h, w].item() == data[i, c * 1024 + h * 32 + w]


@pytest.mark.parametrize("old_numpy_names", [False, True])
def test_python_and_binary_formats_agree(tmp_path, old_numpy_names):
    data, labels = fake_batch(4, 1)
    (tmp_path / "b").write_bytes(python_batch_bytes(data, labels, old_numpy_names=old_numpy_names))
    (tmp_path / "b.bin").write_bytes(binary_batch_bytes(data, labels))
    x_py, y_py = read_cifar_python(tmp_path / "b")
    x_bin, y_bin = read_cifar_binary(tmp_path / "b.bin")
    assert torch.equal(x_py, x_bin) and torch.equal(y_py, y_bin)
    assert torch.equal(x_py.reshape(4, 3072), torch.from_numpy(data))


@pytest.mark.parametrize("fmt, format", [("py", "python"), ("bin", "binary"), ("py", "auto"), ("bin", "auto")])
def test_cifar10_concatenates_batches_in_order(tmp_path, fmt, format):
    batches = write_cifar(tmp_path, fmt)
    x, y = cifar10(tmp_path, "train", format=format)
    want_data = np.concatenate([batches[n][0] for n in TRAIN])
    assert x.shape == (10, 3, 32, 32) and torch.equal(x.reshape(10, 3072), torch.from_numpy(want_data))
    assert y.tolist() == sum((batches[n][1] for n in TRAIN), [])
    x, y = cifar10(tmp_path / f"cifar-10-batches-{fmt}", "test", format=format)  # the folder itself works too
    assert x.shape == (3, 3, 32, 32) and y.tolist() == batches["test_batch"][1]
    assert len(CIFAR10_CLASSES) == 10


def test_missing_batches_are_listed(tmp_path):
    write_cifar(tmp_path, "py")
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match=r"no complete CIFAR-10 python batches .* missing in "
                                                r".*cifar-10-batches-py: data_batch_3\. Get https://"):
        cifar10(tmp_path, format="python")
    with pytest.raises(FileNotFoundError, match=r"CIFAR batch .*nothing.bin' does not exist"):
        read_cifar_binary(tmp_path / "nothing.bin")


def test_binary_wrong_record_size_and_truncation(tmp_path):
    data, labels = fake_batch(3, 2)
    raw = binary_batch_bytes(data, labels)
    (tmp_path / "cut.bin").write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match=r"cut.bin: 9119 bytes is not a whole number of 3073-byte records "
                                              r"\(1 label byte \+ 3072 pixel bytes\): 2 records and 2973 bytes"):
        read_cifar_binary(tmp_path / "cut.bin")
    (tmp_path / "c100.bin").write_bytes(bytes(2 * 3074))
    with pytest.raises(DataFormatError, match=r"c100.bin: .*CIFAR-100's records, which have 2 label bytes"):
        read_cifar_binary(tmp_path / "c100.bin")
    (tmp_path / "lab.bin").write_bytes(bytes([11]) + bytes(3072))
    with pytest.raises(DataFormatError, match=r"lab.bin: labels range 11..11; expected 0..9"):
        read_cifar_binary(tmp_path / "lab.bin")


def test_python_batch_errors(tmp_path):
    data, labels = fake_batch(3, 3)
    raw = python_batch_bytes(data, labels)
    (tmp_path / "cut").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"cut: not a readable pickled CIFAR batch, truncated or corrupt"):
        read_cifar_python(tmp_path / "cut")
    (tmp_path / "keys").write_bytes(pickle.dumps({b"data": data, b"fine_labels": labels}, protocol=2))
    with pytest.raises(DataFormatError, match=r"keys \['data', 'fine_labels'\]; expected 'data' and 'labels'"):
        read_cifar_python(tmp_path / "keys")
    (tmp_path / "shape").write_bytes(pickle.dumps({b"data": data[:, :100], b"labels": labels}, protocol=2))
    with pytest.raises(DataFormatError, match=r"shape: data has shape \(3, 100\) and dtype uint8; expected uint8 \(n, 3072\)"):
        read_cifar_python(tmp_path / "shape")
    (tmp_path / "count").write_bytes(pickle.dumps({b"data": data, b"labels": labels[:2]}, protocol=2))
    with pytest.raises(DataFormatError, match=r"count: 3 images but labels of shape \(2,\)"):
        read_cifar_python(tmp_path / "count")


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.mark.parametrize("protocol", [2, 5])
def test_pickles_that_run_code_are_refused(tmp_path, protocol):
    target = str(tmp_path / "pwned")
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Exploit(target), b"labels": [1]}, protocol=protocol))
    with pytest.raises(DataFormatError, match=r"evil: the pickle asks for (posix|nt|os)\.mkdir; .* refused"):
        read_cifar_python(tmp_path / "evil")
    assert not os.path.exists(target)


def test_download_unpacks_only_the_batches(tmp_path, monkeypatch):
    batches = {name: fake_batch(2, i) for i, name in enumerate(TRAIN + ["test_batch"])}

    def fake_fetch(urls, dest, *, md5):
        assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"] and len(md5) == 32
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w:gz") as tar:
            members = [(f"cifar-10-batches-py/{n}", python_batch_bytes(*b)) for n, b in batches.items()]
            for name, raw in members + [("../escaped", b"x"), ("cifar-10-batches-py/readme.html", b"x")]:
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
        return dest

    monkeypatch.setattr(cifar, "_fetch", fake_fetch)
    x, y = cifar10(split="test")
    assert torch.equal(x.reshape(2, 3072), torch.from_numpy(batches["test_batch"][0]))
    cache = tmp_path / "cache" / "cifar-10"
    assert sorted(p.name for p in (cache / "cifar-10-batches-py").iterdir()) == sorted(batches)
    assert not (tmp_path / "cache" / "escaped").exists() and not (cache / "cifar-10-python.tar.gz").exists()


def test_no_files_and_no_network(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"download failed \(network disabled in tests\).*pass root="):
        cifar10()
    with pytest.raises(FileNotFoundError, match=r"no complete CIFAR-10 auto batches"):
        cifar10(download=False)
    with pytest.raises(ValueError, match=r"cifar10: format='png'; expected 'auto', 'python' or 'binary'"):
        cifar10(tmp_path, format="png")
