"""A U-Net on Fashion-MNIST (scikit-learn's digits when absent): DDPM, DDIM, PC, flow matching and 2-RF against a Fréchet distance.

    python -m zerotoml run ddpm_fashion_mnist --threads 1        # the small preset: about 14 minutes on one core
    python -m zerotoml run ddpm_fashion_mnist --preset large --device cuda
    python -m zerotoml run ddpm_fashion_mnist --dataset digits
    python examples/ddpm_fashion_mnist.py --out runs/ddpm_fashion_mnist --resume

Trains two U-Nets on the images scaled to [−1, 1]: an ε-model (DDPM's L_simple, T = 1000, linear
β) and a velocity model (flow matching), then reflows the latter into the 2-rectified flow (its
weights, trained on the pairs its ODE draws). From the same noise it samples DDPM's 1000 steps,
DDIM on 10 to 100 steps with η = 0 and 1, predictor–corrector on the VP SDE that matches the
DDPM schedule (score −ε_θ/σ_t), flow-matching Euler and 2-RF in one step, and scores each by the
Fréchet distance of CNN features (zerotoml/diffusion/features.py: not FID; the CNN of
examples/cnn_fashion_mnist.py, trained into <out>/features or reused from there) to the train
split, beside the test split's own distance, the floor. The small preset is sized for 2 CPU
cores: 14x14 images (2x2 means; features read them bilinearly upsampled to 28x28, and the
reference images the same way), U-Net channels (16, 32) with one residual block a level, 800
steps of 64 per model, 500 samples. Writes <out>/: ddpm/, flow_matching/, rf2/ (run folders:
metrics.jsonl, checkpoints/, loss_curve.png), samples.png, quality.png, result.json
(``methods``: sampler -> nfe, quality, metric). Note: notes/ddpm.md#results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from zerotoml import engine, loss, sample
from zerotoml.checkpoint import CheckpointError
from zerotoml.data import Batches
from zerotoml.devices import describe_device
from zerotoml.diffusion import DDPM, VPSDE, FlowMatching, NoiseSchedule, RectifiedFlow, UNet
from zerotoml.diffusion.features import cnn_example, feature_net, feature_stats, features, frechet_to, resize
from zerotoml.diffusion.samplers import (ScoreFromNoise, ddpm_samplers, flow_samplers, markdown_table, measure,
                                         nfe_table, plot_quality, score_samplers)
from zerotoml.diffusion.runs import Fit, Parser, add_run_options, begin, check_options
from zerotoml.train import RunExistsError

PRESETS = {
    "small": dict(size=14, channels=(16, 32), layers=1, steps=800, reflow_steps=300, pairs=1000, pair_steps=20,
                  batch_size=64, lr=2e-3, samples=500, chunk=500, pc=(100,), feature_steps=600),
    "large": dict(size=28, channels=(32, 64, 64), layers=2, steps=10000, reflow_steps=3000, pairs=20000,
                  pair_steps=100, batch_size=128, lr=1e-3, samples=5000, chunk=5000, pc=(100, 1000), feature_steps=None),
}
MODELS = ("ddpm", "flow_matching", "rf2")


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def parse(argv) -> argparse.Namespace:
    p = Parser(prog="ddpm_fashion_mnist", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto")
    p.add_argument("--preset", choices=list(PRESETS), default="small",
                   help="small: 2 CPU cores in about 14 minutes; large: 28x28, U-Net (32, 64, 64), for a GPU")
    p.add_argument("--size", type=int, help="image side the models see (Fashion-MNIST: 14 or 28; digits: 8)")
    p.add_argument("--channels", type=ints, help="U-Net channels per level, e.g. 16,32 (multiples of 8)")
    p.add_argument("--layers", type=int, help="residual blocks per U-Net level")
    p.add_argument("--steps", type=int, help="optimizer steps of the ε-model and of the velocity model")
    p.add_argument("--reflow-steps", type=int, help="optimizer steps of 2-RF")
    p.add_argument("--pairs", type=int, help="reflow pairs drawn from the velocity model's ODE")
    p.add_argument("--pair-steps", type=int, help="midpoint steps of the ODE that draws the pairs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule")
    p.add_argument("--samples", type=int, help="samples per sampler for the Fréchet distance")
    p.add_argument("--chunk", type=int, help="images sampled at once (memory: the U-Net's activations of a chunk)")
    p.add_argument("--pc", type=ints, help="steps of the predictor-corrector samplers, e.g. 100,1000")
    p.add_argument("--clip", action="store_true", help="clamp x̂_0 to [-1, 1] in every DDPM and DDIM step "
                   "(DDPM's code does, the DDIM paper's does not; here it made DDIM with η = 0 worse)")
    p.add_argument("--feature-steps", type=int, help="steps of the feature CNN when it must be trained")
    p.add_argument("--features", help="run folder of the feature CNN (default <out>/features)")
    add_run_options(p, out="runs/ddpm_fashion_mnist", device=("auto", "auto (cuda, then mps, then cpu), cpu, cuda, "
                    "cuda:1, mps"), threads="on a shared 2-core machine two threads ran the U-Net up to 5x slower "
                    "than one")
    args = p.parse_args(argv)
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.dataset == "digits":
        args.size = 8
    check_options(p, args, ("size", "layers", "steps", "reflow_steps", "pairs", "pair_steps", "batch_size", "samples",
                            "chunk"), MODELS)
    if not args.pc or min(args.pc) < 1:
        p.error(f"--pc {','.join(map(str, args.pc))}: expected numbers of steps >= 1")
    if args.feature_steps is not None and args.feature_steps < 1:
        p.error(f"--feature-steps {args.feature_steps}: expected an integer >= 1")
    if any(c < 8 or c % 8 for c in args.channels):
        p.error(f"--channels {','.join(map(str, args.channels))}: expected multiples of 8 (GroupNorm of 8 groups)")
    if args.size > 28 or args.size % 2 ** (len(args.channels) - 1):
        p.error(f"--size {args.size}: a U-Net of {len(args.channels)} levels needs a side of at most 28 that "
                f"halves {len(args.channels) - 1} times")
    return args


def unet(args, size: int, time_scale: float, g: torch.Generator) -> UNet:
    """DDPM's U-Net, attention at the lowest level and in the middle; ``time_scale`` multiplies t
    before the sinusoids (1 for steps 0..999, 1000 for times in [0, 1])."""
    m = UNet.init(1, channels=args.channels, layers_per_block=args.layers, sample_size=size, generator=g)
    return dataclasses.replace(m, time_embedding=dataclasses.replace(m.time_embedding, scale=time_scale))


def main(argv: list[str] | None = None) -> int:
    t_start, args = time.perf_counter(), begin(parse, argv)
    if isinstance(args, int):
        return args
    out, dev = Path(args.out), args.device
    name, (x, _, x_test, _), _ = cnn_example().load(args.dataset)
    size = x.shape[-1] if name == "digits" else args.size
    net, cnn = feature_net(Path(args.features or out / "features"), name, x, steps=args.feature_steps, device=dev,
                           progress=not args.no_progress)
    # what the models see: 2x2 means when smaller than the data, in [−1, 1]
    scaled = lambda im: resize(im, size) * 2 - 1  # noqa: E731
    seen = lambda im: resize((im.clamp(-1, 1) + 1) / 2, x.shape[-1])  # noqa: E731  (back at the data's size)
    g = torch.Generator().manual_seed(args.seed)
    ref = feature_stats(features(net, seen(scaled(x[torch.randperm(len(x), generator=g)[:10000]]))))
    print(f"{name}: {len(x)} train and {len(x_test)} test images, models see {size}x{size}; feature CNN "
          f"{cnn['channels']}, test accuracy {cnn['test_accuracy']:.4f}; U-Net {args.channels} x {args.layers}; "
          f"engine: {engine.current()}; {describe_device(dev)}")
    fd = lambda im: frechet_to(features(net, seen(im)), ref)  # noqa: E731
    n = args.samples
    baselines = {f"test split, {min(n, len(x_test))} images": fd(scaled(x_test[:n])),
                 f"test split, all {len(x_test)}": fd(scaled(x_test))}
    x_train, x_val = scaled(x).to(dev), scaled(x_test[:256]).to(dev)

    val_g = lambda: torch.Generator(device=dev).manual_seed(12345)  # noqa: E731

    fit = Fit(args, out, "ddpm_fashion_mnist", warmup=200, log_every=10)
    val = lambda m: {"val_loss": loss(m, x_val, generator=val_g()).item()}  # noqa: E731
    try:
        ddpm = fit("ddpm", DDPM(unet(args, size, 1.0, g), NoiseSchedule.linear(1000, device=dev)),
                   Batches((x_train,), args.batch_size, seed=args.seed), args.steps, eval_fn=val)
        fm = fit("flow_matching", FlowMatching(unet(args, size, 1000.0, g)),
                 Batches((x_train,), args.batch_size, seed=args.seed), args.steps, eval_fn=val)
        z0, z1 = reflow(fm, out / "reflow_pairs.safetensors", args, x_train.shape[1:], dev)
        (z0, v0), (z1, v1) = z0.split([args.pairs, 64]), z1.split([args.pairs, 64])  # 64 held out
        rf2 = fit("rf2", RectifiedFlow(fm.model, k=2), Batches((z0, z1), args.batch_size, seed=args.seed),
                  args.reflow_steps, eval_fn=lambda m: {"val_loss": loss(m, v0, v1, generator=val_g()).item()})
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # the VP SDE of DDPM's schedule: β(t) = T β_t, 0.1 .. 20; ε-model's index i = T t − 1
    sde = VPSDE(0.1, 20.0)
    samplers = ddpm_samplers(ddpm, ancestral=(1000,), ddim=(10, 20, 50, 100), clip=1.0 if args.clip else None)
    samplers |= score_samplers(ScoreFromNoise(ddpm.model, sde, 1000.0, -1.0), sde, pc=args.pc)
    samplers |= flow_samplers(fm, "fm", euler=(10, 50, 100))
    samplers |= flow_samplers(rf2, "2rf", euler=(1,))
    noise = torch.randn(n, *x_train.shape[1:], generator=torch.Generator().manual_seed(args.seed + 3)).to(dev)
    baselines["noise N(0, I)"] = fd(noise)
    print(f"sampling {len(samplers)} samplers x {n} images from the same noise (DDPM's 1000 steps take longest):")
    t_sample = time.perf_counter()
    methods, samples = measure(samplers, noise, fd, metric="frechet_distance", seed=args.seed, chunk=args.chunk,
                               keep=samplers)
    sample_seconds = time.perf_counter() - t_sample

    draw(samples, out / "samples.png", name)
    plot_quality(methods, out / "quality.png", baselines=baselines,
                 title=f"ddpm_fashion_mnist ({name}, {size}x{size}): Fréchet distance of CNN features (not FID)")
    seconds = time.perf_counter() - t_start
    config = {k: v for k, v in vars(args).items() if k not in ("device", "resume", "no_progress")}
    result = {**config, "dataset": name, "size": size, "methods": methods, "baselines": baselines,
              "feature_cnn": {k: cnn[k] for k in ("steps", "channels", "test_accuracy")},
              "steps_run": fit.steps_run, "seconds": seconds, "sample_seconds": sample_seconds, "engine": engine.current(),
              "device": describe_device(dev)}
    (out / "result.json").write_text(json.dumps(result, indent=1, default=list) + "\n")
    print(nfe_table(methods))
    print(markdown_table(methods, baselines))
    print(f"{seconds:.0f} s in all ({sample_seconds:.0f} s sampling); run folder {out}")
    return 0


def reflow(fm, path: Path, args, shape, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` + 64 pairs (Z_0, Z_1) of the velocity model's ODE (midpoint steps), drawn once and
    kept in ``path``."""
    from safetensors.torch import load_file, save_file

    if args.resume and path.exists():
        pairs = load_file(str(path))
        if len(pairs["z0"]) == args.pairs + 64:
            return pairs["z0"].to(dev), pairs["z1"].to(dev)
    z0 = torch.randn(args.pairs + 64, *shape, generator=torch.Generator().manual_seed(args.seed + 2)).to(dev)
    print(f"drawing {args.pairs} reflow pairs ({args.pair_steps} midpoint steps)", flush=True)
    z1 = torch.cat([sample(fm, z0[i:i + args.chunk], steps=args.pair_steps, method="midpoint")
                    for i in range(0, len(z0), args.chunk)])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"z0": z0.cpu().contiguous(), "z1": z1.cpu().contiguous()}, str(path))
    return z0, z1


def draw(samples: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """samples.png: the first 12 samples of each sampler, one row each, all from the same noise."""
    try:
        import matplotlib  # noqa: F401  (an optional dependency)
    except ImportError:
        return
    from zerotoml.plots import _figure, _save, grid_image

    shown = [k for k in ("ddpm_1000", "ddim_eta0_10", "ddim_eta0_100", "ddim_eta1_10", "ddim_eta1_100", "pc_100",
                         "fm_euler_10", "fm_euler_100", "2rf_euler_1") if k in samples]
    fig = _figure(8.0, 0.8 * len(shown) + 0.6)
    axes = fig.subplots(len(shown), 1)
    for ax, k in zip(axes, shown):
        ax.imshow(grid_image((samples[k][:12].clamp(-1, 1) + 1) / 2, nrow=12, normalize=False).numpy(),
                  cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(k, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{name}: samples from the same noise, one sampler a row", fontsize=9)
    _save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
