"""Matrix products: torch.mm against oneDNN's inner product (zerotoml/engine/gemm.py) on float32.

Run: python benchmarks/bench_gemm.py [--rounds 9] [--threads N]

For each shape (m, k, n), both libraries compute the same A (m, k) @ B (k, n); rounds are
interleaved in one process and the median is reported, as GFLOP/s (2·m·k·n per product) and
as the ratio of times. The shapes are the baby GPT's products (batch·context = 768 rows), the
three products of a convolution of x (32, 16, 32, 32) with W (32, 16, 3, 3) on its window
matrix, and small ones around `gemm.SMALL`, below which the fast engine leaves the product to
torch. Last, what the fast engine's own measurement (`gemm.choose`) picks for each shape here.
Note: notes/performance.md#matrix-products.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import cpu_model

SHAPES = [  # (label, m, k, n, layout): layout "nt" multiplies A by a transposed view of a (n, k) matrix
    ("GPT: Q, K, V", 768, 128, 384, "nn"),
    ("GPT: MLP up", 768, 128, 512, "nn"),
    ("GPT: MLP down", 768, 512, 128, "nn"),
    ("GPT: tied head", 768, 128, 76, "nt"),
    ("GPT: weight gradient (MLP up)", 128, 768, 512, "nn"),
    ("conv: forward W X", 32, 144, 32768, "nn"),
    ("conv: weight gradient X δᵀ", 144, 32768, 32, "nt"),
    ("conv: window gradient Wᵀ δ", 144, 32, 32768, "nn"),
    ("small: 64³", 64, 64, 64, "nn"),
    ("small: 128³ (near SMALL)", 128, 128, 128, "nn"),
    ("small: 256 x 128 x 128", 256, 128, 128, "nn"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    a = p.parse_args()

    import torch

    from zerotoml.engine import gemm

    gemm.LIBRARY = "onednn"  # (every large product to oneDNN, where torch has it, to measure it)

    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    print(f"CPU: {cpu_model()}; float32, {torch.get_num_threads()} threads, median of {a.rounds} interleaved rounds; "
          f"oneDNN available: {gemm._onednn_works()}, SMALL = {gemm.SMALL} multiply-adds")
    print(f"{'product':32s} {'m x k x n':>18s} {'torch.mm':>14s} {'gemm.mm':>14s} {'time ratio':>11s}")
    for label, m, k, n, layout in SHAPES:
        A = torch.randn(m, k, generator=g)
        B = torch.randn(k, n, generator=g) if layout == "nn" else torch.randn(n, k, generator=g).t()
        reps = max(1, int(2e8 // (2 * m * k * n)))
        fns = {"torch": lambda: torch.mm(A, B), "ours": lambda: gemm.mm(A, B)}
        err = (fns["ours"]() - fns["torch"]()).abs().max().item() / (fns["torch"]().abs().max().item())
        assert err < 1e-5, f"{label}: the engines disagree by {err:.1e} (relative)"
        times: dict[str, list[float]] = {k_: [] for k_ in fns}
        for r in range(a.rounds + 1):
            for name in (("torch", "ours") if r % 2 else ("ours", "torch")):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fns[name]()
                if r:  # round 0 warms up
                    times[name].append((time.perf_counter() - t0) / reps)
        t = {k_: statistics.median(v) for k_, v in times.items()}
        gf = {k_: 2 * m * k * n / v / 1e9 for k_, v in t.items()}
        print(f"{label:32s} {f'{m} x {k} x {n}':>18s} {gf['torch']:8.0f} GF/s {gf['ours']:8.0f} GF/s "
              f"{t['ours'] / t['torch']:10.2f}x")


    gemm.LIBRARY = None
    picks = {label: "oneDNN" if gemm.uses_onednn(torch.randn(m, k), torch.randn(k, n)) else "torch"
             for label, m, k, n, _ in SHAPES}
    print("the fast engine's own measurement (engine/gemm.py choose) picks: "
          + ", ".join(f"{label}: {lib}" for label, lib in picks.items()))


if __name__ == "__main__":
    main()
