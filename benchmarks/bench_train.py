"""The training runner against a minimal hand-written loop, measured so a shared machine cannot fake it.

Run on demand (not a test):

    .venv/bin/python benchmarks/bench_train.py --quick            # a smoke run, 2-3 minutes
    .venv/bin/python benchmarks/bench_train.py                    # README's figures (~40 min, 2 loaded cores)
    .venv/bin/python benchmarks/bench_train.py --only threads     # the thread-choice measurements

Every comparison runs its sides interleaved, in rotating order (A B, B A, A B, ... ; with three sides
A B C, B C A, C A B), and reports the median and the spread (min-max and the interquartile range) of
the per-round ratios: on a machine other people use, the load drifts from minute to minute, and two
sides measured in separate time slots measure the neighbours, not the code. Each round's ratio
compares runs made seconds apart.

- `runner`: `netspec.train` against a hand loop doing the same: the network built by netspec from the
  same spec and seed, the same data already in memory (digits, or synthetic images), batch size,
  SGD settings and epochs, evaluating the validation split after each epoch. Both run on one thread
  (`--threads`); the recipe is reduced to what the hand loop does (constant lr, no label smoothing,
  mixup, EMA, clipping, augmentation or plots). Whole-run wall time, whole-run CPU time (the process's,
  every thread: the runner's background writes count; a busy machine inflates it far less than wall
  time, as a descheduled process uses none), and the training steps alone (the runner's own per-epoch
  images/s against the hand loop's), with both sides' final accuracy.
- `phases`: where a whole run's wall time goes, milliseconds per phase, medians over the rounds: the
  runner's set-up (from the call to the first epoch), training steps, evaluation, checkpoint (on the
  training thread: the state's snapshot, handed to the writer thread) and end (the last write waited
  for, the end event), against the hand loop's build, steps and evaluation. LeNet-5/digits.
- `contention`: a busy-loop process beside the runner; the runner's default threads against 1 thread
  and all cores (the target: the default within 1.3x of the better of the two).
- `threads`: one training step (forward, backward, SGD) per model at 1 thread and at all cores,
  with and without a busy process added: the measurements behind netspec/train/threads.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.analysis import analyze  # noqa: E402
from netspec.torch_backend import build  # noqa: E402
from netspec.train import DataSplit, load_data, recipe_from_spec, train  # noqa: E402
from netspec.train.threads import other_busy_cores  # noqa: E402
from netspec.zoo import find_spec  # noqa: E402

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # what a fresh `netspec train` process starts with
ALL_CORES = len(os.sched_getaffinity(0))

# the recipe reduced to what the hand loop does
PLAIN = [
    "train.label_smoothing=0",
    "train.mixup_alpha=0",
    "train.ema_decay=null",
    "train.grad_clip=null",
    "train.amp=none",
    "train.augment=false",
    "train.plots=false",
    "train.schedule={name: constant}",
    "train.optimizer.no_bias_decay=false",
]


@dataclass(frozen=True)
class Case:
    spec: str
    data: str  # digits, or synthetic:N
    epochs: int
    batch: int | None = None  # None: the spec's recipe


@dataclass(frozen=True)
class Run:
    seconds: float  # the whole run, wall clock
    images_per_s: float  # the training steps alone, epochs after the first
    top1: float
    train_loss: float
    threads: str = ""  # the runner's: as its recipe.yaml records them
    cpu_seconds: float = 0.0  # the whole run, CPU time of the process (all its threads)


# ---------------------------------------------------------------- measuring on a noisy machine

T = TypeVar("T")


def interleaved(sides: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Each side `rounds` times, in rotating order, so drift in the machine's load falls on all alike."""
    names = list(sides)
    runs: dict[str, list[T]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            runs[name].append(sides[name]())
    return runs


def spread(ratios: list[float]) -> str:
    """`median (min-max, IQR lo-hi)` of per-round ratios."""
    med = statistics.median(ratios)
    text = f"{med:.2f} ({min(ratios):.2f}-{max(ratios):.2f}"
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        text += f", IQR {q1:.2f}-{q3:.2f}"
    return text + ")"


@contextlib.contextmanager
def busy_neighbour() -> Iterator[None]:
    """Another process spinning on one core for the duration (the contention case)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it reach the scheduler's view of a busy process
        yield
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the two sides


def load_case(case: Case, extra: list[str] = ()) -> tuple[netspec.Spec, DataSplit]:
    sets = [f"train.epochs={case.epochs}", *PLAIN, *extra]
    if case.batch is not None:
        sets.append(f"train.batch_size={case.batch}")
    spec = netspec.load_spec(find_spec(case.spec), sets)
    recipe = recipe_from_spec(spec)
    size = spec.input.size
    h, w = (size, size) if isinstance(size, int) else size
    shape = (spec.input.channels, int(h), int(w))
    split = load_data(case.data, shape, classes=spec.classes, augment=False, val_fraction=recipe.val_fraction)
    return spec, split


def tensors(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set in memory: (images, labels) stacked once, outside any timing."""
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def hand_loop(
    spec: netspec.Spec, train_xy, val_xy, threads: int, phases: dict[str, float] | None = None
) -> Run:
    """The plainest loop doing what the runner does: shuffle, forward, cross-entropy, backward, SGD,
    and top-1 on the validation split after each epoch. `phases`: seconds of build, steps, evaluation
    are added to it."""
    phases = {} if phases is None else phases
    torch.set_num_threads(threads)
    recipe = recipe_from_spec(spec)
    t0, c0 = time.perf_counter(), time.process_time()
    model = build(spec, seed=recipe.seed)
    o = recipe.optimizer
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )
    (x, y), (vx, vy), b = train_xy, val_xy, recipe.batch_size
    g = torch.Generator().manual_seed(recipe.seed)
    step_s, images, top1, loss_sum = 0.0, 0, 0.0, 0.0
    _add(phases, "build", time.perf_counter() - t0)
    for epoch in range(recipe.epochs):
        model.train()
        t_epoch, loss_sum, steps = time.perf_counter(), torch.zeros(()), 0
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y) - b + 1, b):  # drop_last, as the runner
            idx = perm[i : i + b]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            steps += 1
        t_eval = time.perf_counter()
        _add(phases, "steps", t_eval - t_epoch)
        if epoch > 0 or recipe.epochs == 1:
            step_s += t_eval - t_epoch
            images += steps * b
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(vx[i : i + b]).argmax(1) == vy[i : i + b]).sum()) for i in range(0, len(vy), b)
            )
        top1 = correct / len(vy)
        _add(phases, "evaluation", time.perf_counter() - t_eval)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Run(seconds, images / step_s, top1, float(loss_sum) / max(steps, 1), cpu_seconds=cpu)


def _add(phases: dict[str, float], name: str, seconds: float) -> None:
    phases[name] = phases.get(name, 0.0) + seconds


@contextlib.contextmanager
def timed_phases(phases: dict[str, float]) -> Iterator[None]:
    """The Trainer's phases timed (wall clock, seconds added to `phases`) for the duration."""
    from netspec.train.trainer import Trainer

    names = {"fit": "fit", "train_epoch": "steps", "evaluate": "evaluation", "checkpoint": "checkpoint"}
    originals = {name: getattr(Trainer, name) for name in names}

    def timed(method: Callable, phase: str) -> Callable:
        @functools.wraps(method)
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                _add(phases, phase, time.perf_counter() - t0)

        return call

    for name, phase in names.items():
        setattr(Trainer, name, timed(originals[name], phase))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(Trainer, name, method)


def runner(
    spec: netspec.Spec, split: DataSplit, threads: int | None, phases: dict[str, float] | None = None
) -> Run:
    """`netspec.train` on the split, quiet. threads None: the runner's own default, from a fresh
    process's thread count (what `netspec train` starts with). `phases`: the wall time of the
    Trainer's phases, and set-up and end around them, are added to it."""
    torch.set_num_threads(TORCH_DEFAULT_THREADS if threads is None else threads)
    timed: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        with timed_phases(timed) if phases is not None else contextlib.nullcontext():
            t0, c0 = time.perf_counter(), time.process_time()
            result = train(spec, data=split, out=out, device="cpu", log="quiet")
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        used = recorded_threads(Path(out) / "recipe.yaml")
    if phases is not None:
        _add(phases, "set-up", seconds - timed["fit"])
        inside = timed["fit"] - sum(timed[k] for k in ("steps", "evaluation", "checkpoint"))
        _add(phases, "end", inside)
        for key in ("steps", "evaluation", "checkpoint"):
            _add(phases, key, timed[key])
    rows = result.history[1:] or result.history
    ips = statistics.median(r["images_per_s"] for r in rows)
    last = result.final
    top1, loss = float(last.get("val_top1", 0.0)), float(last.get("train_loss", 0.0))
    return Run(seconds, ips, top1, loss, used, cpu_seconds=cpu)


# ---------------------------------------------------------------- the comparisons


def compare_runner(cases: list[Case], rounds: int, threads: int) -> None:
    print(f"\n## runner / hand loop ({threads} thread(s), {rounds} rounds interleaved)\n")
    head = ["model / data", "epochs x batch", "whole run", "whole run, CPU", "training steps"]
    head.append("top-1 hand / runner")
    print("| " + " | ".join(head) + " |")
    print("|---|---|---:|---:|---:|---:|")
    for case in cases:
        spec, split = load_case(case, [f"train.threads={threads}"])
        train_xy, val_xy = tensors(split.train), tensors(split.val)
        runs = interleaved(
            {
                "hand": functools.partial(hand_loop, spec, train_xy, val_xy, threads),
                "runner": functools.partial(runner, spec, split, threads),
            },
            rounds,
        )
        hand, ours = runs["hand"], runs["runner"]
        whole = [r.seconds / h.seconds for h, r in zip(hand, ours, strict=True)]
        cpu = [r.cpu_seconds / h.cpu_seconds for h, r in zip(hand, ours, strict=True)]
        steps = [h.images_per_s / r.images_per_s for h, r in zip(hand, ours, strict=True)]
        acc = f"{statistics.median(h.top1 for h in hand):.1%} / {statistics.median(r.top1 for r in ours):.1%}"
        b = recipe_from_spec(spec).batch_size
        print(
            f"| {case.spec} / {case.data} ({len(train_xy[1])} images) | {case.epochs} x {b}"
            f" | {spread(whole)} | {spread(cpu)} | {spread(steps)} | {acc} |",
            flush=True,
        )
    print("\nratios are runner time / hand-loop time (1.00 = as fast; lower is better)")


def compare_phases(case: Case, rounds: int, threads: int) -> None:
    print(
        f"\n## phases of a whole run, ms ({case.spec} / {case.data}, {case.epochs} epochs, {rounds} rounds)\n"
    )
    spec, split = load_case(case, [f"train.threads={threads}"])
    train_xy, val_xy = tensors(split.train), tensors(split.val)
    hand_phases: list[dict[str, float]] = []
    runner_phases: list[dict[str, float]] = []

    def hand_side() -> Run:
        hand_phases.append({})
        return hand_loop(spec, train_xy, val_xy, threads, hand_phases[-1])

    def runner_side() -> Run:
        runner_phases.append({})
        return runner(spec, split, threads, runner_phases[-1])

    runs = interleaved({"hand": hand_side, "runner": runner_side}, rounds)
    print("| phase | hand loop | runner |")
    print("|---|---:|---:|")
    order = ["build", "set-up", "steps", "evaluation", "checkpoint", "end"]
    for phase in order:
        cells = []
        for side in (hand_phases, runner_phases):
            cells.append(f"{statistics.median(p[phase] for p in side) * 1e3:.0f}" if phase in side[0] else "")
        print(f"| {phase} | {cells[0]} | {cells[1]} |")
    totals = [statistics.median(r.seconds for r in runs[side]) * 1e3 for side in ("hand", "runner")]
    print(f"| whole run | {totals[0]:.0f} | {totals[1]:.0f} |", flush=True)


def compare_contention(cases: list[Case], rounds: int) -> None:
    print(f"\n## contention: one busy process beside the runner ({ALL_CORES} cores, {rounds} rounds)\n")
    print("| model / data | default threads | default / best of {1, all} | all cores / 1 thread |")
    print("|---|---|---:|---:|")
    for case in cases:
        spec, split = load_case(case)
        pinned = {n: load_case(case, [f"train.threads={n}"])[0] for n in (1, ALL_CORES)}
        with busy_neighbour():
            runs = interleaved(
                {
                    "default": functools.partial(runner, spec, split, None),
                    "one": functools.partial(runner, pinned[1], split, 1),
                    "all": functools.partial(runner, pinned[ALL_CORES], split, ALL_CORES),
                },
                rounds,
            )
        ratio = [
            d.seconds / min(a.seconds, o.seconds)
            for d, o, a in zip(runs["default"], runs["one"], runs["all"], strict=True)
        ]
        waste = [a.seconds / o.seconds for o, a in zip(runs["one"], runs["all"], strict=True)]
        chosen = sorted({r.threads for r in runs["default"]})  # each round chooses afresh
        cells = (f"{case.spec} / {case.data}", "; ".join(chosen), spread(ratio), spread(waste))
        print("| " + " | ".join(cells) + " |", flush=True)
    print("\nthe target: default / best <= 1.3")


def recorded_threads(recipe_yaml: Path) -> str:
    """The threads a run used and why, from its recipe.yaml (torch's count where it records none)."""
    import yaml

    doc = yaml.safe_load(recipe_yaml.read_text())
    if doc.get("threads") is None:
        return f"{torch.get_num_threads()} (torch's)"
    return f"{doc['threads']} ({doc.get('threads_chosen', '')})"


def step_time(spec_name: str, batch: int, threads: int, steps: int) -> float:
    """Seconds per training step (forward, cross-entropy, backward, SGD) on random data."""
    torch.set_num_threads(threads)
    spec = netspec.load_spec(find_spec(spec_name))
    model = build(spec, seed=0).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    size = spec.input.size
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch, spec.input.channels, int(h), int(w))
    y = torch.randint(0, spec.classes, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocator, first-call dispatch
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def compare_threads(models: list[tuple[str, int, int]], rounds: int) -> None:
    print(f"\n## threads: ms per training step at 1 thread and at {ALL_CORES} ({rounds} rounds)\n")
    n = ALL_CORES
    head = ["model", "batch", "forward MACs per step", "neighbour", "others busy", "1 thread ms"]
    print("| " + " | ".join([*head, f"{n} threads ms", f"{n} / 1"]) + " |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, batch, steps in models:
        macs = analyze(netspec.load_spec(find_spec(name))).macs * batch
        for load in ("none added", "1 busy process"):
            with busy_neighbour() if load != "none added" else contextlib.nullcontext():
                busy = (
                    other_busy_cores()
                )  # cores other processes kept busy (of ALL_CORES), as the runner sees
                t = interleaved(
                    {
                        "one": functools.partial(step_time, name, batch, 1, steps),
                        "all": functools.partial(step_time, name, batch, ALL_CORES, steps),
                    },
                    rounds,
                )
            one, alls = (statistics.median(t[k]) * 1e3 for k in ("one", "all"))
            ratio = [a / o for o, a in zip(t["one"], t["all"], strict=True)]
            cells = (
                name,
                batch,
                f"{macs / 1e9:.2f}G",
                load,
                f"{busy:.1f}",
                f"{one:.1f}",
                f"{alls:.1f}",
                spread(ratio),
            )
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["runner", "phases", "contention", "threads"], action="append")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each side, interleaved")
    ap.add_argument("--threads", type=int, default=1, help="runner / hand loop: intra-op threads")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    args = ap.parse_args()
    only = set(args.only or ["runner", "phases", "contention", "threads"])
    if args.quick:
        rounds = 2
        runner_cases = [Case("lenet5", "digits", 2), Case("resnet20_cifar", "synthetic:160", 2, batch=32)]
        contention_cases = [Case("lenet5", "digits", 1), Case("resnet20_cifar", "synthetic:100", 1, batch=16)]
        models = [("lenet5", 32, 5), ("resnet20_cifar", 32, 2)]
    else:
        rounds = args.rounds
        runner_cases = [Case("lenet5", "digits", 15), Case("resnet20_cifar", "synthetic:800", 3)]
        contention_cases = [Case("lenet5", "digits", 2), Case("resnet20_cifar", "synthetic:400", 1)]
        models = [
            ("lenet5", 32, 40),
            ("resnet20_cifar", 32, 8),
            ("resnet20_cifar", 128, 3),
            ("resnet18", 8, 2),
        ]
    print(f"torch {torch.__version__}, {ALL_CORES} cores, load average {os.getloadavg()[0]:.2f}")
    if "runner" in only:
        compare_runner(runner_cases, rounds, args.threads)
    if "phases" in only:
        compare_phases(runner_cases[0], rounds, args.threads)
    if "contention" in only:
        compare_contention(contention_cases, rounds)
    if "threads" in only:
        compare_threads(models, rounds)


if __name__ == "__main__":
    main()
