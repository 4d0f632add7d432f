"""What every loader in zerotoml.data shares. Note: notes/data.md#conventions.

The convention is Dataset-free: a loader returns plain tensors -- ``str`` for
text, ``(images, labels)`` for images, with images ``uint8`` exactly as stored
and labels ``int64`` -- and `images_to_float` turns images into floats in [0, 1]
on the device and in the dtype the model wants. Batching is a separate concern.

Real files are looked for in a folder the caller names first, then where a
system package puts them, then in the cache folder `cache_dir` (filled by a
download only where the caller allows it and the network does).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ..shapes import Float, Shaped, Tensor

__all__ = ["DataFormatError", "images_to_float", "cache_dir", "download", "check_split"]


class DataFormatError(ValueError):
    """A data file exists but is not what its format promises (bad magic number,
    truncated payload, wrong record size...). The message names the file."""


def images_to_float(images: Shaped[Tensor, "*shape"], *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Float[Tensor, "*shape"]:
    """``uint8`` images (0..255) -> floats in [0, 1] (``x / 255``) of ``dtype`` on ``device``.

    Floating images are taken to be in [0, 1] already and are only cast and moved.
    Note: notes/data.md#conventions."""
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"images_to_float: dtype={dtype} is not a floating dtype")
    if images.dtype == torch.uint8:
        return images.to(device=device, dtype=dtype) / 255
    if images.is_floating_point():
        return images.to(device=device, dtype=dtype)
    raise ValueError(f"images_to_float: images have dtype {images.dtype}; expected uint8 (0..255) "
                     f"or a floating dtype already in [0, 1]")


def cache_dir(name: str) -> Path:
    """Folder where downloads of dataset ``name`` go: ``$ZEROTOML_CACHE/<name>`` if that
    variable is set, else ``$XDG_CACHE_HOME/zerotoml/<name>``, else ``~/.cache/zerotoml/<name>``.
    Not created here."""
    base = os.environ.get("ZEROTOML_CACHE")
    if base:
        return Path(base).expanduser() / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "zerotoml" / name


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - the datasets publish MD5 sums; this is a checksum, not security
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(urls: list[str] | str, dest: str | os.PathLike, *, md5: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch the first of ``urls`` that answers into ``dest`` and return ``dest``.

    Writes ``dest.part`` and renames it only once the MD5 sum (when given) matches, so an
    interrupted download never leaves a file that looks complete. Raises ``OSError``
    listing every address tried and why it failed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in [urls] if isinstance(urls, str) else urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as e:
            failures.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
            continue
        if md5 is not None and (got := _md5(part)) != md5:
            failures.append(f"{url}: MD5 {got}, expected {md5}")
            part.unlink(missing_ok=True)
            continue
        os.replace(part, dest)
        return dest
    raise OSError(f"could not download {dest.name}:\n  " + "\n  ".join(failures))


def check_split(split: str, allowed: tuple[str, ...], where: str) -> str:
    """``split`` if it is one of ``allowed``, else a ValueError naming ``where``."""
    if split not in allowed:
        raise ValueError(f"{where}: split={split!r}; expected one of {', '.join(map(repr, allowed))}")
    return split
