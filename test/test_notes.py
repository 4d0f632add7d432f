"""Notes cannot rot: their python blocks run, their code links resolve, and the
validation table in notes/README.md names tests that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = sorted((ROOT / "notes").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(\.\./((?:zerotoml|examples|test|benchmarks)/[^)#\s]+)(?:#L(\d+)(?:-L(\d+))?)?\)")


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.name)
def test_python_blocks_in_notes_run(note):
    blocks = BLOCK.findall(note.read_text())
    namespace: dict = {"__name__": f"note_{note.stem}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{note.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{note.name}: python block {i} failed: {e!r}\n{block}") from e


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.name)
def test_code_links_in_notes_resolve(note):
    for path, start, end in LINK.findall(note.read_text()):
        target = ROOT / path
        assert target.exists(), f"{note.name} links to missing {path}"
        if start:
            n_lines = len(target.read_text().splitlines())
            last = int(end or start)
            assert 1 <= int(start) <= last <= n_lines, f"{note.name}: {path}#L{start}-L{end} past line {n_lines}"


# a link to lines: [`name`](../zerotoml/x.py#L3-L9), or [the scores (eq. 1)](...#L3-L5)
RANGE_LINK = re.compile(r"\[([^\]]+)\]\(\.\./((?:zerotoml|examples|test|benchmarks)/[^)#\s]+)#L(\d+)(?:-L(\d+))?\)")
# a formula comment the text may name: (eq. 3), Algorithm 1, Relationship 14, §3.5
FORMULA = re.compile(r"\b(eqs?\.|equation|algorithm|relationship|§)\s*(\d+(?:\.\d+)?)", re.I)
WORDS = {"the", "and", "its", "with", "for", "from", "that", "this", "one", "two", "lines", "line", "code", "here",
         "test", "tests", "loop", "per", "each", "are", "how", "what", "into", "when", "then", "over", "all"}


def _named(text: str) -> tuple[list[str], list[str]]:
    """What a link's text names: formula references, and identifiers (those in backticks if
    there are any, else its words of three letters or more)."""
    formulas = [f"{m.group(1)} {m.group(2)}" for m in FORMULA.finditer(text)]
    ticks = re.findall(r"`([^`]+)`", text)
    names = ([w for t in ticks for w in re.findall(r"[A-Za-z_]\w*", t)] if ticks else
             [w for w in re.findall(r"[A-Za-z_]\w*", text) if len(w) >= 3 and w.lower() not in WORDS])
    return formulas, names


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.name)
def test_links_to_lines_name_what_the_lines_hold(note):
    """Every link to a range of lines names what it shows (a function, a class, a name the
    lines compute, or a formula comment such as ``(eq. 3)``), and the range holds it: moved
    code cannot leave the note pointing at other lines."""
    bad = []
    for text, path, start, end in RANGE_LINK.findall(note.read_text()):
        target = ROOT / path
        if not target.exists():
            continue  # (reported by test_code_links_in_notes_resolve)
        span = "\n".join(target.read_text().splitlines()[int(start) - 1:int(end or start)])
        formulas, names = _named(" ".join(text.split()))
        if not formulas and not names:
            bad.append(f"[{text}]({path}#L{start}-L{end}): the text names nothing")
        elif not (any(re.search(re.escape(f).replace(r"\ ", r"\s*"), span, re.I) for f in formulas)
                  or any(re.search(rf"\b{re.escape(n)}\b", span) for n in names)):
            bad.append(f"[{text}]({path}#L{start}-L{end}): the lines hold none of {formulas + names}")
    assert not bad, f"{note.name}:\n" + "\n".join(bad)


def validation_rows():
    text = (ROOT / "notes" / "README.md").read_text()
    section = text.split("## Validation", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and "::" in cells[-1]:
            rows.append(cells)
    return rows


def test_validation_table_is_not_empty():
    assert len(validation_rows()) >= 10


@pytest.mark.parametrize("row", validation_rows(), ids=lambda r: r[0])
def test_validation_table_names_tests_that_exist(row):
    level = row[2]
    assert level in {"0", "1", "2", "3"}, f"{row[0]}: level {level!r} is not 0-3"
    for ref in re.findall(r"`([^`]+::[^`]+)`", row[-1]):
        path, name = ref.split("::", 1)
        name = name.split("[", 1)[0]
        source = (ROOT / path).read_text()
        assert re.search(rf"^\s*def {re.escape(name)}\(", source, re.M), f"{row[0]}: no test {ref}"
