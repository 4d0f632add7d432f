"""Convolution speed: zerotoml's Conv under both engines against torch's kernel, and a small
CNN training step under both engines against the same network in torch.nn + torch.optim.

Run: python benchmarks/bench_conv.py [--rounds 31] [--threads N]

1. conv2d forward + backward (gradients of x, W and b) for x (32, 16, 32, 32), W (32, 16, 3, 3),
   padding 1: zerotoml's Conv under the reference engine (one einsum over the window view,
   autograd) and under the fast engine (F.conv2d), and F.conv2d itself.
2. A training step of Conv 3→16, ReLU, MaxPool 2, Conv 16→32, ReLU, MaxPool 2, Flatten,
   Linear 2048→10 on a (64, 3, 32, 32) batch with Adam: zerotoml under each engine against
   torch.nn + torch.optim.Adam.

Everything is float32 in one process, on the same threads; the three sides of each
measurement are interleaved round by round (each round starts with another one) and the
median of each is reported, with its ratio to torch's (lower is faster). Freed memory is kept
for the next allocation (`zerotoml.engine.memory.keep_freed_memory`, what ``python -m zerotoml
run`` does) unless ``--glibc-default``. Shape checks follow ZEROTOML_CHECKS (on by default;
``ZEROTOML_CHECKS=0`` for the numbers in notes/performance.md#convolution).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import cpu_model


def _median_ms(fns: dict, rounds: int) -> dict[str, float]:
    for f in fns.values():  # warm up
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:  # each round starts elsewhere
            t0 = time.perf_counter()
            fns[k]()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_conv2d(rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from zerotoml import engine, forward
    from zerotoml.layers.conv import Conv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, 32, 32, generator=g).requires_grad_()
    W = (torch.randn(32, 16, 3, 3, generator=g) * 0.1).requires_grad_()
    b = torch.zeros(32, requires_grad=True)
    δ = torch.randn(32, 32, 32, 32, generator=g)
    m = Conv(W, b, 1, 1)

    def ours(name: str):
        def run():
            with engine.use(name):
                torch.autograd.grad(forward(m, x), (x, W, b), δ)
        return run

    def torch_conv():
        torch.autograd.grad(F.conv2d(x, W, b, padding=1), (x, W, b), δ)

    return _median_ms({"reference": ours("reference"), "fast": ours("fast"), "torch": torch_conv}, rounds)


def bench_cnn_step(rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    import zerotoml as zt
    from zerotoml import engine
    from zerotoml.classifier import Classifier
    from zerotoml.optim import Adam

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 8 * 8, 10))
    model = Classifier(zt.from_torch(net))
    topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    opts = {name: Adam.init(model, lr=1e-3) for name in engine.ENGINES}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        topt.step()

    def ours(name: str):
        def run():
            with engine.use(name):
                _, grads = zt.value_and_grad(zt.loss, model, x, y)
                zt.step(opts[name], model, grads)
        return run

    return _median_ms({"reference": ours("reference"), "fast": ours("fast"), "torch": torch_step}, rounds)


ROWS = [("conv2d", "conv2d forward + backward", "F.conv2d"), ("cnn", "CNN Adam step", "torch.nn + torch.optim")]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--glibc-default", action="store_true", help="leave glibc's malloc as it is")
    args = p.parse_args(argv)
    import torch

    import zerotoml

    if args.threads:
        torch.set_num_threads(args.threads)
    kept = not args.glibc_default and zerotoml.engine.memory.keep_freed_memory()
    runs = {"conv2d": bench_conv2d(args.rounds), "cnn": bench_cnn_step(args.rounds)}
    memory = "kept" if kept else "given back (glibc default)"
    print(f"CPU: {cpu_model()}; float32, {torch.get_num_threads()} threads, shape checks "
          f"{'on' if zerotoml.shapes.CHECKS else 'off'}, freed memory {memory}, median of {args.rounds} "
          f"interleaved rounds; ratio = time / torch's time (lower is faster)")
    print(f"{'':<28}{'engine':<12}{'zerotoml':>12}{'torch':>12}{'ratio':>8}   torch side")
    for key, label, theirs in ROWS:
        r = runs[key]
        for name in zerotoml.engine.ENGINES:
            print(f"{label:<28}{name:<12}{r[name]:>9.2f} ms{r['torch']:>9.2f} ms"
                  f"{r[name] / r['torch']:>8.2f}   {theirs}")
    return runs


if __name__ == "__main__":
    main()
