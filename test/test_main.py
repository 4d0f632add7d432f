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
