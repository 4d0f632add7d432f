"""An MLP training step, zerotoml against the same MLP in torch.nn + torch.optim.

Run: python benchmarks/bench_mlp.py [--sizes 784,512,512,10] [--batch 128]

Both sides: the same sizes, float32, Adam, cross-entropy, the same batch. The
zerotoml step is ``value_and_grad(loss, model, x, y)`` then ``step(opt, model, g)``;
the torch step is ``zero_grad(); loss.backward(); opt.step()``. Rounds are
interleaved in one process and the median of each is reported, with the ratio
zerotoml/torch (lower is faster). Each configuration is a subprocess (the switches are read
at import): both engines (ZEROTOML_ENGINE=reference, fast), shape checks off and on
(ZEROTOML_CHECKS), the same threads and allocator for both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _machine import cpu_model


def measure(sizes: list[int], batch: int, rounds: int, steps: int) -> dict:
    import torch

    import zerotoml as zt
    from zerotoml.classifier import Classifier
    from zerotoml.layers.chain import MLP
    from zerotoml.optim import Adam

    torch.manual_seed(0)
    tmodel = torch.nn.Sequential()
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        tmodel.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            tmodel.append(torch.nn.ReLU())
    model = Classifier(zt.from_torch(tmodel))
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    opt = Adam.init(model, lr=1e-3)
    x = torch.randn(batch, sizes[0])
    y = torch.randint(0, sizes[-1], (batch,))

    def torch_step():
        topt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(tmodel(x), y)
        loss.backward()
        topt.step()
        return loss

    def zt_step():
        loss, g = zt.value_and_grad(zt.loss, model, x, y)
        zt.step(opt, model, g)
        return loss

    def timed(f) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            f()
        return (time.perf_counter() - t0) / steps * 1e3

    for f in (torch_step, zt_step):
        timed(f)  # warm up
    t_torch, t_zt = [], []
    for _ in range(rounds):
        t_torch.append(timed(torch_step))
        t_zt.append(timed(zt_step))
    a, b = statistics.median(t_zt), statistics.median(t_torch)
    return {"checks": zt.shapes.CHECKS, "engine": zt.engine.current(), "zerotoml_ms": a, "torch_ms": b, "ratio": a / b,
            "threads": torch.get_num_threads()}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="784,512,512,10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(measure(sizes, args.batch, args.rounds, args.steps)))
        return []
    results = []
    for engine_name, checks in (("reference", "0"), ("fast", "0"), ("reference", "1"), ("fast", "1")):
        env = dict(os.environ, ZEROTOML_CHECKS=checks, ZEROTOML_ENGINE=engine_name)
        cmd = [sys.executable, __file__, "--child", "--sizes", args.sizes, "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--steps", str(args.steps)]
        results.append(json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True,
                                                 check=True).stdout))
    print(f"MLP {args.sizes}, batch {args.batch}, Adam, float32, {results[0]['threads']} threads, "
          f"CPU: {cpu_model()}; time ratio zerotoml / torch.nn (lower is faster)")
    print(f"{'engine':<11}{'shape checks':<14}{'zerotoml':>12}{'torch.nn':>12}{'ratio':>8}")
    for r in results:
        print(f"{r['engine']:<11}{'on' if r['checks'] else 'off':<14}{r['zerotoml_ms']:>9.3f} ms"
              f"{r['torch_ms']:>9.3f} ms{r['ratio']:>8.3f}")
    return results


if __name__ == "__main__":
    main()
