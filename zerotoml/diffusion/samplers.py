"""Samplers side by side: each with a name, its cost in network evaluations and a quality.
Note: notes/ddpm.md#results.

The diffusion examples (examples/diffusion_2d.py, examples/ddpm_fashion_mnist.py) train DDPM,
a score SDE, flow matching and rectified flow, then sample each in several ways. Every way is a
`Sampler`: the number of function evaluations of the network one sample costs (NFE) and a
function from the prior noise to samples. The builders below name them as result.json does
(``ddpm_1000``, ``ddim_eta0_50``, ``pc_100``, ``ode_rk4_25``, ``fm_heun_10``, ``2rf_euler_1``),
and `measure` runs them all from the same noise and scores the samples.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..generic import forward, method, sample
from ..shapes import Float
from ..tree import struct
from .common import as_function
from .ddim import DDIM
from .ode import _along
from .schedules import marginal
from .score_sde import euler_maruyama, predictor_corrector, probability_flow

__all__ = ["Sampler", "ScoreFromNoise", "STAGES", "ddpm_samplers", "score_samplers", "flow_samplers", "measure",
           "markdown_table", "nfe_table", "family", "plot_quality"]

STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}  # network evaluations per step of each ODE method


@dataclasses.dataclass(frozen=True)
class Sampler:
    """``run(noise, generator) -> samples`` at a cost of ``nfe`` network evaluations per sample."""

    nfe: int
    run: Callable[[Tensor, torch.Generator], Tensor]


@struct
class ScoreFromNoise:
    """A score model from a noise-predicting network: s_θ(x, t) = −ε_θ(x, t') / σ_t with
    t' = scale · t + shift (for a DDPM ε-model, its step index: scale T, shift −1, so that t = 1
    is index T − 1 and t = 1/T index 0). Song et al.'s code parameterises VP scores this way."""

    net: Any
    sde: Any
    scale: float = 1.0
    shift: float = 0.0


@method
def forward(m: ScoreFromNoise, x: Float[Tensor, "b *dims"], t: Float[Tensor, "b"]) -> Float[Tensor, "b *dims"]:
    σ = marginal(m.sde, t)[1]
    # ∇ log p_t(x) = −E[z | x_t = x] / σ_t ≈ −ε_θ(x, t) / σ_t
    return -as_function(m.net)(x, (m.scale * t + m.shift).clamp(min=0)) / _along(σ, x)


def ddpm_samplers(ddpm: Any, *, ancestral: Iterable[int] = (1000,), ddim: Iterable[int] = (10, 20, 50, 100),
                  etas: Iterable[float] = (0.0, 1.0), clip: float | None = None) -> dict[str, Sampler]:
    """DDPM's Algorithm 2 on ``ancestral`` evenly spaced steps (``ddpm_S``) and DDIM on ``ddim``
    steps for each η (``ddim_eta0_S``, ``ddim_eta1_S``), all from one ε-model."""
    out = {f"ddpm_{n}": Sampler(n, lambda x, g, n=n: sample(ddpm, x, steps=n, generator=g, clip=clip))
           for n in ancestral}
    ddim_model = DDIM(ddpm.model, ddpm.schedule)
    for eta in etas:
        for n in ddim:
            out[f"ddim_eta{eta:g}_{n}"] = Sampler(n, lambda x, g, n=n, eta=eta: sample(
                ddim_model, x, steps=n, eta=eta, generator=g, clip=clip))
    return out


def score_samplers(score: Any, sde: Any, *, euler_maruyama_steps: Iterable[int] = (), pc: Iterable[int] = (),
                   ode: Iterable[int] = (), ode_method: str = "rk4", corrector_steps: int = 1, snr: float = 0.16,
                   eps: float = 1e-3, prefix: str = "") -> dict[str, Sampler]:
    """The reverse SDE by Euler–Maruyama (``em_N``), predictor–corrector (``pc_N``: reverse
    diffusion and ``corrector_steps`` Langevin steps, N (1 + corrector_steps) evaluations) and
    the probability-flow ODE (``ode_<method>_N``), N steps each."""
    out = {f"{prefix}em_{n}": Sampler(n, lambda x, g, n=n: euler_maruyama(score, sde, x, steps=n, eps=eps, generator=g))
           for n in euler_maruyama_steps}
    out |= {f"{prefix}pc_{n}": Sampler(n * (1 + corrector_steps), lambda x, g, n=n: predictor_corrector(
        score, sde, x, steps=n, corrector_steps=corrector_steps, snr=snr, eps=eps, generator=g)) for n in pc}
    out |= {f"{prefix}ode_{ode_method}_{n}": Sampler(n * STAGES[ode_method], lambda x, g, n=n: probability_flow(
        score, sde, x, steps=n, method=ode_method, eps=eps)) for n in ode}
    return out


def flow_samplers(flow: Any, prefix: str, **steps: Iterable[int]) -> dict[str, Sampler]:
    """``sample(flow, x0, steps=N, method=m)`` for a FlowMatching or RectifiedFlow, one entry
    ``<prefix>_<m>_N`` for each method given as a keyword: ``flow_samplers(fm, "fm", euler=(10,
    100), heun=(5,))``."""
    return {f"{prefix}_{m}_{n}": Sampler(n * STAGES[m], lambda x, g, n=n, m=m: sample(flow, x, steps=n, method=m))
            for m, ns in steps.items() for n in ns}


def measure(samplers: dict[str, Sampler], noise: Tensor, quality: Callable[[Tensor], float], *, metric: str,
            seed: int = 0, chunk: int | None = None, keep: Iterable[str] = (), log: Callable[[str], Any] = print
            ) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """Run every sampler on the same ``noise`` (``chunk`` samples at a time; its random numbers
    from a generator seeded with ``seed``), score the samples with ``quality`` and time them.
    Returns ``{name: {"nfe", "quality", "metric", "seconds"}}`` and the samples of ``keep``."""
    methods, kept, keep = {}, {}, set(keep)
    chunk = chunk or len(noise)
    for name, s in samplers.items():
        g = torch.Generator(device=noise.device).manual_seed(seed)
        t0 = time.perf_counter()
        x = torch.cat([s.run(noise[i:i + chunk], g) for i in range(0, len(noise), chunk)])
        seconds = time.perf_counter() - t0
        q = float(quality(x))
        methods[name] = {"nfe": s.nfe, "quality": q, "metric": metric, "seconds": round(seconds, 3)}
        log(f"  {name:<18} {s.nfe:>5} NFE  {metric} {q:.4g}  ({seconds:.1f} s)")
        if name in keep:
            kept[name] = x
    return methods, kept


def markdown_table(methods: dict[str, dict], baselines: dict[str, float] | None = None) -> str:
    """The table of a result.json: one row per sampler (name, NFE, quality, seconds), then the
    baselines (the quality of data against data, and of the prior noise)."""
    metric = next(iter(methods.values()))["metric"] if methods else "quality"
    rows = [f"| sampler | NFE | {metric} | seconds |", "|---|---|---|---|"]
    rows += [f"| {k} | {v['nfe']} | {v['quality']:.4g} | {v['seconds']:.1f} |" for k, v in methods.items()]
    rows += [f"| *{k}* | 0 | {v:.4g} | |" for k, v in (baselines or {}).items()]
    return "\n".join(rows)


def family(name: str) -> str:
    """The sampler without its step count: ``ddim_eta0_50`` -> ``ddim_eta0``."""
    return name.rsplit("_", 1)[0]


def nfe_table(methods: dict[str, dict], digits: int = 4) -> str:
    """Quality with one row per sampler family and one column per NFE, as the DDIM paper's
    Table 1 has one row per η and one column per number of steps."""
    nfes = sorted({v["nfe"] for v in methods.values()})
    rows: dict[str, dict[int, float]] = {}
    for name, v in methods.items():
        rows.setdefault(family(name), {})[v["nfe"]] = v["quality"]
    metric = next(iter(methods.values()))["metric"] if methods else "quality"
    lines = [f"| {metric} (NFE →) | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    lines += [f"| {fam} | " + " | ".join(f"{row[k]:.{digits}g}" if k in row else "" for k in nfes) + " |"
              for fam, row in rows.items()]
    return "\n".join(lines)


def plot_quality(methods: dict[str, dict], path: Any, *, baselines: dict[str, float] | None = None,
                 title: str | None = None) -> None:
    """Quality against NFE (log scale), one line per sampler family, the baselines as dashed lines."""
    try:
        import matplotlib  # noqa: F401  (an optional dependency)
    except ImportError:
        return
    from ..plots import _figure, _save

    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    groups: dict[str, list] = {}
    for name, v in methods.items():
        groups.setdefault(family(name), []).append((v["nfe"], v["quality"]))
    for fam, pts in groups.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=fam)
    for i, (k, v) in enumerate((baselines or {}).items()):
        ax.axhline(v, ls="--", lw=1, color=f"C{(len(groups) + i) % 10}", label=k)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample (NFE)")
    ax.set_ylabel(next(iter(methods.values()))["metric"] + " (lower is better)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    _save(fig, path)
