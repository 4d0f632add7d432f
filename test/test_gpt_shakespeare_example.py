"""examples/gpt_shakespeare.py: the run folder it writes, the loss it reaches on a small
learnable text (--text), and the runs it refuses. The Shakespeare run itself is the example's
default (notes/transformers.md#results); here a tiny model on a tiny file keeps it fast."""

import json
import math

from zerotoml.__main__ import main

TEXT = "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind to suffer\n" * 60
TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--context", "16", "--batch-size", "16",
        "--lr", "1e-2", "--eval-windows", "16", "--sample-tokens", "40", "--no-progress", "--threads", "1"]


def test_example_learns_a_small_text_and_writes_its_run_folder(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / "run"
    code = main(["run", "gpt_shakespeare", "--text", str(tmp_path / "text.txt"), "--steps", "100",
                 "--out", str(out), *TINY])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    vocab = len(set(TEXT))
    # the text repeats one 85-character passage: 0.37 measured, far below the uniform log(vocab)
    assert result["val_loss"] < 1.0 < math.log(vocab), result["val_loss"]
    assert result["steps"] == 100 and result["tokenizer"] == "char"
    for name in ("metrics.jsonl", "run.json", "loss_curve.png", "config.json", "tokenizer.json", "sample.txt"):
        assert (out / name).exists(), name
    assert any((out / "checkpoints").iterdir())
    sample = (out / "sample.txt").read_text()
    assert len(sample) == 41 and set(sample) <= set(TEXT)  # the prompt "\n" and 40 characters
    assert "validation loss" in capsys.readouterr().out


def test_example_refuses_to_overwrite_a_run_or_resume_it_differently(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TEXT)
    args = ["run", "gpt_shakespeare", "--text", str(tmp_path / "text.txt"), "--steps", "2",
            "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(["run", "gpt_shakespeare", "--resume", "--out", str(tmp_path / "run"), "--d-model", "64",
                 "--no-progress"]) == 2
    assert "--d-model 64 (run has 32)" in capsys.readouterr().err
    # resuming a finished run as configured trains nothing more and reports the same loss
    before = json.loads((tmp_path / "run" / "result.json").read_text())["val_loss"]
    assert main(["run", "gpt_shakespeare", "--resume", "--out", str(tmp_path / "run"), "--no-progress",
                 "--sample-tokens", "5"]) == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["val_loss"] == before
