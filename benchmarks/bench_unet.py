"""The DDPM U-Net: a training step and a function evaluation, zerotoml against the same
diffusers UNet2DModel in torch.nn + torch.optim.

Run: python benchmarks/bench_unet.py [--rounds 11] [--batch 64] [--nfe-batch 64] [--threads N]

The network is a Fashion-MNIST-sized U-Net: 28x28 images of 1 channel, block_out_channels
(32, 64, 64) (28 → 14 → 7), one residual block a level, self-attention at 14x14 and 7x7 and in
the middle, GroupNorm of 8 groups, heads of 8 channels. diffusers builds it; zerotoml's twin is
``from_torch`` of it, so both have the same weights.

1. Training step, float32: the ε-prediction loss mean((ε_θ(x_t, t) − ε)²) on the same batch,
   backward, Adam. zerotoml: ``value_and_grad`` then ``step(Adam, unet, g)``; torch:
   ``zero_grad(); F.mse_loss(unet(x_t, t).sample, ε).backward(); opt.step()``.
2. One function evaluation (what each step of a sampler costs): the forward without gradients
   at ``--nfe-batch``.

Each engine is a subprocess (the switches are read at import: ZEROTOML_ENGINE=reference and
fast, ZEROTOML_CHECKS=0), on the same threads as torch's side in it; the measurements of a
child are interleaved round by round (each round starts with another one) and medians are
reported, with the ratio zerotoml / torch (lower is faster). Freed memory is kept for the next
allocation (`zerotoml.engine.memory.keep_freed_memory`) unless ``--glibc-default``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _machine import cpu_model
from bench_conv import _median_ms  # medians of interleaved rounds, as the conv benchmark takes them

CONFIG = dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
              down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
              attention_head_dim=8)


def measure(rounds: int, batch: int, nfe_batch: int) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DModel

    import zerotoml as zt
    import zerotoml.diffusion.unet  # noqa: F401  (registers from_torch for UNet2DModel)
    from zerotoml.optim import Adam

    torch.manual_seed(0)
    net = UNet2DModel(**CONFIG)
    unet = zt.from_torch(net)
    topt = torch.optim.Adam(net.parameters(), lr=1e-4)
    opt = Adam.init(unet, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    ε = torch.randn(batch, 1, 28, 28, generator=g)
    x_nfe, t_nfe = torch.randn(nfe_batch, 1, 28, 28, generator=g), torch.randint(0, 1000, (nfe_batch,), generator=g)

    def loss(m):
        return zt.losses.mse_loss(zt.forward(m, x, t), ε)

    def ours_step():
        _, grads = zt.value_and_grad(loss, unet)
        zt.step(opt, unet, grads)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        F.mse_loss(net(x, t).sample, ε).backward()
        topt.step()

    def ours_nfe():
        with torch.no_grad():
            zt.forward(unet, x_nfe, t_nfe)

    def torch_nfe():
        with torch.no_grad():
            net(x_nfe, t_nfe)

    step = _median_ms({"zerotoml": ours_step, "torch": torch_step}, rounds)
    nfe = _median_ms({"zerotoml": ours_nfe, "torch": torch_nfe}, rounds)
    return {"engine": zt.engine.current(), "checks": zt.shapes.CHECKS, "threads": torch.get_num_threads(),
            "params": zt.param_count(unet), "step": step, "nfe": nfe}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--batch", type=int, default=64, help="training batch")
    p.add_argument("--nfe-batch", type=int, default=64, help="batch of the function evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--glibc-default", action="store_true", help="leave glibc's malloc as it is")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        import torch

        import zerotoml

        if args.threads:
            torch.set_num_threads(args.threads)
        kept = not args.glibc_default and zerotoml.engine.memory.keep_freed_memory()
        out = measure(args.rounds, args.batch, args.nfe_batch)
        print(json.dumps({**out, "memory": "kept" if kept else "given back (glibc default)"}))
        return []
    options = ["--rounds", str(args.rounds), "--batch", str(args.batch), "--nfe-batch", str(args.nfe_batch)]
    options += ["--threads", str(args.threads)] * bool(args.threads) + ["--glibc-default"] * args.glibc_default
    results = []
    for name in ("reference", "fast"):
        env = dict(os.environ, ZEROTOML_CHECKS="0", ZEROTOML_ENGINE=name)
        run = subprocess.run([sys.executable, __file__, "--child", *options], env=env, capture_output=True,
                             text=True, check=True)
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    r0 = results[0]
    print(f"U-Net 28x28x1, channels (32, 64, 64), {r0['params']:,} parameters; CPU: {cpu_model()}; float32, "
          f"{r0['threads']} threads, shape checks off, freed memory {r0['memory']}, median of {args.rounds} "
          f"interleaved rounds; ratio = time / torch's time (lower is faster)")
    print(f"{'':<34}{'engine':<12}{'zerotoml':>12}{'torch':>12}{'ratio':>8}")
    rows = [("step", f"training step, batch {args.batch} (Adam)"), ("nfe", f"one evaluation, batch {args.nfe_batch}")]
    for key, label in rows:
        for r in results:
            ours, theirs = r[key]["zerotoml"], r[key]["torch"]
            print(f"{label:<34}{r['engine']:<12}{ours:>9.1f} ms{theirs:>9.1f} ms{ours / theirs:>8.2f}")
    return results


if __name__ == "__main__":
    main()
