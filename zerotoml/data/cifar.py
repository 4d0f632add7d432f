"""CIFAR-10 (Krizhevsky 2009) from the files its authors distribute, in either of
their two versions. Note: notes/data.md#cifar-10.

- python version, folder ``cifar-10-batches-py``: ``data_batch_1`` .. ``data_batch_5``
  and ``test_batch``, each a pickled dict ``{b"data": uint8 array (10000, 3072),
  b"labels": [int] * 10000, ...}``; a row is 1024 red, then 1024 green, then 1024
  blue bytes, each a 32x32 image in row-major order.
- binary version, folder ``cifar-10-batches-bin``: ``data_batch_1.bin`` ..
  ``data_batch_5.bin`` and ``test_batch.bin``, each 10000 records of 3073 bytes:
  1 label byte, then the same 3072 pixel bytes.

Pickles can run code when loaded, so the python version is read with an Unpickler
that builds only what a CIFAR batch holds: numpy arrays and dtypes (numpy's own
reconstruct functions) and, for pickles written by Python 3 with protocol 2, the
``_codecs.encode`` call that stores ``bytes``. Anything else is refused.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from ..shapes import Int, Shaped, Tensor
from .common import DataFormatError, cache_dir, check_split, download

__all__ = ["cifar10", "read_cifar_python", "read_cifar_binary", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_MD5 = "c58f30108f718f92721af3b95e74349a"
_NAMES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _numpy(*names: str):
    """The first of numpy's internal modules ``names`` that exists (numpy 2 renamed core -> _core)."""
    import importlib
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} can be imported")


def _allowed() -> dict[tuple[str, str], object]:
    multiarray = _numpy("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _numpy("numpy._core.numeric", "numpy.core.numeric")
    import _codecs
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _codecs.encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
    if hasattr(numeric, "_frombuffer"):  # protocol-5 pickles of arrays
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(module, "_frombuffer")] = numeric._frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the batches are Python 2 pickles
        self.path = path
        self.allowed = _allowed()

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise DataFormatError(f"{self.path}: the pickle asks for {module}.{name}; a CIFAR batch holds "
                              f"only numpy arrays, lists and bytes, so it is refused")


def read_cifar_python(path: str | os.PathLike) -> tuple[Shaped[Tensor, "n 3 32 32"], Int[Tensor, "n"]]:
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` from one pickled batch
    (python version), loaded with a restricted Unpickler."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise DataFormatError(f"{path}: not a readable pickled CIFAR batch, truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: unpickled a {type(batch).__name__}; expected a dict with data and labels")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataFormatError(f"{path}: keys {sorted(batch)}; expected 'data' and 'labels' "
                              f"(a CIFAR-100 batch has 'fine_labels' instead)")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = getattr(data, "shape", None)
        raise DataFormatError(f"{path}: data has shape {shape} and dtype {getattr(data, 'dtype', type(data))}; "
                              f"expected uint8 (n, {_PIXELS}) -- 3 x 32 x 32 pixels a row")
    if labels.shape != (len(data),):
        raise DataFormatError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    return _tensors(data, labels, path)


def read_cifar_binary(path: str | os.PathLike) -> tuple[Shaped[Tensor, "n 3 32 32"], Int[Tensor, "n"]]:
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` from one binary batch:
    records of 1 label byte + 3072 pixel bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch {str(path)!r} does not exist")
    raw = path.read_bytes()
    n, rest = divmod(len(raw), _RECORD)
    if rest or n == 0:
        hint = " (a multiple of 3074: CIFAR-100's records, which have 2 label bytes)" \
            if len(raw) and len(raw) % 3074 == 0 else ""
        raise DataFormatError(f"{path}: {len(raw)} bytes is not a whole number of {_RECORD}-byte records "
                              f"(1 label byte + {_PIXELS} pixel bytes): {n} records and {rest} bytes "
                              f"left over -- truncated or wrong record size{hint}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(n, _RECORD)
    return _tensors(records[:, 1:], records[:, 0], path)


def _tensors(data: np.ndarray, labels: np.ndarray, path: Path):
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    images = rearrange(torch.from_numpy(np.array(data, dtype=np.uint8)), "n (c h w) -> n c h w", c=3, h=32, w=32)
    return images, torch.from_numpy(np.array(labels, dtype=np.int64))


def _folder(root: Path, kind: str) -> Path | None:
    """The folder under ``root`` (itself or its cifar-10-batches-<kind>) holding every batch."""
    suffix = ".bin" if kind == "bin" else ""
    names = _NAMES["train"] + _NAMES["test"]
    for folder in (root, root / f"cifar-10-batches-{kind}"):
        if all((folder / (n + suffix)).is_file() for n in names):
            return folder
    return None


def cifar10(root: str | os.PathLike | None = None, split: str = "train", *, format: str = "auto",
            download: bool = True) -> tuple[Shaped[Tensor, "n 3 32 32"], Int[Tensor, "n"]]:
    """CIFAR-10: ``(images uint8 (n, 3, 32, 32), labels int64 (n,))``, 50000 train
    (data_batch_1..5 in order) or 10000 test; class names in CIFAR10_CLASSES.

    ``root`` is a folder holding the batches, or the folder that holds
    ``cifar-10-batches-py`` / ``cifar-10-batches-bin``. ``format``: ``"python"``,
    ``"binary"`` or ``"auto"`` (python if present, else binary). Without ``root``, the
    cache (`cache_dir`) is used, filled from the authors' address when ``download``.
    Note: notes/data.md#cifar-10."""
    check_split(split, ("train", "test"), "cifar10")
    if format not in ("auto", "python", "binary"):
        raise ValueError(f"cifar10: format={format!r}; expected 'auto', 'python' or 'binary'")
    kinds = {"auto": ["py", "bin"], "python": ["py"], "binary": ["bin"]}[format]
    base = Path(root) if root is not None else cache_dir("cifar-10")
    if root is None and download and not any(_folder(base, k) for k in kinds) and "py" in kinds:
        _download(base)
    for kind in kinds:
        folder = _folder(base, kind)
        if folder is not None:
            read, suffix = (read_cifar_python, "") if kind == "py" else (read_cifar_binary, ".bin")
            parts = [read(folder / (n + suffix)) for n in _NAMES[split]]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    missing = []
    for kind in kinds:
        suffix = ".bin" if kind == "bin" else ""
        names = [n + suffix for n in _NAMES["train"] + _NAMES["test"]]
        best = max((base, base / f"cifar-10-batches-{kind}"),
                   key=lambda f: sum((f / n).is_file() for n in names))
        missing.append(f"{best}: {', '.join(n for n in names if not (best / n).is_file())}")
    raise FileNotFoundError(
        f"cifar10: no complete CIFAR-10 {format} batches under {str(base)!r}; missing in "
        f"{'; or in '.join(missing)}. Get {_URL} (python version) or the binary version from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass root= the folder")


_fetch = download  # the one place the network is touched; tests replace it


def _download(base: Path) -> None:
    """Fetch the python version into ``base`` and unpack only the batch files from it."""
    archive = base / "cifar-10-python.tar.gz"
    try:
        if not archive.exists():
            _fetch([_URL], archive, md5=_MD5)
    except OSError as e:
        raise FileNotFoundError(f"cifar10: CIFAR-10 is not in {base} and the download failed ({e}). "
                                f"Download {_URL} elsewhere, unpack it and pass root= the folder") from None
    wanted = {f"cifar-10-batches-py/{n}" for n in _NAMES["train"] + _NAMES["test"]}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name in wanted and member.isfile():  # never trust paths in an archive
                target = base / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:
                    target.write_bytes(src.read())
    archive.unlink()
