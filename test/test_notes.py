"""Notes cannot rot: their python blocks run, their code links resolve, and the
validation table in notes/README.md names tests that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = sorted((ROOT / "notes").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(\.\./((?:zerotoml|examples|test|benchmarks)/[^)#\s]+)(?:#L(\d+)(?:-L(\d+))?)?\)")
# a link whose text names a function or class: [`forward`](../zerotoml/x.py#L3-L9)
NAMED_LINK = re.compile(r"\[`?([A-Za-z_][A-Za-z_0-9]*)`?\]\(\.\./((?:zerotoml|examples|benchmarks)/[^)#\s]+\.py)#L(\d+)(?:-L(\d+))?\)")


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


WORDS = {"code", "lines", "here", "this", "tests", "test", "the", "loop", "one", "line"}


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.name)
def test_links_named_after_code_point_at_it(note):
    """``[`name`](file.py#La-Lb)`` must cover the definition or assignment of ``name`` when
    the file defines it: moved code cannot leave the note pointing at other lines."""
    for name, path, start, end in NAMED_LINK.findall(note.read_text()):
        lines = (ROOT / path).read_text().splitlines()
        defined = re.compile(rf"^\s*(?:def|class)\s+{name}\b|^\s*{name}\s*(?::[^=]*)?=[^=]")
        if name in WORDS or not any(defined.search(line) for line in lines):
            continue  # the text is a word, not a name in that file
        span = lines[int(start) - 1:int(end or start)]
        assert any(defined.search(line) or re.search(rf"\b{name}\b", line) for line in span), \
            f"{note.name}: [{name}]({path}#L{start}-L{end}) does not show {name}"


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
