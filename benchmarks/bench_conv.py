"""Convolution speed: the einsum Conv against torch's kernels, and a small CNN training step
against the same network in torch.nn + torch.optim.

Run: python benchmarks/bench_conv.py [--rounds 15] [--threads N]

1. conv2d forward + backward (gradients of x, W and b) for x (32, 16, 32, 32), W (32, 16, 3, 3),
   padding 1: zerotoml's einsum path, its fast path (``zerotoml.layers.conv.FAST``) and
   F.conv2d. Ratios are to F.conv2d. ``--variants`` also times other ways of writing it,
   Winograd's F(2x2, 3x3) among them.
2. A training step of Conv 3→16, ReLU, MaxPool 2 (a 2x2 mean if zerotoml.layers.pool is missing), Conv 16→32, ReLU, MaxPool 2, Flatten,
   Linear 2048→10 on a (64, 3, 32, 32) batch with Adam: zerotoml (einsum path, then fast
   path) against torch.nn + torch.optim.Adam. Ratios are to torch.

Everything is float32 in one process; the variants are interleaved round by round and the
median of each is reported (each round starts with another variant). Shape checks follow ZEROTOML_CHECKS (on by default; they cost
tens of microseconds a call, which is small here).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_ms(fns: dict, rounds: int, reps: int) -> dict[str, float]:
    for f in fns.values():  # warm up
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:  # each round starts elsewhere
            t0 = time.perf_counter()
            for _ in range(reps):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / reps * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _pairs(einsum_path, fast_path, theirs, name: str, rounds: int) -> dict[str, float]:
    """Each of our paths timed in its own interleaving with torch's, so that the einsum path's
    freed 19 MB blocks (faulted back in by whatever runs next) do not land on the fast path's
    rounds. The fast path's time is reported scaled to the first pair's torch time, so that
    its ratio is the one measured against torch in its own pair."""
    slow = _median_ms({"einsum": einsum_path, name: theirs}, rounds, 1)
    fast = _median_ms({"fast": fast_path, name: theirs}, rounds, 1)
    return {"einsum": slow["einsum"], "fast": fast["fast"] * slow[name] / fast[name], name: slow[name]}


def bench_conv2d(rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    import zerotoml.layers.conv as conv
    from zerotoml import forward
    from zerotoml.layers.conv import Conv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, 32, 32, generator=g).requires_grad_()
    W = (torch.randn(32, 16, 3, 3, generator=g) * 0.1).requires_grad_()
    b = torch.zeros(32, requires_grad=True)
    δ = torch.randn(32, 32, 32, 32, generator=g)
    m = Conv(W, b, 1, 1)

    def ours(fast: bool):
        def run():
            conv.FAST = fast
            try:
                torch.autograd.grad(forward(m, x), (x, W, b), δ)
            finally:
                conv.FAST = False
        return run

    def torch_conv():
        torch.autograd.grad(F.conv2d(x, W, b, padding=1), (x, W, b), δ)

    return _pairs(ours(False), ours(True), torch_conv, "F.conv2d", rounds)


def bench_cnn_step(rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    import zerotoml as zt
    import zerotoml.layers.conv as conv
    from zerotoml.classifier import Classifier
    from zerotoml.optim import Adam

    pool = _pooling()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), pool(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), pool(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 8 * 8, 10))
    model = Classifier(zt.from_torch(net))
    topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt = Adam.init(model, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        topt.step()

    def ours(fast: bool):
        def run():
            conv.FAST = fast
            try:
                _, grads = zt.value_and_grad(zt.loss, model, x, y)
                zt.step(opt, model, grads)
            finally:
                conv.FAST = False
        return run

    return _pairs(ours(False), ours(True), torch_step, "torch", rounds)


def bench_variants(rounds: int) -> dict[str, float]:
    """The same conv2d forward + backward written the other ways notes/cnn.md#speed compares."""
    import torch
    import torch.nn.functional as F
    from opt_einsum import contract

    from zerotoml.layers.conv import convolve
    from zerotoml.layers.windows import pad, window_view, windows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, 32, 32, generator=g).requires_grad_()
    W = (torch.randn(32, 16, 3, 3, generator=g) * 0.1).requires_grad_()
    δ = torch.randn(32, 32, 32, 32, generator=g)
    P, k, one = ((1, 1), (1, 1)), (3, 3), (1, 1)

    def grad(y):
        torch.autograd.grad(y, (x, W), δ)

    def channels_last_windows():
        nhwc = pad(x, P).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # (b, c, H, W), NHWC strides
        return windows(nhwc, k, one, one).permute(0, 2, 3, 4, 5, 1)  # b i j h w c

    variants = {
        "F.conv2d": lambda: grad(F.conv2d(x, W, padding=1)),
        # the default: the window matrix (c k k, batch i), three einsums each one product, fold
        "window matrix, one product each (default)": lambda: grad(convolve(x, W, None, one, P, one, 1)),
        # the einsum over the window view, autograd through it and the fold (the default until now)
        "W-first einsum, fold backward": lambda: grad(torch.einsum("ochw,bcijhw->boij", W, windows(pad(x, P), k, one, one))),
        # torch's generic as_strided backward instead of the fold
        "W-first einsum, as_strided backward": lambda: grad(torch.einsum("ochw,bcijhw->boij", W, window_view(pad(x, P), k, one, one))),
        # the windows first: torch.einsum copies them into (b i j, c h w), rows of 3 floats
        "windows-first einsum, fold backward": lambda: grad(torch.einsum("bcijhw,ochw->boij", windows(pad(x, P), k, one, one), W)),
        # Tensor.unfold for the view (its own backward)
        "W-first einsum, Tensor.unfold view": lambda: grad(torch.einsum("ochw,bcijhw->boij", W, pad(x, P).unfold(2, 3, 1).unfold(3, 3, 1))),
        # opt_einsum's path for two operands: torch.tensordot, i.e. mm instead of bmm
        "opt_einsum.contract (tensordot)": lambda: grad(contract("bcijhw,ochw->boij", windows(pad(x, P), k, one, one), W,
                                                                 backend="torch")),
        # channels last: the padded input copied to (b, H, W, c) first, window rows of k·c floats
        "channels-last windows": lambda: grad(torch.einsum("bijhwc,ochw->boij", channels_last_windows(), W)),
        # one 1x1 einsum per kernel offset, summed
        "k*k einsums over shifted slices": lambda: grad(sum(torch.einsum("oc,bcij->boij", W[:, :, a, b], pad(x, P)[:, :, a:a + 32, b:b + 32])
                                                            for a in range(3) for b in range(3))),
        "Winograd F(2x2, 3x3), einsums": lambda: grad(_winograd_f2x2_3x3(x, W)),
    }
    return _median_ms(variants, rounds, 1)


def _winograd_f2x2_3x3(x, W):
    """Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2015, arXiv:1509.09308), padding 1,
    even output sizes, autograd through the einsums: on 4x4 input tiles d taken every 2 pixels,
    Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, summed over the input channels inside the ⊙ (a batched
    matmul over the 16 tile positions): 16 multiplications per 2x2 outputs instead of 36."""
    import torch

    from zerotoml.layers.windows import pad, windows

    Bt = x.new_tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    G = x.new_tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    At = x.new_tensor([[1, 1, 1, 0], [0, 1, -1, -1]])
    d = windows(pad(x, ((1, 1), (1, 1))), (4, 4), (2, 2), (1, 1))  # b c I J 4 4
    V = torch.einsum("uvhw,bcijhw->uvcbij", torch.einsum("uh,vw->uvhw", Bt, Bt), d)  # Bᵀ d B
    U = torch.einsum("uk,vl,ockl->uvoc", G, G, W)  # G g Gᵀ
    M = torch.einsum("uvoc,uvcbij->uvobij", U, V)  # Σ_c U ⊙ V
    Y = torch.einsum("pquv,uvobij->boipjq", torch.einsum("pu,qv->pquv", At, At), M)  # Aᵀ M A
    return Y.reshape(x.shape[0], W.shape[0], x.shape[2], x.shape[3])


def _pooling():
    """torch.nn.MaxPool2d with zerotoml's MaxPool; where zerotoml.layers.pool is missing, a
    2x2 mean written as a reshape (and nn.AvgPool2d on the torch side)."""
    import torch

    try:
        import zerotoml.layers.pool  # noqa: F401  (registers from_torch for the pooling layers)

        return torch.nn.MaxPool2d
    except ImportError:
        from einops import reduce

        from zerotoml.generic import forward, from_torch, method
        from zerotoml.tree import struct

        @struct
        class MeanPool2:
            pass

        @method
        def forward(m: MeanPool2, x: torch.Tensor) -> torch.Tensor:
            return reduce(x, "b c (h 2) (w 2) -> b c h w", "mean")

        @method
        def from_torch(module: torch.nn.AvgPool2d) -> MeanPool2:
            return MeanPool2()

        return torch.nn.AvgPool2d


ROWS = [("conv2d", "einsum", "conv2d fwd+bwd, zerotoml einsum", "F.conv2d"),
        ("conv2d", "fast", "conv2d fwd+bwd, zerotoml fast path", "F.conv2d"),
        ("conv2d", "F.conv2d", "conv2d fwd+bwd, F.conv2d", "F.conv2d"),
        ("cnn", "einsum", "CNN Adam step, zerotoml einsum", "torch"),
        ("cnn", "fast", "CNN Adam step, zerotoml fast path", "torch"),
        ("cnn", "torch", "CNN Adam step, torch.nn + torch.optim", "torch")]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--variants", action="store_true", help="also time the other ways of writing the conv")
    args = p.parse_args(argv)
    import torch

    import zerotoml
    import zerotoml.devices
    import zerotoml.gemm

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {"glibc default": {"conv2d": bench_conv2d(args.rounds), "cnn": bench_cnn_step(args.rounds)}}
    if zerotoml.devices.keep_freed_memory():
        runs["freed memory kept"] = {"conv2d": bench_conv2d(args.rounds), "cnn": bench_cnn_step(args.rounds)}
        if args.variants:
            runs["freed memory kept"]["variants"] = bench_variants(args.rounds)
    elif args.variants:
        runs["glibc default"]["variants"] = bench_variants(args.rounds)
    print(f"zerotoml's matrix products on {zerotoml.gemm.ENGINE} (ZEROTOML_GEMM); " f"float32, {torch.get_num_threads()} threads, shape checks "
          f"{'on' if zerotoml.shapes.CHECKS else 'off'}, median of {args.rounds} interleaved rounds; "
          f"ratio = time / torch's time")
    print(f"{'malloc:':<40}" + "".join(f"{k:>24}" for k in runs))
    print(f"{'':<40}" + f"{'ms':>14}{'ratio':>10}" * len(runs))
    for group, name, label, base in ROWS:
        cells = "".join(f"{r[group][name]:>14.2f}{r[group][name] / r[group][base]:>10.2f}" for r in runs.values())
        print(f"{label:<40}{cells}")
    for where, r in runs.items():
        if "variants" in r:
            var = r["variants"]
            print(f"\nconv2d fwd+bwd (x and W gradients), written as ({where})")
            for name, ms in var.items():
                print(f"  {name:<42}{ms:>9.2f}{ms / var['F.conv2d']:>8.2f}")
    return runs


if __name__ == "__main__":
    main()
