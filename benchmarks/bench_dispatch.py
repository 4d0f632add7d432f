"""Per-call cost of a generic function: plum dispatch plus, with checks on, the
jaxtyping/beartype shape checks. Run: python benchmarks/bench_dispatch.py

It measures, in one process per setting, a method whose body does nothing
(``return x``), against calling that body directly, so what is left is the cost of
dispatch and checking. The checks-off run happens in a subprocess with
ZEROTOML_CHECKS=0 because the switch is read when methods are registered.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time


def measure() -> dict[str, float]:
    import torch

    from zerotoml.generic import forward, method
    from zerotoml.shapes import CHECKS, Float, Tensor
    from zerotoml.tree import struct

    @struct
    class Identity:
        w: Float[Tensor, "d"]

    def body(m, x):
        return x

    @method
    def forward(m: Identity, x: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
        return x

    m, x = Identity(torch.zeros(8)), torch.zeros(4, 8)
    n = 20_000 if not CHECKS else 5_000

    def per_call(f) -> float:
        for _ in range(1000):
            f(m, x)
        t0 = time.perf_counter()
        for _ in range(n):
            f(m, x)
        return (time.perf_counter() - t0) / n * 1e6

    rounds = [(per_call(forward), per_call(body)) for _ in range(7)]  # interleaved
    generic_us = statistics.median(r[0] for r in rounds)
    direct_us = statistics.median(r[1] for r in rounds)
    return {"checks": CHECKS, "generic_us": generic_us, "direct_us": direct_us,
            "overhead_us": generic_us - direct_us}


def main() -> list[dict]:
    results = []
    for checks in ("1", "0"):
        env = dict(os.environ, ZEROTOML_CHECKS=checks)
        out = subprocess.run([sys.executable, __file__, "--child"], env=env,
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    print(f"{'shape checks':<14}{'forward(m, x)':>16}{'body(m, x)':>14}{'overhead':>12}")
    for r in results:
        print(f"{'on' if r['checks'] else 'off':<14}{r['generic_us']:>13.2f} us"
              f"{r['direct_us']:>11.2f} us{r['overhead_us']:>9.2f} us")
    return results


if __name__ == "__main__":
    if "--child" in sys.argv:
        print(json.dumps(measure()))
    else:
        main()
