"""An MLP classifier on Fashion-MNIST (scikit-learn's digits when the Fashion-MNIST files are absent).

    python -m zerotoml run mlp_fashion_mnist                 # Fashion-MNIST, ~5 epochs
    python -m zerotoml run mlp_fashion_mnist --dataset digits
    python examples/mlp_fashion_mnist.py --steps 5000 --resume

Writes runs/<name>/: metrics.jsonl, run.json, checkpoints/, loss_curve.png, result.json.
Note: notes/training.md#results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from einops import rearrange

from zerotoml import loss
from zerotoml.checkpoint import CheckpointError
from zerotoml.classifier import Classifier, accuracy
from zerotoml.data import Batches
from zerotoml.devices import pick_device
from zerotoml.layers import MLP
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import RunExistsError, train
from zerotoml.tree import set_training

DEFAULTS = {  # dataset -> (steps, batch size, hidden sizes)
    "fashion-mnist": (2500, 128, [256, 128]),
    "digits": (600, 64, [128]),
}


def load(dataset: str) -> tuple[str, tuple[torch.Tensor, ...]]:
    """``(name, (x_train, y_train, x_test, y_test))`` with flat float images in [0, 1]."""
    from zerotoml.data import fashion_mnist, images_to_float
    from zerotoml.data.digits import digits

    if dataset in ("auto", "fashion-mnist"):
        try:
            x, y = fashion_mnist("train", download=dataset == "fashion-mnist")
            x_test, y_test = fashion_mnist("test", download=dataset == "fashion-mnist")
            flat = lambda im: rearrange(images_to_float(im), "n h w -> n (h w)")  # noqa: E731
            return "fashion-mnist", (flat(x), y, flat(x_test), y_test)
        except FileNotFoundError as e:
            if dataset == "fashion-mnist":
                raise
            print(f"notice: Fashion-MNIST is not on this machine, so this run uses scikit-learn's digits "
                  f"instead.\n  ({str(e).splitlines()[0]})\n  To get it: apt-get install dataset-fashion-mnist",
                  file=sys.stderr)
    x, y = digits("train", flat=True)
    x_test, y_test = digits("test", flat=True)
    return "digits", (x, y, x_test, y_test)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlp_fashion_mnist", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto")
    p.add_argument("--steps", type=int, help="total optimizer steps (default 2500 Fashion-MNIST, 600 digits)")
    p.add_argument("--batch-size", type=int, help="default 128 Fashion-MNIST, 64 digits")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", help="run folder (default runs/mlp_<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    name, (x, y, x_test, y_test) = load(args.dataset)
    steps, batch_size, hidden = DEFAULTS[name]
    steps, batch_size = args.steps or steps, args.batch_size or batch_size
    out = Path(args.out or f"runs/mlp_{name.replace('-', '_')}")
    device = pick_device(args.device)
    # standardise with the training set's statistics: x ← (x − μ) / σ
    μ, σ = x.double().mean().float(), x.double().std().float()  # float64: the same on any thread count
    x, x_test = ((x - μ) / σ).to(device), ((x_test - μ) / σ).to(device)
    y, y_test = y.to(device), y_test.to(device)

    g = torch.Generator().manual_seed(args.seed)
    model = Classifier(MLP.init([x.shape[1], *hidden, 10], dropout=0.1, generator=g))
    data = Batches((x, y), batch_size, seed=args.seed)
    schedule = Cosine(args.lr, steps, min_lr=args.lr / 100, warmup_steps=min(100, steps // 10))

    def evaluate(m):
        return {"test_loss": loss(m, x_test, y_test).item(), "test_acc": accuracy(m, x_test, y_test)}

    print(f"{name}: {len(y)} train and {len(y_test)} test images of {x.shape[1]} pixels; "
          f"{len(data)} steps per epoch of {batch_size}")
    try:
        result = train(model, AdamW.init(model, lr=args.lr, weight_decay=1e-4), data, steps=steps,
                       schedule=schedule, clip=1.0, eval_every=max(steps // 5, 1), eval_fn=evaluate,
                       out=out, seed=args.seed, device=device, checkpoint_every=max(steps // 5, 1),
                       resume=args.resume, log_every=10, progress=not args.no_progress,
                       name=f"mlp_{name.replace('-', '_')}")
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    trained = set_training(result.model, False)  # dropout off for testing
    acc = accuracy(trained, x_test, y_test)
    epochs = result.steps_run / len(data)
    per_epoch = result.train_seconds / epochs if epochs else None  # None: nothing left to train
    summary = {"dataset": name, "steps": result.step, "test_accuracy": acc, "epochs": result.step / len(data),
               "seconds_per_epoch": per_epoch, "device": str(device), "batch_size": batch_size}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    losses = result.series("loss")[1]
    if losses:
        print(f"train loss {losses[0]:.4f} (step {result.series('loss')[0][0]}) -> {losses[-1]:.4f} "
              f"(step {result.step})")
    timing = f"{per_epoch:.2f} s per epoch" if per_epoch is not None else "no step left to run"
    print(f"test accuracy {acc:.4f} after {result.step} steps ({summary['epochs']:.2f} epochs); "
          f"{timing} on {device}; run folder {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
