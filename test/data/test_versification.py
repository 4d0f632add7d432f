"""zerotoml/data/versification.py: the verse tables behind the zText index."""

import pytest

from zerotoml.data.versification import books, verse_keys


def test_kjv_canon_sizes():
    ot, nt = books("KJV")
    assert len(ot) == 39 and len(nt) == 27
    assert sum(sum(c) for _, c in ot) == 23145 and sum(sum(c) for _, c in nt) == 7957
    assert ot[0][0] == "Gen" and len(ot[0][1]) == 50 and ot[0][1][0] == 31  # Genesis 1 has 31 verses
    assert nt[-1][0] == "Rev" and nt[-1][1][11] == 17


def test_nrsva_adds_the_deuterocanon_and_two_verse_counts():
    ot, nt = books("NRSVA")
    assert len(ot) > 39
    rev = dict(nt)["Rev"]
    assert rev[11] == 18 and dict(nt)["3John"][0] == 15


def test_record_numbers_include_headings():
    keys = verse_keys("KJV", 0)
    # two module/testament headings, a book heading, a chapter heading, then Genesis 1:1
    assert keys[:5] == (("", 0, 0), ("", 0, 0), ("Gen", 0, 0), ("Gen", 1, 0), ("Gen", 1, 1))
    assert len(keys) == 24115 and len(verse_keys("KJV", 1)) == 8246  # the Debian index sizes


def test_unknown_systems_are_refused():
    with pytest.raises(ValueError, match=r"versification='Vulg' is not supported"):
        books("Vulg")
    with pytest.raises(ValueError, match="testament=2"):
        verse_keys("KJV", 2)
