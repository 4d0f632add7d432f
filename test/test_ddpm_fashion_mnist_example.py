"""examples/ddpm_fashion_mnist.py: bad options are refused in one line before any work; a short run
on scikit-learn's digits trains the feature CNN, the ε-model, the velocity model and 2-RF, and
writes result.json with the DDIM paper's table of samplers, each with its NFE and Fréchet
distance, the test split's floor below the noise's; --resume reuses everything."""

import json
import math

import pytest

from zerotoml.__main__ import main

SAMPLERS = (["ddpm_1000"] + [f"ddim_eta{e}_{n}" for e in (0, 1) for n in (10, 20, 50, 100)] + ["pc_100"]
            + ["fm_euler_10", "fm_euler_50", "fm_euler_100", "2rf_euler_1"])


@pytest.mark.parametrize("argv, message", [
    (["--channels", "12,24"], "--channels 12,24: expected multiples of 8"),
    (["--channels", "a,b"], "argument --channels: 'a,b' is not a comma-separated list of integers"),
    (["--size", "15"], "--size 15: a U-Net of 2 levels needs a side of at most 28 that halves 1 times"),
    (["--steps", "0"], "--steps 0: expected an integer >= 1"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--feature-steps", "0"], "--feature-steps 0: expected an integer >= 1"),
    (["--pairs", "8"], "--pairs 8: expected at least one batch"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["run", "ddpm_fashion_mnist", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddpm_fashion_mnist: error: ") and message in err, err
    assert not out.exists()


@pytest.mark.slow  # about two minutes: DDPM's 1000 steps and the other samplers on 64 digits, twice
def test_a_short_run_on_digits_fills_the_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "ddpm_fashion_mnist", "--dataset", "digits", "--steps", "150", "--reflow-steps", "30",
            "--pairs", "64", "--pair-steps", "10", "--samples", "64", "--feature-steps", "60", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "digits" and result["size"] == 8
    methods, baselines = result["methods"], result["baselines"]
    assert list(methods) == SAMPLERS
    for name, m in methods.items():
        assert type(m["nfe"]) is int and m["metric"] == "frechet_distance" and math.isfinite(m["quality"]), name
    assert [methods[k]["nfe"] for k in ("ddpm_1000", "ddim_eta1_20", "pc_100", "2rf_euler_1")] == [1000, 20, 200, 1]
    floor, noise = baselines["test split, 64 images"], baselines["noise N(0, I)"]
    assert floor < noise / 3
    for name in ("fm_euler_100", "2rf_euler_1"):  # 150 steps already beat the noise by far
        assert methods[name]["quality"] < noise / 2, (name, methods[name]["quality"], noise)
    for png in ("samples.png", "quality.png", "ddpm/loss_curve.png", "features/loss_curve.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert "training the feature network" in capsys.readouterr().out
    # resumed: the feature CNN, the three models and the reflow pairs are read back, not made again
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "result.json").read_text())
    assert {k: v["quality"] for k, v in again["methods"].items()} == {k: v["quality"] for k, v in methods.items()}
    assert again["steps_run"] == {"ddpm": 0, "flow_matching": 0, "rf2": 0} and result["steps_run"]["rf2"] == 30
    printed = capsys.readouterr().out
    assert "training the feature network" not in printed and "reflow pairs" not in printed
