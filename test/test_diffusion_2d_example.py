"""examples/diffusion_2d.py: bad options are refused in one line before any work; a short run
writes result.json with every sampler's NFE and quality, its trained models land far nearer the
data than the noise they start from, reflow makes one Euler step work, and --resume reads the
finished run back to the same numbers."""

import json
import math

import pytest

from zerotoml.__main__ import main

SAMPLERS = (["ddpm_100", "ddpm_1000"] + [f"ddim_eta{e}_{n}" for e in (0, 1) for n in (10, 20, 50, 100)]
            + ["em_100", "em_1000", "pc_100", "pc_500", "ode_rk4_5", "ode_rk4_25"]
            + ["fm_euler_5", "fm_euler_10", "fm_euler_100", "fm_heun_5", "fm_heun_50"]
            + [f"{k}rf_euler_{n}" for k in (1, 2) for n in (1, 2, 10, 100)])


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps 0: expected an integer >= 1"),
    (["--data", "spiral"], "argument --data: invalid choice: 'spiral'"),
    (["--lr", "-1"], "expected at least 2 samples, a learning rate > 0"),
    (["--pairs", "10"], "--pairs 10: expected at least one batch"),
    (["--device", "tpu"], "--device: device='tpu' is not a device name"),
    (["--width", "wide"], "argument --width: invalid int value: 'wide'"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["run", "diffusion_2d", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("diffusion_2d: error: ") and message in err, err
    assert not out.exists()


def test_a_folder_that_holds_a_run_is_refused_without_resume(tmp_path, capsys):
    (tmp_path / "ddpm" / "checkpoints").mkdir(parents=True)
    assert main(["run", "diffusion_2d", "--out", str(tmp_path)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.slow  # about 45 s: five MLPs, 300 steps each (2-RF 150), then every sampler twice
def test_a_short_run_puts_every_sampler_side_by_side_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "diffusion_2d", "--steps", "300", "--samples", "300", "--pairs", "1000", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    methods, noise = result["methods"], result["baselines"]["noise N(0, I)"]
    assert list(methods) == SAMPLERS
    for name, m in methods.items():
        assert type(m["nfe"]) is int and m["metric"] == "energy_distance" and math.isfinite(m["quality"]), name
    assert methods["pc_100"]["nfe"] == 200 and methods["ode_rk4_25"]["nfe"] == 100 and methods["fm_heun_5"]["nfe"] == 10
    for name in ("ddpm_1000", "ddim_eta0_50", "em_1000", "ode_rk4_25", "fm_heun_50", "1rf_euler_100"):
        assert methods[name]["quality"] < noise / 3, (name, methods[name]["quality"], noise)
    assert methods["pc_100"]["quality"] < noise / 2  # (its corrector is the weakest this early)
    # one Euler step of 1-RF lands at the mean; after one reflow it lands near the data
    assert methods["2rf_euler_1"]["quality"] < methods["1rf_euler_1"]["quality"] / 5
    assert result["straightness"]["rf2"] < result["straightness"]["rf1"] / 5
    for png in ("samples.png", "quality.png", "ddpm/loss_curve.png", "rf2/loss_curve.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert "| ddim_eta0_50 | 50 |" in capsys.readouterr().out
    # resumed: every model is read from its last checkpoint, nothing is trained, the same numbers come out
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "result.json").read_text())
    assert {k: v["quality"] for k, v in again["methods"].items()} == {k: v["quality"] for k, v in methods.items()}
    assert set(again["steps_run"].values()) == {0} and result["steps_run"]["rf2"] == 150
