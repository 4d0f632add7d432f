"""zerotoml/diffusion/runs.py: the diffusion examples' options are refused in one line of stderr
with exit status 2, before anything is read or written; a run folder that holds a run needs --resume."""

import pytest

from zerotoml.diffusion.runs import Parser, add_run_options, begin, check_options


def parse(argv):
    p = Parser(prog="probe")
    p.add_argument("--steps", type=int, default=10)
    for k, v in (("--samples", 100), ("--pairs", 64), ("--batch-size", 32)):
        p.add_argument(k, type=int, default=v)
    p.add_argument("--lr", type=float, default=1e-3)
    add_run_options(p, out=argv[-1], device=("cpu", "where"), threads="why")
    args = p.parse_args(argv[:-1])
    check_options(p, args, ("steps", "samples"), ("model",))
    return args


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "probe: error: --steps 0: expected an integer >= 1"),
    (["--steps", "x"], "probe: error: argument --steps: invalid int value: 'x'"),
    (["--lr", "0"], "expected at least 2 samples, a learning rate > 0 and threads >= 0"),
    (["--pairs", "16"], "--pairs 16: expected at least one batch (--batch-size 32) of reflow pairs"),
    (["--device", "nowhere"], "--device: device='nowhere' is not a device name"),
])
def test_a_bad_option_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    assert begin(parse, argv + [str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_folder_with_a_run_needs_resume(tmp_path, capsys):
    (tmp_path / "model" / "checkpoints").mkdir(parents=True)
    assert begin(parse, [str(tmp_path)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    args = begin(parse, ["--resume", "--threads", "0", str(tmp_path)])
    assert args.resume and args.device.type == "cpu" and args.steps == 10
