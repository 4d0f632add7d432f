"""DDPM, DDIM, a score SDE, flow matching and rectified flow side by side on 2-D data, each with the MLP denoiser.

    python -m zerotoml run diffusion_2d                       # 8 Gaussians on a ring; minutes on 2 cores
    python -m zerotoml run diffusion_2d --data moons --steps 8000 --width 256
    python examples/diffusion_2d.py --out runs/diffusion_2d --resume

Trains four MLPs on the same data: ε for DDPM (T = 1000, linear β), ε for the VP SDE (its score
s = −ε/σ_t, trained by denoising score matching in continuous time), a velocity for flow
matching, and the 1-rectified flow, which is then reflowed into the 2-rectified flow (started
from 1-RF's weights, trained on the pairs its ODE draws). Every sampler starts from the same
noise; quality is the energy distance of its samples to held-out data (lower is better), with
the sliced Wasserstein distance beside it. Writes runs/diffusion_2d/: a run folder per model
(metrics.jsonl, checkpoints/, loss_curve.png), samples.png (samples, and trajectories from noise
to data), quality.png (quality against network evaluations), result.json (``methods``: sampler ->
nfe, quality, metric). Notes: notes/ddpm.md#results and the Results of ddim, score_sde,
flow_matching and rectified_flow.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from zerotoml import engine, loss
from zerotoml.checkpoint import CheckpointError
from zerotoml.data import Batches
from zerotoml.devices import describe_device
from zerotoml.diffusion import (DDPM, VPSDE, FlowMatching, GaussianMixture, MLPDenoiser, NoiseSchedule,
                                RectifiedFlow, ScoreSDE, reflow_pairs, straightness)
from zerotoml.diffusion.samplers import ScoreFromNoise, ddpm_samplers, flow_samplers, markdown_table, measure, \
    plot_quality, score_samplers
from zerotoml.diffusion.runs import Fit, Parser, add_run_options, begin, check_options
from zerotoml.metrics import energy_distance, sliced_wasserstein
from zerotoml.train import RunExistsError

MODELS = ("ddpm", "score_sde", "flow_matching", "rf1", "rf2")


def data_2d(name: str, n: int, seed: int) -> torch.Tensor:
    """``n`` points of the toy set: ``gaussians`` (8 on a ring of radius 2, standard deviation
    0.15) or ``moons`` (scikit-learn's two moons, standardised)."""
    g = torch.Generator().manual_seed(seed)
    if name == "gaussians":
        angle = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
        means = 2 * torch.stack([angle.cos(), angle.sin()], 1)
        ring = GaussianMixture(torch.full((8,), 1 / 8, dtype=torch.float64), means,
                               0.15**2 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2))
        return ring.sample(n, generator=g).float()
    from sklearn.datasets import make_moons

    x = torch.as_tensor(make_moons(n, noise=0.05, random_state=seed)[0], dtype=torch.float32)
    return (x - torch.tensor([0.5, 0.25])) / torch.tensor([0.87, 0.5])  # about zero mean, unit spread


def parse(argv):
    p = Parser(prog="diffusion_2d", description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["gaussians", "moons"], default="gaussians")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps of each model (2-RF: half)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--width", type=int, default=128, help="units per hidden layer of the MLP")
    p.add_argument("--depth", type=int, default=3, help="layers of the MLP")
    p.add_argument("--samples", type=int, default=5000, help="samples per sampler (and held-out points)")
    p.add_argument("--pairs", type=int, default=20000, help="reflow pairs drawn from 1-RF")
    add_run_options(p, out="runs/diffusion_2d", device=("cpu", "cpu (the default: 2-D data is too small for a GPU), "
                    "cuda, mps"), threads="on tensors this small a thread pool costs more than it saves, and much "
                    "more on a busy machine")
    args = p.parse_args(argv)
    check_options(p, args, ("steps", "batch_size", "width", "depth", "samples", "pairs"), MODELS)
    return args


def main(argv: list[str] | None = None) -> int:
    t_start, args = time.perf_counter(), begin(parse, argv)
    if isinstance(args, int):
        return args
    out, dev, n = Path(args.out), args.device, args.samples
    x_train = data_2d(args.data, 20000, args.seed).to(dev)
    held_out = data_2d(args.data, n, args.seed + 1).to(dev)
    g = torch.Generator().manual_seed(args.seed)
    width, depth = args.width, args.depth
    mlp = lambda scale: MLPDenoiser.init(2, width, depth, time_scale=scale, generator=g)  # noqa: E731
    models = {  # steps 0..999 for DDPM; times in [0, 1] for the others, scaled by 1000 for the sinusoids
        "ddpm": DDPM(mlp(1.0), NoiseSchedule.linear(1000)),
        "score_sde": ScoreSDE(ScoreFromNoise(mlp(1000.0), VPSDE()), VPSDE()),
        "flow_matching": FlowMatching(mlp(1000.0)),
        "rf1": RectifiedFlow(mlp(1000.0), k=1),
    }
    print(f"{args.data}: {len(x_train)} training points, {n} held out; MLP {depth} x {width}; "
          f"engine: {engine.current()}; {describe_device(dev)}")

    val_g = lambda: torch.Generator(device=dev).manual_seed(12345)  # noqa: E731  (the same noise at every evaluation)
    pair_loss = lambda m, x1: loss(m, torch.randn(x1.shape, device=x1.device), x1)  # noqa: E731  (independent pairs)

    fit = Fit(args, out, "diffusion_2d", warmup=100, log_every=50)
    trained = {}
    try:
        for name, model in models.items():
            lf = pair_loss if name == "rf1" else loss
            ev = (lambda m, lf=lf: {"val_loss": (loss(m, torch.randn(held_out.shape, generator=val_g(), device=dev),
                                                      held_out, generator=val_g()) if lf is pair_loss
                                                 else loss(m, held_out, generator=val_g())).item()})
            trained[name] = fit(name, model, Batches((x_train,), args.batch_size, seed=args.seed), args.steps,
                                eval_fn=ev, loss_fn=lf)
        # reflow: the pairs (Z_0, Z_1) of 1-RF's ODE, solved accurately; 2-RF starts from 1-RF's weights
        # (1000 more pairs held out for the validation loss)
        z0 = torch.randn(args.pairs + 1000, 2, generator=torch.Generator().manual_seed(args.seed + 2)).to(dev)
        z0, z1 = reflow_pairs(trained["rf1"], z0, steps=100, method="rk4")
        (z0, v0), (z1, v1) = z0.split([args.pairs, 1000]), z1.split([args.pairs, 1000])
        rf2 = RectifiedFlow(trained["rf1"].model, k=2)
        trained["rf2"] = fit("rf2", rf2, Batches((z0, z1), args.batch_size, seed=args.seed), max(args.steps // 2, 1),
                             eval_fn=lambda m: {"val_loss": loss(m, v0, v1, generator=val_g()).item()})
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    samplers = ddpm_samplers(trained["ddpm"], ancestral=(100, 1000), ddim=(10, 20, 50, 100))
    samplers |= score_samplers(trained["score_sde"].model, VPSDE(), euler_maruyama_steps=(100, 1000), pc=(100, 500),
                               ode=(5, 25))
    samplers |= flow_samplers(trained["flow_matching"], "fm", euler=(5, 10, 100), heun=(5, 50))
    samplers |= flow_samplers(trained["rf1"], "1rf", euler=(1, 2, 10, 100))
    samplers |= flow_samplers(trained["rf2"], "2rf", euler=(1, 2, 10, 100))
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(args.seed + 3)).to(dev)
    print(f"sampling {len(samplers)} samplers x {n} points from the same noise:")
    t_sample = time.perf_counter()
    methods, samples = measure(samplers, noise, lambda x: energy_distance(x, held_out), metric="energy_distance",
                               seed=args.seed, keep=samplers)
    sw = lambda x: sliced_wasserstein(x, held_out, generator=torch.Generator().manual_seed(0))  # noqa: E731
    for name, x in samples.items():
        methods[name]["sliced_wasserstein"] = sw(x)
    other = data_2d(args.data, n, args.seed + 4).to(dev)
    baselines = {"data vs data": energy_distance(other, held_out), "noise N(0, I)": energy_distance(noise, held_out)}
    sample_seconds = time.perf_counter() - t_sample
    straight = {k: straightness(trained[k].model, noise, steps=100) for k in ("flow_matching", "rf1", "rf2")}

    draw(trained, samples, noise, held_out, out / "samples.png", args.data)
    plot_quality(methods, out / "quality.png", baselines=baselines,
                 title=f"diffusion_2d ({args.data}): energy distance to held-out data")
    seconds = time.perf_counter() - t_start
    result = {"data": args.data, "samples": n, "steps": args.steps, "width": width, "depth": depth,
              "methods": methods, "baselines": baselines,
              "baseline_sliced_wasserstein": {"data vs data": sw(other), "noise N(0, I)": sw(noise)},
              "straightness": straight, "steps_run": fit.steps_run, "seconds": seconds, "sample_seconds": sample_seconds,
              "engine": engine.current(), "device": describe_device(dev)}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(methods, baselines))
    print("straightness S(Z): " + ", ".join(f"{k} {v:.4f}" for k, v in straight.items()))
    print(f"{seconds:.0f} s in all ({sample_seconds:.0f} s sampling); run folder {out}")
    return 0


def trajectories(trained, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """(steps + 1, b, 2) paths from the noise x: DDIM η = 0 (50 steps), the probability-flow ODE
    (rk4, 25 steps), flow matching, 1-RF and 2-RF (Euler, 100 steps)."""
    from zerotoml.diffusion import ddim_step, sub_sequence
    from zerotoml.diffusion.common import as_function, times
    from zerotoml.diffusion.ode import solve
    from zerotoml.diffusion.score_sde import probability_flow_drift

    ddpm, paths = trained["ddpm"], {}
    eps, τ, states = as_function(ddpm.model), sub_sequence(ddpm.schedule.T, 50), [x]
    with torch.no_grad():
        for k in reversed(range(len(τ))):
            t, prev = τ[k], (τ[k - 1] if k else -1)
            states.append(ddim_step(ddpm.schedule, eps(states[-1], times(t, x)), t, states[-1], prev=prev))
        paths["DDIM η = 0, 50 steps"] = torch.stack(states)
        s, sde = as_function(trained["score_sde"].model), VPSDE()
        paths["probability-flow ODE, rk4 25"] = solve(lambda y, t: probability_flow_drift(s, sde, y, t), x, 1.0, 1e-3,
                                                      steps=25, method="rk4", trajectory=True)
        for key, label in (("flow_matching", "flow matching"), ("rf1", "1-RF"), ("rf2", "2-RF")):
            paths[f"{label}, Euler 100"] = solve(trained[key].model, x, 0.0, 1.0, steps=100, trajectory=True)
    return paths


def draw(trained, samples, noise, held_out, path: Path, data: str) -> None:
    """samples.png: one sampler of each method on top of the held-out data (first row), and paths
    from noise to data (second row)."""
    try:
        import matplotlib  # noqa: F401  (an optional dependency)
    except ImportError:
        return
    from zerotoml.plots import _figure, _save

    shown = ["ddpm_1000", "pc_500", "fm_heun_50", "1rf_euler_1", "2rf_euler_1"]
    paths = trajectories(trained, noise[:64])
    fig = _figure(17.0, 7.0)
    axes = fig.subplots(2, 5, sharex=True, sharey=True)
    h = held_out.cpu()
    for ax, name in zip(axes[0], shown):
        x = samples[name].cpu()
        ax.scatter(h[:, 0], h[:, 1], s=2, c="0.8")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="C0")
        ax.set_title(name, fontsize=9)
    for ax, (label, p) in zip(axes[1], paths.items()):
        p = p.cpu()
        ax.scatter(h[:, 0], h[:, 1], s=2, c="0.85")
        ax.plot(p[:, :, 0], p[:, :, 1], lw=0.6, c="C1", alpha=0.7)
        ax.scatter(p[0, :, 0], p[0, :, 1], s=4, c="k")
        ax.scatter(p[-1, :, 0], p[-1, :, 1], s=4, c="C3")
        ax.set_title(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
    fig.suptitle(f"{data}: samples (blue) on held-out data (grey); paths from noise (black) to samples (red)")
    _save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
