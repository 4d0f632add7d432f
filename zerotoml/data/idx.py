"""IDX files (LeCun's MNIST format, also Fashion-MNIST's), gzipped or raw, and the two
datasets that use them. Note: notes/data.md#idx-files.

An IDX file is a 4-byte magic number, then one big-endian uint32 size per dimension,
then the values, big-endian, in row-major order:

    bytes 0-1   0x00 0x00
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     ndim
    4 * ndim    sizes, big-endian uint32      (images: n 28 28; labels: n)
    ...         prod(sizes) values

`fashion_mnist` finds Debian's ``dataset-fashion-mnist`` package, a folder the caller
names, the cache, or downloads; `mnist` the same without the package (no distribution
packages MNIST).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..shapes import Int, Shaped, Tensor
from .common import DataFormatError, cache_dir, check_split, download

__all__ = ["read_idx", "write_idx", "read_idx_pair", "fashion_mnist", "mnist",
           "FASHION_MNIST_DEBIAN", "FASHION_MNIST_CLASSES"]

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {torch.uint8: 0x08, torch.int8: 0x09, torch.int16: 0x0B, torch.int32: 0x0C,
          torch.float32: 0x0D, torch.float64: 0x0E}

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# (base names, download addresses tried in order, MD5 of each .gz as published)
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_SOURCES = {
    "fashion-mnist": (["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"], {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "mnist": (["http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"], {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"}),
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {str(path)!r} does not exist")
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":  # not gzip: a raw IDX file
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise DataFormatError(f"{path}: broken gzip stream ({e}); the file is truncated or corrupt") from None


def read_idx(path: str | os.PathLike) -> Shaped[Tensor, "*sizes"]:
    """The array in an IDX file (gzipped or raw, told apart by gzip's magic bytes), as a
    tensor of the file's dtype and shape. Raises DataFormatError naming the file for a
    bad magic number, a short header, or a payload shorter or longer than the sizes say."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(f"{path}: {len(data)} bytes, too short for the 4-byte IDX magic number")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _DTYPES:
        raise DataFormatError(
            f"{path}: bad magic number 0x{data[:4].hex()}: expected 0x0000, a dtype code in "
            f"{{{', '.join(f'0x{c:02x}' for c in _DTYPES)}}} and ndim (e.g. 0x00000803 for uint8 images)")
    if ndim == 0:
        raise DataFormatError(f"{path}: magic number 0x{data[:4].hex()} says ndim 0; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: header truncated: ndim {ndim} needs {header} bytes, file has {len(data)}")
    sizes = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    want = math.prod(sizes) * dtype.itemsize
    got = len(data) - header
    if got < want:
        raise DataFormatError(f"{path}: payload truncated: sizes {sizes} of {dtype.name} need {want} bytes "
                              f"after the header, file has {got}")
    if got > want:
        raise DataFormatError(f"{path}: sizes {sizes} of {dtype.name} need {want} bytes after the header, "
                              f"file has {got} ({got - want} extra): sizes do not match the payload")
    values = np.frombuffer(data, dtype=dtype, count=math.prod(sizes), offset=header)
    return torch.from_numpy(values.astype(dtype.newbyteorder("="))).reshape(sizes)


def write_idx(path: str | os.PathLike, x: Shaped[Tensor, "*sizes"]) -> Path:
    """Write ``x`` as an IDX file, gzipped if ``path`` ends in ``.gz``. Supports the IDX
    dtypes: uint8, int8, int16, int32, float32, float64. Returns the path."""
    path = Path(path)
    if x.dtype not in _CODES:
        raise ValueError(f"write_idx: x has dtype {x.dtype}; IDX holds {', '.join(map(str, _CODES))}")
    if not 1 <= x.ndim <= 255:
        raise ValueError(f"write_idx: x has shape {tuple(x.shape)}; IDX needs 1 to 255 dimensions")
    code = _CODES[x.dtype]
    header = bytes([0, 0, code, x.ndim]) + np.asarray(x.shape, dtype=">u4").tobytes()
    payload = x.detach().cpu().contiguous().numpy().astype(_DTYPES[code]).tobytes()
    data = header + payload
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike, *,
                  classes: int | None = None) -> tuple[Shaped[Tensor, "n h w"], Int[Tensor, "n"]]:
    """``(images uint8 (n, h, w), labels int64 (n,))`` from an images file (idx3, uint8)
    and a labels file (idx1, uint8) that must hold the same number of items; labels must
    lie in ``0..classes-1`` when ``classes`` is given."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise DataFormatError(f"{images_path}: images of shape {tuple(images.shape)} and dtype "
                              f"{images.dtype}; expected uint8 (n, h, w)")
    if labels.ndim != 1 or labels.dtype != torch.uint8:
        raise DataFormatError(f"{labels_path}: labels of shape {tuple(labels.shape)} and dtype "
                              f"{labels.dtype}; expected uint8 (n,)")
    if len(images) != len(labels):
        raise DataFormatError(f"count mismatch: {images_path} holds {len(images)} images, "
                              f"{labels_path} holds {len(labels)} labels")
    if classes is not None and len(labels) and int(labels.max()) >= classes:
        raise DataFormatError(f"{labels_path}: label {int(labels.max())} out of range 0..{classes - 1}")
    return images, labels.to(torch.int64)


def _find(folder: Path, base: str) -> Path | None:
    """``base`` with or without ``.gz``; ``train-images.idx3-ubyte`` spellings too."""
    for name in (base, base.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def _load(name: str, split: str, root, download_ok: bool, where: str, extra_help: str):
    check_split(split, ("train", "test"), where)
    bases = _FILES[split]
    folders = [Path(root)] if root is not None else (
        ([FASHION_MNIST_DEBIAN] if name == "fashion-mnist" else []) + [cache_dir(name)])
    for folder in folders:
        found = [_find(folder, b) for b in bases]
        if all(found):
            return read_idx_pair(*found, classes=10)
    if root is not None:
        missing = [b for b, f in zip(bases, found) if f is None]
        raise FileNotFoundError(f"{where}: no {' or '.join(m + '[.gz]' for m in missing)} in {str(root)!r}")
    if download_ok:
        urls, md5s = _SOURCES[name]
        try:
            for b in bases:
                if _find(cache_dir(name), b) is None:
                    _fetch([u + b + ".gz" for u in urls], cache_dir(name) / (b + ".gz"), md5=md5s[b])
        except OSError as e:
            raise FileNotFoundError(f"{where}: {name} is not on this machine and the download failed "
                                    f"({e}).\n{extra_help}") from None
        return read_idx_pair(*(_find(cache_dir(name), b) for b in bases), classes=10)
    raise FileNotFoundError(f"{where}: {name} is not on this machine (looked in "
                            f"{', '.join(map(str, folders))}) and download=False.\n{extra_help}")


_fetch = download  # the one place the network is touched; tests replace it


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *,
                  download: bool = True) -> tuple[Shaped[Tensor, "n 28 28"], Int[Tensor, "n"]]:
    """Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): ``(images uint8 (n, 28, 28),
    labels int64 (n,))``, 60000 train or 10000 test; class names in FASHION_MNIST_CLASSES.

    Looks in ``root`` only, when given; else in Debian's package folder
    (FASHION_MNIST_DEBIAN), then the cache (`cache_dir`), then downloads the four
    files from Zalando's address into the cache (``download=True``), checking MD5.
    Note: notes/data.md#fashion-mnist."""
    help_ = ("Install Debian's package: `apt-get update && apt-get install dataset-fashion-mnist` "
             f"(files in {FASHION_MNIST_DEBIAN}), or pass root= a folder holding "
             "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
             "t10k-labels-idx1-ubyte.gz (from https://github.com/zalandoresearch/fashion-mnist).")
    return _load("fashion-mnist", split, root, download, "fashion_mnist", help_)


def mnist(split: str = "train", root: str | os.PathLike | None = None, *,
          download: bool = True) -> tuple[Shaped[Tensor, "n 28 28"], Int[Tensor, "n"]]:
    """MNIST (LeCun, Cortes and Burges): ``(images uint8 (n, 28, 28), labels int64 (n,))``,
    60000 train or 10000 test. Looks in ``root`` only, when given; else in the cache
    (`cache_dir`), then downloads from LeCun's address (or PyTorch's mirror) with MD5
    checks (``download=True``). No distribution packages MNIST. Note: notes/data.md#mnist."""
    help_ = ("No system package carries MNIST: download train-images-idx3-ubyte.gz, "
             "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
             f"from {' or '.join(_SOURCES['mnist'][0])} on a machine with a network and pass "
             "root= their folder.")
    return _load("mnist", split, root, download, "mnist", help_)
