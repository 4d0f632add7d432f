"""SWORD Bible modules in the zText format, read without libsword.
Note: notes/translation_data.md#the-ztext-format.

A zText module is a folder of three files per testament (``ot.*`` for the Old,
``nt.*`` for the New; the middle letter is ``b`` for BlockType=BOOK, ``c`` for
CHAPTER, ``v`` for VERSE), all integers little-endian:

    ot.bzs  block index, 12 bytes a block:  uint32 offset in .bzz,
            uint32 compressed size, uint32 uncompressed size
    ot.bzv  verse index, 10 bytes a record: uint32 block number,
            uint32 offset in the uncompressed block, uint16 size (0 = no text)
    ot.bzz  the blocks, each compressed alone (CompressType=ZIP: zlib)

Record ``i`` of the verse index is position ``i`` of the module's versification
(zerotoml.data.versification.verse_keys). The module's conf file
(``mods.d/<name>.conf``, ``Key=Value`` lines) names the folder (DataPath), the
markup (SourceType), the text encoding and the versification.
"""

from __future__ import annotations

import bz2
import html
import lzma
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .common import DataFormatError
from .versification import verse_keys

__all__ = ["SwordModule", "read_conf", "find_module", "sword_paths", "read_ztext",
           "module_verses", "strip_markup", "APT_INSTALL"]

APT_INSTALL = "sudo apt-get update && sudo apt-get install -y sword-text-web sword-text-sparv"

# Short names: the Debian package sword-text-<short> carries the module on the right.
ALIASES = {"web": "engWEB2015eb", "sparv": "spaRV1909eb"}

_DECOMPRESS = {"ZIP": zlib.decompress, "BZIP2": bz2.decompress, "XZ": lzma.decompress}
_BLOCK_LETTER = {"BOOK": "b", "CHAPTER": "c", "VERSE": "v"}


@dataclass(frozen=True)
class SwordModule:
    """One installed module: its ``[name]``, its conf (``Key -> value``; a key given
    several times keeps its values joined by newlines) and its data folder."""
    name: str
    conf: dict[str, str]
    path: Path


def read_conf(conf_path: str | os.PathLike, root: str | os.PathLike | None = None) -> SwordModule:
    """Parse ``mods.d/<name>.conf``. ``DataPath`` is relative to ``root`` (default: the
    folder above ``mods.d``). Lines ending in a backslash continue on the next line."""
    conf_path = Path(conf_path)
    root = Path(root) if root is not None else conf_path.parent.parent
    name, conf, lines = None, {}, conf_path.read_text(encoding="utf-8", errors="replace").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + "\n" + lines[i].strip()
        i += 1
        if line.startswith("[") and line.endswith("]") and name is None:
            name = line[1:-1].strip()
        elif "=" in line and not line.startswith("#"):
            key, value = (s.strip() for s in line.split("=", 1))
            conf[key] = f"{conf[key]}\n{value}" if key in conf else value
    if name is None:
        raise DataFormatError(f"{conf_path}: no [ModuleName] line; not a SWORD module conf")
    data = conf.get("DataPath", "")
    return SwordModule(name, conf, (root / data).resolve() if data else root)


def sword_paths() -> list[Path]:
    """Where modules are looked for: ``$SWORD_PATH``, ``~/.sword``, ``/usr/share/sword``
    (Debian's sword-text-* packages), ``/usr/local/share/sword``."""
    paths = [os.environ["SWORD_PATH"]] if os.environ.get("SWORD_PATH") else []
    return [Path(p).expanduser() for p in paths + ["~/.sword", "/usr/share/sword", "/usr/local/share/sword"]]


def find_module(name: str, root: str | os.PathLike | None = None) -> SwordModule:
    """The module called ``name``: its ``[name]``, its Abbreviation, or a short name from
    ALIASES ("web", "sparv"), any case. Looks in ``root`` only when given (a folder holding
    ``mods.d/``), else in every folder of `sword_paths`."""
    roots = [Path(root)] if root is not None else sword_paths()
    wanted = {name.lower(), ALIASES.get(name.lower().removeprefix("sword-text-"), name).lower()}
    for folder in roots:
        for conf_path in sorted((folder / "mods.d").glob("*.conf")):
            try:
                module = read_conf(conf_path, folder)
            except DataFormatError:  # another program's file in mods.d: not a module
                continue
            if wanted & {module.name.lower(), module.conf.get("Abbreviation", "").lower()}:
                return module
    raise FileNotFoundError(
        f"SWORD module {name!r} not found in {', '.join(map(str, roots))}. On Debian or Ubuntu "
        f"install the two Bibles with `{APT_INSTALL}`, or pass root= the folder holding "
        f"mods.d/ and modules/")


# OSIS and ThML: notes (footnotes, cross references), non-canonical titles (section
# headings), speakers' labels and the matter around the text (a glossary after the last
# verse, from its milestone to its end) are not verse text; a canonical title (a psalm's
# superscription) is.
_DROP = {
    "OSIS": re.compile(r'<note\b[^>]*(?<!/)>.*?</note>|<speaker\b[^>]*(?<!/)>.*?</speaker>'
                       r'|<title\b(?![^>]*canonical="true")[^>]*(?<!/)>.*?</title>'
                       r'|<div\b(?=[^>]*type="(?:glossary|front|back|introduction|preface|colophon|index)")'
                       r'[^>]*sID="([^"]*)"[^>]*/>.*?(?:<div\b[^>]*eID="\1"[^>]*/>|\Z)', re.S),
    "ThML": re.compile(r"<note\b[^>]*(?<!/)>.*?</note>|<scripRef\b[^>]*(?<!/)>.*?</scripRef>", re.S),
    "GBF": re.compile(r"<RF>.*?<Rf>|<TS>.*?<Ts>", re.S),
}
# Tags that separate words (lines, paragraphs, headings) become a space; others vanish.
_BREAK = re.compile(r"</?(?:l|lg|lb|p|div|chapter|verse|item|list|title|milestone|br|CM|CL)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def strip_markup(text: str, source_type: str = "OSIS") -> str:
    """Verse markup -> plain text for SourceType OSIS, ThML, GBF or Plaintext: notes and
    section headings dropped, other tags removed (line and paragraph tags become a space),
    entities unescaped, white space collapsed."""
    kind = {"osis": "OSIS", "thml": "ThML", "gbf": "GBF", "plaintext": "Plaintext", "plain": "Plaintext"}.get(
        source_type.lower())
    if kind is None:
        raise ValueError(f"strip_markup: source_type={source_type!r}; expected OSIS, ThML, GBF or Plaintext")
    if kind != "Plaintext":
        text = _DROP[kind].sub(" ", text)
        text = _TAG.sub("", _BREAK.sub(" ", text))
        if kind != "GBF":
            text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def _read_testament(folder: Path, prefix: str, keys, decompress, encoding: str, source_type: str | None,
                    out: dict) -> None:
    blocks_raw = (folder / f"{prefix}s").read_bytes()
    records_raw = (folder / f"{prefix}v").read_bytes()
    text = (folder / f"{prefix}z").read_bytes()
    if len(blocks_raw) % 12 or len(records_raw) % 10:
        raise DataFormatError(f"{folder / prefix}s / {prefix}v: sizes {len(blocks_raw)} and {len(records_raw)} "
                              f"are not multiples of 12 and 10 bytes")
    blocks = list(struct.iter_unpack("<III", blocks_raw))  # (offset, compressed, uncompressed)
    records = list(struct.iter_unpack("<IIH", records_raw))  # (block, offset, size)
    if len(records) != len(keys):
        raise DataFormatError(f"{folder / prefix}v: {len(records)} records, but the versification has "
                              f"{len(keys)} positions; is Versification= in the conf right?")
    cache: dict[int, bytes] = {}  # each block is decompressed once
    previous = None
    for (book, chapter, verse), record in zip(keys, records):
        block, offset, size = record
        linked, previous = record == previous, record
        if verse == 0 or size == 0 or linked:  # headings, empty verses, verses linked to the one before
            continue
        if block not in cache:
            if block >= len(blocks):
                raise DataFormatError(f"{folder / prefix}v: {book} {chapter}:{verse} is in block {block}, "
                                      f"but {prefix}s lists {len(blocks)} blocks")
            start, length, full = blocks[block]
            cache[block] = decompress(text[start:start + length])
            if len(cache[block]) != full:
                raise DataFormatError(f"{folder / prefix}z: block {block} inflates to {len(cache[block])} "
                                      f"bytes, {prefix}s says {full}")
        raw = cache[block][offset:offset + size]
        if len(raw) != size:
            raise DataFormatError(f"{folder / prefix}v: {book} {chapter}:{verse} runs past block {block}")
        verse_text = raw.decode(encoding, errors="replace").rstrip("\0")
        if source_type is not None:
            verse_text = strip_markup(verse_text, source_type)
        if verse_text:
            out[book, chapter, verse] = verse_text


def read_ztext(folder: str | os.PathLike, *, versification: str = "KJV", source_type: str | None = "OSIS",
               encoding: str = "utf-8", compress: str = "ZIP",
               block_type: str = "BOOK") -> dict[tuple[str, int, int], str]:
    """Every verse of the zText module in ``folder``: ``{(book, chapter, verse): text}``
    in canonical order, books as OSIS ids (``"Gen"``, ``"1Sam"``, ``"Rev"``).

    Markup is stripped per ``source_type`` (``None`` keeps it). Headings, empty verses
    and verses linked to the verse before (a range printed as one) are left out; a
    testament whose files are absent is skipped."""
    folder = Path(folder)
    if compress.upper() not in _DECOMPRESS:
        raise ValueError(f"read_ztext: compress={compress!r}; zerotoml reads {', '.join(_DECOMPRESS)}")
    if block_type.upper() not in _BLOCK_LETTER:
        raise ValueError(f"read_ztext: block_type={block_type!r}; expected BOOK, CHAPTER or VERSE")
    letter = _BLOCK_LETTER[block_type.upper()]
    out: dict[tuple[str, int, int], str] = {}
    found = False
    for testament, name in enumerate(("ot", "nt")):
        prefix = f"{name}.{letter}z"
        if not (folder / f"{prefix}v").exists():
            continue
        found = True
        _read_testament(folder, prefix, verse_keys(versification, testament), _DECOMPRESS[compress.upper()],
                        encoding, source_type, out)
    if not found:
        raise FileNotFoundError(f"{folder}: no ot.{letter}zv or nt.{letter}zv; not a zText module folder")
    return out


def module_verses(name: str, root: str | os.PathLike | None = None,
                  *, strip: bool = True) -> dict[tuple[str, int, int], str]:
    """`read_ztext` on the installed module ``name`` (see `find_module`), with the
    versification, markup, encoding and compression its conf names."""
    module = find_module(name, root)
    conf = module.conf
    if conf.get("ModDrv", "").lower() != "ztext":
        raise ValueError(f"module {module.name}: ModDrv={conf.get('ModDrv')!r}; zerotoml reads zText only")
    if conf.get("CipherKey") is not None:
        raise ValueError(f"module {module.name} is enciphered (CipherKey=); zerotoml reads open modules only")
    encoding = "utf-8" if conf.get("Encoding", "").upper() == "UTF-8" else "latin-1"  # SWORD's default
    return read_ztext(module.path, versification=conf.get("Versification", "KJV"),
                      source_type=conf.get("SourceType", "Plaintext") if strip else None,
                      encoding=encoding, compress=conf.get("CompressType", "LZSS"),
                      block_type=conf.get("BlockType", "CHAPTER"))
