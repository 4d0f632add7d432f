"""SWORD zText reading: zerotoml/data/sword.py and versification.py
(notes/translation_data.md). The tests write a module byte by byte in the zText format
and read it back; the installed Debian Bibles are read only where present."""

import bz2
import lzma
import struct
import zlib
from pathlib import Path

import pytest

from zerotoml.data import DataFormatError
from zerotoml.data.sword import find_module, module_verses, read_conf, read_ztext, strip_markup
from zerotoml.data.versification import books, verse_keys

# Record numbers in the KJV index, counted by hand from public verse counts:
# OT: 0 module, 1 testament, 2 Genesis heading, 3 chapter 1 heading, 4 Gen 1:1, 5 Gen 1:2,
# 6 Gen 1:3; Genesis takes 1 + 50 chapters + 1533 verses = 1584 records (2..1585), so
# Exodus heading 1586, chapter 1 heading 1587, Exod 1:1 1588.
# NT: Matthew 2..1101 (1 + 28 + 1071), Mark ..1796 (1 + 16 + 678), Luke ..2972
# (1 + 24 + 1151), John heading 2973, John 1 heading 2974, 1:1-51 2975..3025, John 2
# heading 3026, 2:1-25 3027..3051, John 3 heading 3052, John 3:16 = 3068.
GEN_1_0, GEN_1_1, GEN_1_2, GEN_1_3, EXOD_1_1, JOHN_3_16 = 3, 4, 5, 6, 1588, 3068

GEN_1_1_OSIS = ('<w lemma="strong:H7225">In the beginning</w>, <w lemma="strong:H0430">God</w>'
                '<note placement="foot"><reference>1:1</reference>Hebrew: Elohim</note> created '
                'the heavens &amp; the earth.')
GEN_1_2_OSIS = ('<div type="x-milestone" subType="x-preverse" sID="pv1"/><title>The Spirit</title>'
                '<lg><l level="1"/>The earth was formless<l eID="x"/><l level="2"/>and empty.</lg>')
EXOD_1_1_OSIS = '<title canonical="true" type="psalm">Names.</title> These are the names<lb/>of Israel.'
JOHN_3_16_OSIS = '<q who="Jesus">For God so loved the world</q>\u2026 \u00e1 <transChange>\u00e9l</transChange>'
EXPECTED = {("Gen", 1, 1): "In the beginning, God created the heavens & the earth.",
            ("Gen", 1, 2): "The earth was formless and empty.",
            ("Exod", 1, 1): "Names. These are the names of Israel.",
            ("John", 3, 16): "For God so loved the world\u2026 \u00e1 \u00e9l"}
COMPRESS = {"ZIP": zlib.compress, "BZIP2": bz2.compress, "XZ": lzma.compress}


def write_testament(folder: Path, prefix: str, n_records: int, blocks: list[list[tuple[int, str]]],
                    compress=zlib.compress, links: dict[int, int] | None = None) -> None:
    """``blocks``: for each compressed block, its (record number, text) entries; ``links``
    maps a record to one whose (block, offset, size) it repeats, as SWORD links verses."""
    records = [(0, 0, 0)] * n_records
    bzs, bzz = b"", b""
    for number, entries in enumerate(blocks):
        raw = b""
        for record, text in entries:
            data = text.encode("utf-8")
            records[record] = (number, len(raw), len(data))
            raw += data
        packed = compress(raw)
        bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
        bzz += packed
    for record, target in (links or {}).items():
        records[record] = records[target]
    (folder / f"{prefix}.bzs").write_bytes(bzs)
    (folder / f"{prefix}.bzv").write_bytes(b"".join(struct.pack("<IIH", *r) for r in records))
    (folder / f"{prefix}.bzz").write_bytes(bzz)


def write_module(root: Path, name="TestBible", compress="ZIP", driver="zText", extra_conf="") -> Path:
    """A KJV zText module: Gen 1:1-2 in OT block 0 (Gen 1:3 linked to 1:2, a chapter
    heading with text), Exod 1:1 in OT block 1, John 3:16 in NT block 0."""
    folder = root / "modules" / "texts" / "ztext" / name.lower()
    folder.mkdir(parents=True)
    write_testament(folder, "ot", 24115,
                    [[(GEN_1_0, "<chapter n='1'/>Chapter One"), (GEN_1_1, GEN_1_1_OSIS), (GEN_1_2, GEN_1_2_OSIS)],
                     [(EXOD_1_1, EXOD_1_1_OSIS)]], COMPRESS[compress], links={GEN_1_3: GEN_1_2})
    write_testament(folder, "nt", 8246, [[(JOHN_3_16, JOHN_3_16_OSIS)]], COMPRESS[compress])
    (root / "mods.d").mkdir(exist_ok=True)
    (root / "mods.d" / f"{name.lower()}.conf").write_text(
        f"[{name}]\nAbbreviation=TB\nDataPath=./modules/texts/ztext/{name.lower()}/\nModDrv={driver}\n"
        f"SourceType=OSIS\nEncoding=UTF-8\nCompressType={compress}\nBlockType=BOOK\n"
        f"Versification=KJV\nGlobalOptionFilter=OSISFootnotes\nGlobalOptionFilter=OSISHeadings\n"
        f"About=A test \\\n  module\n{extra_conf}")
    return folder


def test_kjv_counts_are_the_public_ones():
    ot, nt = books("KJV")
    assert (len(ot), len(nt)) == (39, 27)
    assert sum(len(c) for _, c in ot + nt) == 1189
    assert (sum(sum(c) for _, c in ot), sum(sum(c) for _, c in nt)) == (23145, 7957)
    table = dict(ot + nt)
    assert (len(table["Ps"]), table["Ps"][118], table["Gen"][0], table["3John"], table["Rev"][11]) == (
        150, 176, 31, (14,), 17)


def test_nrsva_adds_the_deuterocanon_and_two_verses():
    ot, nt = books("NRSVA")
    names = [name for name, _ in ot]
    assert names[38] == "Mal" and names[39:41] == ["Tob", "Jdt"] and names[-1] == "4Macc" and len(ot) == 56
    table = dict(nt)
    assert table["3John"] == (15,) and table["Rev"][11] == 18
    assert sum(sum(c) for _, c in nt) == 7959


def test_verse_keys_layout():
    ot = verse_keys("KJV", 0)
    assert ot[:5] == (("", 0, 0), ("", 0, 0), ("Gen", 0, 0), ("Gen", 1, 0), ("Gen", 1, 1))
    assert (ot[EXOD_1_1], verse_keys("KJV", 1)[JOHN_3_16]) == (("Exod", 1, 1), ("John", 3, 16))
    # the record counts of the Debian modules' index files, / 10 bytes
    assert [len(verse_keys(v, t)) for v in ("KJV", "NRSVA") for t in (0, 1)] == [24115, 8246, 31027, 8248]


def test_versification_errors():
    with pytest.raises(ValueError, match="versification='Vulg' is not supported.*KJV and NRSVA"):
        books("Vulg")
    with pytest.raises(ValueError, match="testament=2"):
        verse_keys("KJV", 2)


@pytest.mark.parametrize("compress", ["ZIP", "BZIP2", "XZ"])
def test_written_module_reads_back_exactly(tmp_path, compress):
    folder = write_module(tmp_path, compress=compress)
    assert read_ztext(folder, compress=compress) == EXPECTED
    assert list(read_ztext(folder, compress=compress)) == list(EXPECTED)  # canonical order
    raw = read_ztext(folder, compress=compress, source_type=None)
    assert raw[("Gen", 1, 1)] == GEN_1_1_OSIS and ("Gen", 1, 3) not in raw  # linked verse left out
    assert module_verses("testbible", root=tmp_path) == EXPECTED


def test_conf_and_find_module(tmp_path):
    folder = write_module(tmp_path)
    module = read_conf(tmp_path / "mods.d" / "testbible.conf")
    assert module.name == "TestBible" and module.path == folder.resolve()
    assert module.conf["GlobalOptionFilter"] == "OSISFootnotes\nOSISHeadings"
    assert module.conf["About"] == "A test \nmodule"
    assert find_module("tb", root=tmp_path).name == find_module("TESTBIBLE", root=tmp_path).name == "TestBible"


def test_strip_markup_other_source_types():
    assert strip_markup('a<div sID="g" type="glossary"/> Abba: father <div eID="g" type="glossary"/> b') == "a b"
    assert strip_markup('x <div sID="g" type="glossary"/> to the end') == "x"
    assert strip_markup('<scripRef>Gen 1:1</scripRef>In <i>the</i><note>n</note><br/>end', "ThML") == "In the end"
    assert strip_markup("In<CM>the <FI>beginning<Fi><RF>note<Rf> <WH7225>God<TS>Title<Ts>", "GBF") == \
        "In the beginning God"
    assert strip_markup("  plain <b>  text ", "Plaintext") == "plain <b> text"
    with pytest.raises(ValueError, match="source_type='TEI'"):
        strip_markup("x", "TEI")


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y sword-text-web sword-text-sparv"):
        find_module("nosuchbible", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a zText module folder"):
        read_ztext(tmp_path)
    folder = write_module(tmp_path)
    with pytest.raises(DataFormatError, match="24115 records, but the versification has 31027"):
        read_ztext(folder, versification="NRSVA")
    with pytest.raises(ValueError, match="compress='LZSS'"):
        read_ztext(folder, compress="LZSS")
    (folder / "nt.bzs").write_bytes(b"\0" * 13)
    with pytest.raises(DataFormatError, match="not multiples of 12 and 10"):
        read_ztext(folder)


def test_module_conf_errors(tmp_path):
    write_module(tmp_path, "Raw", driver="RawText")
    with pytest.raises(ValueError, match="ModDrv='RawText'; zerotoml reads zText only"):
        module_verses("raw", root=tmp_path)
    write_module(tmp_path, "Locked", extra_conf="CipherKey=secret\n")
    with pytest.raises(ValueError, match="enciphered"):
        module_verses("locked", root=tmp_path)


def debian_modules_present() -> bool:
    try:
        find_module("web"), find_module("sparv")
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not debian_modules_present(), reason="needs Debian's sword-text-web and sword-text-sparv")
def test_debian_bibles():
    web, rv = module_verses("web"), module_verses("sparv")
    assert web[("Gen", 1, 1)].startswith("In the beginning, God created")
    assert rv[("Gen", 1, 1)].startswith("EN el principio cri\u00f3 Dios")
    assert web[("John", 3, 16)].startswith("For God so loved the world")
    assert web[("Rev", 22, 21)].endswith("Amen.")  # the glossary after it is not verse text
    assert 37000 < len(web) < 37791 and 31000 < len(rv) <= 31102
    assert not any("<" in text or "&amp;" in text for text in web.values())
