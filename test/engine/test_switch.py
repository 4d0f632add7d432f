"""zerotoml/engine/__init__.py: one switch chooses the engine (use(), its context manager,
ZEROTOML_ENGINE), bad values are refused by name, and what exists for speed lives in
zerotoml/engine/ only."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zerotoml import engine

ROOT = Path(__file__).resolve().parents[2]


def test_use_switches_and_the_context_manager_switches_back():
    before = engine.current()
    with engine.use("fast"):
        assert engine.fast() and engine.current() == "fast"
        with engine.use("reference"):
            assert not engine.fast()
        assert engine.fast()
    assert engine.current() == before


def test_a_bad_name_is_refused_and_changes_nothing():
    before = engine.current()
    with pytest.raises(ValueError, match="engine.use: name='turbo'; expected one of 'reference', 'fast'"):
        engine.use("turbo")
    assert engine.current() == before


@pytest.mark.parametrize("value,expected", [("", "reference"), ("fast", "fast"), (" Reference ", "reference")])
def test_the_environment_variable_chooses(value, expected, monkeypatch):
    monkeypatch.setenv("ZEROTOML_ENGINE", value)
    assert engine._read_environment() == expected


def test_a_bad_environment_value_names_the_variable():
    env = {**os.environ, "ZEROTOML_ENGINE": "turbo"}
    out = subprocess.run([sys.executable, "-c", "import zerotoml.engine"], env=env, capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "ZEROTOML_ENGINE='turbo': expected one of 'reference', 'fast'" in out.stderr


# what only the fast engine may call: private operators, torch's fused kernels, the allocator
FAST_ONLY = re.compile(r"^(torch\.ops\.|torch\._fused_|torch\._foreach_|.*scaled_dot_product_attention$"
                       r"|(F|torch\.nn\.functional|functional)\.(layer_norm|conv\w*|gelu|cross_entropy|"
                       r"max_pool\w*|avg_pool\w*|adaptive_avg_pool\w*|linear|embedding|group_norm|rms_norm|silu|batch_norm)$|torch\.(softmax|log_softmax)$"
                       r"|.*\.mallopt$)")


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def test_speed_code_lives_in_the_engine_only():
    """No file of zerotoml/ outside zerotoml/engine/ calls a private operator, a fused kernel
    of torch or the allocator (`grep -rn "torch.ops.mkldnn" zerotoml` finds the engine only)."""
    found = []
    for path in sorted((ROOT / "zerotoml").rglob("*.py")):
        if "engine" in path.relative_to(ROOT / "zerotoml").parts:
            continue
        text = path.read_text()
        if "torch.ops.mkldnn" in text:
            found.append(f"{path.relative_to(ROOT)}: torch.ops.mkldnn")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and (name := _dotted(node.func)) and FAST_ONLY.match(name):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    assert not found, "\n".join(found)


def test_the_scan_finds_the_engines_own_calls():
    names = set()
    for path in (ROOT / "zerotoml" / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and (name := _dotted(node.func)) and FAST_ONLY.match(name):
                names.add(name)
    assert {"F.scaled_dot_product_attention", "F.layer_norm", "F.embedding", "torch._foreach_addcdiv_"} <= names, names
