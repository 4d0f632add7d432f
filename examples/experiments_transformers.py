"""Two controlled GPT experiments on Shakespeare: char vs BPE tokens in bits per character, and 1-8 heads.

    ZEROTOML_CHECKS=0 python -m zerotoml run experiments_transformers            # ~23 min, one busy core
    python -m zerotoml run experiments_transformers --quick --no-progress      # a smoke run, seconds
    ZEROTOML_CHECKS=0 python examples/experiments_transformers.py --steps 800 --write-note

A. Tokenizers at equal compute: the same transformer body (d_model, layers, heads), the same
   steps, batch and context *in tokens*, so the same tokens are processed; a BPE model sees
   more characters per step and pays a larger embedding table and LM head. Scored in bits per
   character on the same held-out text: (Σ NLL in nats over its tokens) / (its characters) / ln 2.
B. Heads: the char-level model with h = 1, 2, 4, 8 heads at fixed d_model (d_head = d_model / h),
   same seed, data and schedule; one more run of the 4-head model with another seed gives the
   seed-to-seed spread to compare the differences against.

Writes <out>/: results.json, results.csv, results.md, experiments_tokenizers.png, experiments_heads.png;
--write-note copies the PNGs to notes/figures/. Note: notes/experiments_transformers.md.
"""

import argparse
import csv
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from zerotoml import forward, shapes
from zerotoml.data import Windows, next_token_windows, shakespeare
from zerotoml.losses import cross_entropy
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import train
from zerotoml.transformers import GPT, BPETokenizer, CharTokenizer
from zerotoml.tree import param_count, params

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("experiments_tokenizers.png", "experiments_heads.png")


@dataclasses.dataclass
class Config:
    """Everything a run depends on; every run of one experiment shares it."""

    d_model: int = 128
    n_layer: int = 2
    context: int = 64           # tokens per training window (and per evaluation window)
    batch_size: int = 32
    steps: int = 400
    lr: float = 2e-3            # peak of a cosine schedule with linear warmup
    weight_decay: float = 0.1
    seed: int = 0
    evals: int = 8              # evaluations along each run
    val_chars: int = 40_000     # the held-out text: the first val_chars characters of the val split
    train_chars: int | None = None      # None: train on the whole train split
    bpe_train_chars: int | None = None  # None: learn the merges on all the training text
    bpe_vocab: tuple[int, ...] = (512, 1024)
    heads: tuple[int, ...] = (1, 2, 4, 8)
    tokenizer_heads: int = 4   # experiment A's model has this many heads (shared with B)
    noise_seed: int | None = 1       # one extra run of that model with this seed (None: skip)


QUICK = dict(d_model=32, n_layer=1, context=16, batch_size=4, steps=4, evals=2, val_chars=1500,
             train_chars=100_000, bpe_train_chars=50_000, bpe_vocab=(300,))


# ------------------------------------------------------------------ data and the metric


def validation_nll(model: GPT, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64) -> float:
    """Σ over every target token of −ln p(token | its window's earlier tokens), in nats."""
    device = params(model)[0].device
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            z = forward(model, x[lo: lo + batch_size].to(device))
            t = y[lo: lo + batch_size].to(device)
            # −Σ_i ln p(u_i | u_<i)
            total += float(cross_entropy(z.transpose(1, 2), t, reduction="sum"))
    return total


def bits_per_char(nll_nats: float, n_chars: int) -> float:
    """bpc = (Σ NLL in nats over the text's tokens) / (characters of the text) / ln 2.
    Per character, not per token, so that tokenizers of any granularity compare."""
    if n_chars <= 0:
        raise ValueError(f"bits_per_char: n_chars={n_chars}; expected > 0")
    return nll_nats / n_chars / math.log(2)


@dataclasses.dataclass
class HeldOut:
    """The held-out text as one tokenizer sees it: its windows and the characters they predict."""

    x: torch.Tensor
    y: torch.Tensor
    n_chars: int

    @classmethod
    def of(cls, tok, text: str, context: int) -> "HeldOut":
        ids = torch.tensor(tok.encode(text), dtype=torch.long)
        # inputs ids[kT : kT+T], targets ids[kT+1 : kT+T+1]: every token but the first predicted once
        x, y = next_token_windows(ids, context)
        return cls(x, y, len(tok.decode(y.flatten())))

    def metrics(self, model: GPT) -> dict[str, float]:
        nll = validation_nll(model, self.x, self.y)
        return {"val_loss": nll / self.y.numel(), "val_bpc": bits_per_char(nll, self.n_chars)}


def count_baseline(train_ids: torch.Tensor, held: HeldOut, vocab_size: int, order: int) -> float:
    """Bits per character of an add-one-smoothed unigram (order 1) or bigram (order 2) count model
    of the training tokens, on the same held-out targets: the floor a trained model must beat."""
    V = vocab_size
    if order == 1:
        # p(u) = (n(u) + 1) / (N + V)
        n = torch.bincount(train_ids, minlength=V).double()
        nll = -((n + 1) / (n.sum() + V)).log()[held.y].sum()
    else:
        # p(u | v) = (n(v u) + 1) / (n(v) + V); the token before target y[k, t] is x[k, t]
        n = torch.bincount(train_ids[:-1] * V + train_ids[1:], minlength=V * V).double().reshape(V, V)
        nll = -((n + 1) / (n.sum(1, keepdim=True) + V)).log()[held.x, held.y].sum()
    return bits_per_char(float(nll), held.n_chars)


# --------------------------------------------------------------------------------- runs


def train_flops(cfg: Config, vocab: int) -> float:
    """≈ 6 (N_body + d·V) + 6 L T d per token (Kaplan et al. 2020, §2.1; the tied LM head counted
    as its matmul, the masked half of the T×T scores counted too, as the einsum computes it)."""
    d, L, T = cfg.d_model, cfg.n_layer, cfg.context
    body = L * (4 * d * d + 2 * d * 4 * d)  # attention projections + feed-forward weights
    return 6 * (body + d * vocab) + 6 * L * T * d


def run_one(label: str, tok, train_ids: torch.Tensor, held: HeldOut, cfg: Config, *, n_head: int,
            seed: int, chars_per_token: float, device: str, progress: bool) -> dict:
    """Train one GPT and return its configuration, curve and final held-out metrics."""
    g = torch.Generator().manual_seed(seed)
    model = GPT.init(tok.vocab_size, cfg.context, cfg.d_model, cfg.n_layer, n_head, dropout=0.0, generator=g)
    data = Windows(train_ids, cfg.context, cfg.batch_size, seed)
    schedule = Cosine(cfg.lr, cfg.steps, min_lr=cfg.lr / 10, warmup_steps=max(cfg.steps // 10, 1))
    t0 = time.perf_counter()
    result = train(model, AdamW.init(model, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay), data,
                   steps=cfg.steps, schedule=schedule, clip=1.0, eval_every=max(cfg.steps // cfg.evals, 1),
                   eval_fn=held.metrics, seed=seed, device=device, log_every=max(cfg.steps // 40, 1),
                   progress=progress, name=label, plot=False)
    seconds = time.perf_counter() - t0
    final = [r for r in result.history if r["kind"] == "eval"][-1]
    tokens = cfg.steps * cfg.batch_size * cfg.context
    n_params = param_count(model)
    return {"label": label, "tokenizer": label.split(",")[0], "vocab": tok.vocab_size, "heads": n_head,
            "d_head": cfg.d_model // n_head, "seed": seed, "params": n_params,
            "params_body": n_params - model.wte.W.numel() - param_count(model.wpe),
            "train_tokens": tokens, "train_chars": round(tokens * chars_per_token),
            "train_flops": train_flops(cfg, tok.vocab_size) * tokens,
            "val_tokens": held.y.numel(), "val_chars": held.n_chars,
            "val_loss": final["val_loss"], "val_bpc": final["val_bpc"],
            "train_loss": result.series("loss")[1][-1], "seconds": seconds,
            "s_per_step": result.train_seconds / max(result.steps_run, 1),
            "curve": [(r["step"], r["val_loss"], r["val_bpc"]) for r in result.history if r["kind"] == "eval"]}


def experiments(cfg: Config, *, device: str = "cpu", progress: bool = True, log=print) -> dict:
    """Run A (tokenizers) and B (heads); returns {"config", "tokenizers": [...], "heads": [...]}."""
    train_text, val_text = shakespeare("train")[: cfg.train_chars], shakespeare("val")[: cfg.val_chars]
    char = CharTokenizer.train(train_text)
    tokenizers = [("char", char)]
    for V in cfg.bpe_vocab:
        t0 = time.perf_counter()
        tokenizers.append((f"bpe-{V}", BPETokenizer.train(train_text[: cfg.bpe_train_chars], V)))
        log(f"learned bpe-{V} in {time.perf_counter() - t0:.1f} s")
    encoded = {}
    for name, tok in tokenizers:
        ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
        encoded[name] = (tok, ids, HeldOut.of(tok, val_text, cfg.context), len(train_text) / len(ids))
        log(f"{name}: vocab {tok.vocab_size}, {len(ids):,} train tokens, "
            f"{len(train_text) / len(ids):.3f} chars/token")

    def run(name: str, n_head: int, seed: int) -> dict:
        tok, ids, held, cpt = encoded[name]
        label = f"{name}, {n_head} heads, seed {seed}"
        r = run_one(label, tok, ids, held, cfg, n_head=n_head, seed=seed, chars_per_token=cpt,
                    device=device, progress=progress)
        r["tokenizer"] = name
        r["unigram_bpc"], r["bigram_bpc"] = (count_baseline(ids, held, tok.vocab_size, k) for k in (1, 2))
        log(f"{label}: val {r['val_loss']:.4f} nats/token, {r['val_bpc']:.4f} bits/char, "
            f"{r['seconds']:.0f} s")
        return r

    h0 = cfg.tokenizer_heads
    A = [run(name, h0, cfg.seed) for name, _ in tokenizers]
    B = [A[0] if h == h0 else run("char", h, cfg.seed) for h in cfg.heads]
    if cfg.noise_seed is not None:
        B.append(run("char", h0, cfg.noise_seed))
    return {"config": dataclasses.asdict(cfg), "tokenizers": A, "heads": B}


# ------------------------------------------------------------------------------ outputs


def tables(results: dict) -> str:
    """The two markdown tables."""
    A = ["| tokenizer | vocab | chars/token | params (body) | train tokens | train chars | train FLOPs "
         "| val nats/token | **val bits/char** | s/step | unigram / bigram counts, bits/char |", "|" + " --- |" * 11]
    for r in results["tokenizers"]:
        A.append(f"| {r['tokenizer']} | {r['vocab']} | {r['val_chars'] / r['val_tokens']:.3f} | "
                 f"{r['params']:,} ({r['params_body']:,}) | {r['train_tokens']:,} | ≈{r['train_chars']:,} | "
                 f"{r['train_flops']:.2e} | {r['val_loss']:.4f} | **{r['val_bpc']:.4f}** | {r['s_per_step']:.3f} | "
                 f"{r['unigram_bpc']:.3f} / {r['bigram_bpc']:.3f} |")
    B = ["| heads | d_head | seed | params | train loss (last) | val loss (nats/char) | **val bits/char** | s/step |",
         "|" + " --- |" * 8]
    for r in results["heads"]:
        B.append(f"| {r['heads']} | {r['d_head']} | {r['seed']} | {r['params']:,} | {r['train_loss']:.4f} | "
                 f"{r['val_loss']:.4f} | **{r['val_bpc']:.4f}** | {r['s_per_step']:.3f} |")
    return "\n".join(["### A. Tokenizers at equal compute", "", *A, "", "### B. Heads at fixed width", "", *B, ""])


def plot(results: dict, out: Path) -> None:
    """experiments_tokenizers.png (val bits/char against steps and against characters seen)
    and experiments_heads.png (val bits/char against steps per head count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = results["config"]
    fig = Figure(figsize=(9, 3.4), dpi=80)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for r in results["tokenizers"]:
        steps, _, bpc = zip(*r["curve"])
        per_step = r["train_chars"] / cfg["steps"]
        ax1.plot(steps, bpc, marker="o", label=f"{r['tokenizer']} (V={r['vocab']})")
        ax2.plot([s * per_step for s in steps], bpc, marker="o")
    ax1.set(xlabel="step (same tokens per step)", ylabel="val bits / char", title="equal compute")
    ax2.set(xlabel="training characters seen", title="the same runs against characters")
    ax1.legend()
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    fig.savefig(out / FIGURES[0], bbox_inches="tight")

    fig = Figure(figsize=(6, 3.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in results["heads"]:
        steps, _, bpc = zip(*r["curve"])
        other_seed = r["seed"] != cfg["seed"]
        ax.plot(steps, bpc, marker="o", ls="--" if other_seed else "-",
                label=f"h={r['heads']} (d_head={r['d_head']})" + (f", seed {r['seed']}" if other_seed else ""))
    ax.set(xlabel="step", ylabel="val bits / char", title=f"heads at d_model={cfg['d_model']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(out / FIGURES[1], bbox_inches="tight")


def write_outputs(results: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    keys = [k for k in results["tokenizers"][0] if k != "curve"]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["experiment", *keys])
        w.writeheader()
        for exp in ("tokenizers", "heads"):
            for r in results[exp]:
                w.writerow({"experiment": exp, **{k: r[k] for k in keys}})
    md = tables(results)
    (out / "results.md").write_text(md)
    plot(results, out)
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="experiments_transformers", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, help=f"optimizer steps per run (default {Config.steps})")
    p.add_argument("--quick", action="store_true", help="a tiny smoke version (seconds)")
    p.add_argument("--out", default=None, help="run folder (default runs/experiments_transformers[_quick])")
    p.add_argument("--write-note", action="store_true", help="copy the PNGs into notes/figures/")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default 0: torch's own choice; 1 on a machine shared with busy processes)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    if args.threads:  # 0 leaves torch's default
        torch.set_num_threads(args.threads)
    cfg = Config(**(QUICK if args.quick else {}), seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    if shapes.CHECKS and not args.quick:
        print("notice: shape checks are on; ZEROTOML_CHECKS=0 skips their per-call cost",
              file=sys.stderr)
    out = Path(args.out or f"runs/experiments_transformers{'_quick' if args.quick else ''}")
    t0 = time.perf_counter()
    results = experiments(cfg, device=args.device, progress=not args.no_progress)
    results["seconds"] = time.perf_counter() - t0
    results["torch_threads"] = torch.get_num_threads()
    md = write_outputs(results, out)
    print(md)
    print(f"total {results['seconds']:.0f} s; wrote {out}/results.md, results.csv, results.json, "
          f"{', '.join(FIGURES)}")
    if args.write_note:
        (ROOT / "notes" / "figures").mkdir(parents=True, exist_ok=True)
        for f in FIGURES:
            shutil.copyfile(out / f, ROOT / "notes" / "figures" / f)
        print(f"copied {', '.join(FIGURES)} to {ROOT / 'notes' / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
