"""The training runner's throughput against a minimal hand-written PyTorch loop.

Run on demand (not a test):

    .venv/bin/python benchmarks/bench_train.py --quick          # ~1 minute on 2 CPU cores
    .venv/bin/python benchmarks/bench_train.py --spec resnet18 --batch 128 --epochs 4 --threads 8

Both train the same network (built from the spec with the same seed), on the same synthetic data
(TensorDatasets of standard-normal images with random labels), with the same batch size, the same
shuffled, drop-last DataLoader and the same optimizer (SGD with the recipe's momentum, nesterov and
weight decay; no label smoothing, mixup, EMA or clipping), on CPU and on CUDA when there is one. The
runner's images/s are its own per-epoch figures (the training loop alone, as the hand loop's are);
each side's best epoch after the first (warm-up) of any round counts (rounds in ABBA order). The
runner also evaluates, checkpoints and plots after each epoch: outside the timed loop, as in any
real training script. Prints a markdown table; the target is runner >= 95% of the hand loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.torch_backend import build  # noqa: E402
from netspec.train import load_data, recipe_from_spec, train  # noqa: E402
from netspec.zoo import find_spec  # noqa: E402


def hand_loop(spec, recipe, split, dev: torch.device, epochs: int) -> list[float]:
    """Images/s of each epoch of the plainest loop: forward, cross-entropy, backward, SGD step."""
    torch.manual_seed(recipe.seed)
    model = build(spec, seed=recipe.seed).to(dev).train()
    o = recipe.optimizer
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )
    g = torch.Generator().manual_seed(recipe.seed)
    loader = torch.utils.data.DataLoader(
        split.train, batch_size=recipe.batch_size, shuffle=True, drop_last=True, generator=g
    )
    rates = []
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += y.shape[0]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    return rates


def runner(spec, split, dev: torch.device) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        result = train(spec, data=split, out=out, device=dev, log="quiet")
    return [row["images_per_s"] for row in result.history]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="resnet20_cifar")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="at least 2: the first is warm-up")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, in ABBA order")
    ap.add_argument("--quick", action="store_true", help="640 images, 2 epochs, 2 rounds, CPU only")
    args = ap.parse_args()
    if args.quick:
        args.images, args.epochs, args.rounds = 640, 2, 2
    torch.set_num_threads(args.threads)
    sets = [
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch}",
        "train.label_smoothing=0",
        "train.mixup_alpha=0",
        "train.ema_decay=null",
        "train.grad_clip=null",
        "train.amp=none",
        "train.schedule={name: constant}",
        "train.optimizer.no_bias_decay=false",
    ]
    spec = netspec.load_spec(find_spec(args.spec), sets)
    recipe = recipe_from_spec(spec)
    c, h, w = (
        spec.input.channels,
        *((spec.input.size, spec.input.size) if isinstance(spec.input.size, int) else spec.input.size),
    )
    n = round(args.images / 0.8)
    split = load_data(f"synthetic:{n}", (c, int(h), int(w)), classes=spec.classes)
    devices = [torch.device("cpu")] if args.quick or not torch.cuda.is_available() else []
    if torch.cuda.is_available() and not args.quick:
        devices = [torch.device("cpu"), torch.device("cuda")]
    rows = []
    for dev in devices:
        hand: list[float] = []
        ours: list[float] = []
        for r in range(args.rounds):  # ABBA order: drift (other load, clocks) falls on both alike
            order = ("hand", "runner") if r % 2 == 0 else ("runner", "hand")
            for who in order:
                if who == "hand":
                    hand += hand_loop(spec, recipe, split, dev, args.epochs)[1:]
                else:
                    ours += runner(spec, split, dev)[1:]
        h_best, r_best = max(hand), max(ours)
        rows.append((dev.type, h_best, r_best, r_best / h_best))
    print(
        f"\n{args.spec}, batch {args.batch}, {len(split.train)} synthetic images x {args.epochs} epochs,"
        f" x {args.rounds} rounds, torch {torch.__version__}, {args.threads} thread(s)\n"
    )
    print("| device | hand loop img/s | runner img/s | runner / hand |")
    print("|---|---:|---:|---:|")
    for dev, hb, rb, ratio in rows:
        print(f"| {dev} | {hb:.1f} | {rb:.1f} | {ratio:.1%} |")


if __name__ == "__main__":
    main()
