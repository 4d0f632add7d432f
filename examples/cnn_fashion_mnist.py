"""A small CNN with a residual block on Fashion-MNIST (scikit-learn's digits when the Fashion-MNIST files are absent).

    python -m zerotoml run cnn_fashion_mnist                       # Fashion-MNIST
    python -m zerotoml run cnn_fashion_mnist --engine reference    # every layer as its formula
    python -m zerotoml run cnn_fashion_mnist --dataset digits
    python examples/cnn_fashion_mnist.py --steps 3000 --resume

The network: conv 3x3 - BatchNorm - ReLU - max-pool 2, twice, then a ResNet basic block
(He et al. 2015), global average pooling and a linear layer to the 10 classes.
Writes runs/<name>/: metrics.jsonl, run.json, checkpoints/, loss_curve.png, predictions.png
(test images with their predicted classes), filters.png (the first layer's filters),
result.json. Note: notes/resnet.md#results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from einops import rearrange

from zerotoml import engine, forward
from zerotoml.checkpoint import CheckpointError
from zerotoml.classifier import Classifier
from zerotoml.data import Batches
from zerotoml.devices import pick_device
from zerotoml.layers import BatchNorm, Chain, Linear, ReLU
from zerotoml.layers.conv import Conv, GlobalAvgPool, MaxPool
from zerotoml.layers.resnet import ResidualBlock
from zerotoml.losses import cross_entropy
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import RunExistsError, train
from zerotoml.tree import set_training

DEFAULTS = {  # dataset -> (steps, batch size, channels of the two convolutions)
    "fashion-mnist": (1400, 128, (32, 64)),
    "digits": (300, 64, (16, 32)),
}


def load(dataset: str) -> tuple[str, tuple[torch.Tensor, ...], tuple[str, ...]]:
    """``(name, (x_train, y_train, x_test, y_test), class names)``, images ``(n, 1, h, w)`` in [0, 1]."""
    from zerotoml.data import FASHION_MNIST_CLASSES, fashion_mnist, images_to_float
    from zerotoml.data.digits import digits

    if dataset in ("auto", "fashion-mnist"):
        try:
            x, y = fashion_mnist("train", download=dataset == "fashion-mnist")
            x_test, y_test = fashion_mnist("test", download=dataset == "fashion-mnist")
            images = lambda im: rearrange(images_to_float(im), "n h w -> n 1 h w")  # noqa: E731
            return "fashion-mnist", (images(x), y, images(x_test), y_test), FASHION_MNIST_CLASSES
        except FileNotFoundError as e:
            if dataset == "fashion-mnist":
                raise
            print(f"notice: Fashion-MNIST is not on this machine, so this run uses scikit-learn's digits "
                  f"instead.\n  ({str(e).splitlines()[0]})\n  To get it: apt-get install dataset-fashion-mnist",
                  file=sys.stderr)
    x, y = digits("train")
    x_test, y_test = digits("test")
    return "digits", (x, y, x_test, y_test), tuple(str(i) for i in range(10))


def cnn(channels: tuple[int, int], classes: int = 10, *, generator=None) -> Classifier:
    """conv-BN-ReLU-pool, conv-BN-ReLU-pool, a residual block, global average pool, linear.
    The convolutions before BatchNorm have no bias (BN's β takes its place)."""
    c1, c2 = channels
    kw = dict(generator=generator)
    return Classifier(Chain([
        Conv.init(1, c1, (3, 3), padding=1, bias=False, **kw), BatchNorm.init(c1), ReLU(), MaxPool.init((2, 2)),
        Conv.init(c1, c2, (3, 3), padding=1, bias=False, **kw), BatchNorm.init(c2), ReLU(), MaxPool.init((2, 2)),
        ResidualBlock.init(c2, c2, **kw),
        GlobalAvgPool(), Linear.init(c2, classes, **kw),
    ]))


def predict(model, x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """The logits of ``x``, ``chunk`` images at a time (the window views of a whole test set at
    once would take gigabytes)."""
    with torch.no_grad():
        return torch.cat([forward(model, x[i:i + chunk]) for i in range(0, len(x), chunk)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cnn_fashion_mnist", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto")
    p.add_argument("--steps", type=int, help="total optimizer steps (default 1400 Fashion-MNIST, 300 digits)")
    p.add_argument("--batch-size", type=int, help="default 128 Fashion-MNIST, 64 digits")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", help="run folder (default runs/cnn_<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    name, (x, y, x_test, y_test), classes = load(args.dataset)
    steps, batch_size, channels = DEFAULTS[name]
    steps, batch_size = args.steps or steps, args.batch_size or batch_size
    out = Path(args.out or f"runs/cnn_{name.replace('-', '_')}")
    device = pick_device(args.device)
    # standardise with the training set's statistics: x ← (x − μ) / σ
    μ, σ = x.double().mean().float(), x.double().std().float()
    x, x_test = ((x - μ) / σ).to(device), ((x_test - μ) / σ).to(device)
    y, y_test = y.to(device), y_test.to(device)

    model = cnn(channels, len(classes), generator=torch.Generator().manual_seed(args.seed))
    data = Batches((x, y), batch_size, seed=args.seed)
    schedule = Cosine(args.lr, steps, min_lr=args.lr / 100, warmup_steps=min(100, steps // 10))

    def evaluate(m):
        z = predict(m, x_test)
        return {"test_loss": cross_entropy(z, y_test).item(), "test_acc": (z.argmax(1) == y_test).double().mean().item()}

    print(f"{name}: {len(y)} train and {len(y_test)} test images of {tuple(x.shape[1:])}; "
          f"{len(data)} steps per epoch of {batch_size}; engine: {engine.current()}")
    try:
        result = train(model, AdamW.init(model, lr=args.lr, weight_decay=1e-4), data, steps=steps,
                       schedule=schedule, clip=1.0, eval_every=max(steps // 2, 1), eval_fn=evaluate,
                       out=out, seed=args.seed, device=device, checkpoint_every=max(steps // 5, 1),
                       resume=args.resume, log_every=10, progress=not args.no_progress,
                       name=f"cnn_{name.replace('-', '_')}")
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    trained = set_training(result.model, False)  # BatchNorm uses its running statistics
    z = predict(trained, x_test)
    pred = z.argmax(1)
    acc = (pred == y_test).double().mean().item()
    epochs = result.steps_run / len(data)
    per_epoch = result.train_seconds / epochs if epochs else None  # None: nothing left to train
    per_step = result.train_seconds / result.steps_run if result.steps_run else None
    summary = {"dataset": name, "steps": result.step, "test_accuracy": acc, "epochs": result.step / len(data),
               "seconds_per_epoch": per_epoch, "seconds_per_step": per_step, "train_seconds": result.train_seconds,
               "engine": engine.current(), "device": str(device),
               "threads": torch.get_num_threads(), "batch_size": batch_size, "channels": list(channels)}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    draw(trained, x_test, y_test, pred, classes, μ, σ, out)

    losses = result.series("loss")[1]
    if losses:
        print(f"train loss {losses[0]:.4f} (step {result.series('loss')[0][0]}) -> {losses[-1]:.4f} "
              f"(step {result.step})")
    timing = (f"{per_step:.3f} s per step, {per_epoch:.1f} s per epoch" if per_step is not None
              else "no step left to run")
    print(f"test accuracy {acc:.4f} after {result.step} steps ({summary['epochs']:.2f} epochs); {timing} "
          f"on {device} (engine: {engine.current()}); run folder {out}")
    return 0


def draw(model, x_test, y_test, pred, classes, μ, σ, out: Path) -> None:
    """predictions.png: the first 32 test images, each with its predicted class (red, and the
    true class in brackets, where wrong); filters.png: the first convolution's 3x3 filters."""
    try:
        from zerotoml.plots import image_grid
    except ImportError:  # matplotlib is an optional dependency
        return
    n, per_row = 32, 8
    images = (x_test[:n] * σ + μ).cpu()[:, 0]  # (n, h, w), back in [0, 1]
    right = int((pred[:n] == y_test[:n]).sum())
    fig = image_grid(images, None, nrow=per_row, normalize=False, pad=2,
                     title=f"test images, predicted class ({right}/{n} right; red: wrong, true class in brackets)")
    ax, h, w = fig.axes[0], images.shape[1], images.shape[2]
    for i, (p, t) in enumerate(zip(pred[:n].tolist(), y_test[:n].tolist())):
        label = classes[p] if p == t else f"{classes[p]}\n({classes[t]})"
        ax.text((i % per_row) * (w + 2), (i // per_row) * (h + 2), label, fontsize=5.5, va="top", ha="left",
                color="black" if p == t else "red", bbox=dict(facecolor="white", alpha=0.75, pad=0.5, lw=0))
    fig.savefig(out / "predictions.png", format="png", bbox_inches="tight", dpi=150)
    W = model.body.layers[0].W.detach().cpu()[:, 0]  # (c_out, 3, 3): one input channel
    image_grid(W, out / "filters.png", nrow=8, title="first-layer 3x3 filters (each scaled to its range)")


if __name__ == "__main__":
    sys.exit(main())
