"""The examples CLI: zerotoml/__main__.py and examples/ (notes/training.md#the-examples-cli)."""

import json
import subprocess
import sys

import pytest

from zerotoml.__main__ import examples_dir, find_examples, main


def test_lists_every_example_with_its_docstring(capsys):
    assert main([]) == 0
    listing = capsys.readouterr().out
    found = find_examples()
    assert "mlp_fashion_mnist" in found
    for name, (path, doc) in found.items():
        assert path.parent == examples_dir() and doc, f"{path} needs a one-line docstring"
        assert f"{name}  " in listing and doc in listing


def test_unknown_example_is_refused_with_the_known_ones(capsys):
    assert main(["run", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "unknown example 'no_such_model'; known examples:" in err and "mlp_fashion_mnist" in err
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch: seconds on a busy machine
def test_module_entry_point_lists_examples():
    out = subprocess.run([sys.executable, "-m", "zerotoml"], capture_output=True, text=True, check=True).stdout
    assert "mlp_fashion_mnist" in out


def test_every_example_has_a_main():
    for name, (path, _) in find_examples().items():
        assert "def main(argv" in path.read_text(), f"{path} needs a main(argv) function"


@pytest.mark.slow
def test_run_mlp_example_on_digits(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "mlp_fashion_mnist", "--dataset", "digits", "--steps", "400", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "digits" and result["steps"] == 400 and result["test_accuracy"] >= 0.95
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "test accuracy" in capsys.readouterr().out
    # a second fresh run into the same folder is refused, a resume finds nothing left to do
    assert main(["run", "mlp_fashion_mnist", "--dataset", "digits", "--steps", "400", "--out", str(out),
                 "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_bad_engine_is_refused_in_one_line_before_any_work(capsys):
    assert main(["run", "mlp_fashion_mnist", "--engine", "turbo", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "zerotoml run mlp_fashion_mnist: --engine 'turbo': expected one of reference, fast"
    assert main(["run", "mlp_fashion_mnist", "--engine"]) == 2
    assert "--engine needs a value" in capsys.readouterr().err


def test_examples_run_the_fast_engine_by_default_and_say_so(tmp_path, monkeypatch, capsys):
    """The runner picks the engine, prints it, runs the example under it, and switches back."""

    from zerotoml import __main__ as runner
    from zerotoml import engine

    seen = []
    script = tmp_path / "probe.py"
    script.write_text('"""Probe."""\nfrom zerotoml import engine\n\ndef main(argv):\n'
                      '    SEEN.append((engine.current(), argv))\n')
    monkeypatch.setenv("ZEROTOML_EXAMPLES", str(tmp_path))
    monkeypatch.delenv("ZEROTOML_ENGINE", raising=False)
    real = runner.importlib.util.module_from_spec

    def with_seen(spec):
        module = real(spec)
        module.SEEN = seen
        return module

    monkeypatch.setattr(runner.importlib.util, "module_from_spec", with_seen)
    before = engine.current()
    assert main(["run", "probe", "--steps", "3"]) == 0
    assert main(["run", "probe", "--engine=reference", "--steps", "3"]) == 0
    assert seen == [("fast", ["--steps", "3"]), ("reference", ["--steps", "3"])]
    out = capsys.readouterr().out
    assert "engine: fast" in out and "engine: reference" in out
    assert engine.current() == before
