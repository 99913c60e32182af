"""The GPU check: netspec's training runner against a hand-written loop on one GPU, in under five minutes.

Run on a machine with a GPU (not a test):

    .venv/bin/python benchmarks/gpu_check.py                      # resnet50_d, synthetic 224 data
    .venv/bin/python benchmarks/gpu_check.py --no-compile --json gpu.json
    .venv/bin/python benchmarks/gpu_check.py --device cpu --smoke  # lenet5, seconds: the code paths

Both sides train the same network (netspec.build of the spec, seed 0) on the same synthetic images
(netspec.train.data.synthetic: standard-normal images, random labels, built once and shared) with the
same batch, SGD (lr 0.1, momentum 0.9, weight decay 1e-4, constant lr; no label smoothing, mixup,
EMA or clipping) and the same mixed precision:

| case | runner recipe | hand loop |
|---|---|---|
| bf16 | `amp: bf16`, `channels_last: true` | autocast(bfloat16), channels_last module and input |
| bf16 compiled | and `compile: true` | and torch.compile(model) |
| fp16 | `amp: fp16`, `channels_last: true` | autocast(float16) with torch.amp.GradScaler |
| DDP | - (the runner uses DDP when WORLD_SIZE > 1) | bf16 in DistributedDataParallel, NCCL, 1 process |

Images/s are the steady state: both sides synchronise the device and read the clock every
`--log-every` steps (the runner in a callback on its step events), and only the steps after
`--warmup` count (the compiled cases compile there). The runner also validates and checkpoints
after its epoch: outside the timed steps, as in any training script. Peak memory is
torch.cuda.max_memory_allocated over each case. Prints a markdown table and writes JSON, with
`netspec bench`'s inference figures (latency, images/s, GMAC/s) of the same spec on the same device.

On the CPU (`--device cpu --smoke`: lenet5, batch 8, a few steps) every case runs but the CUDA-only
parts, each skipped with a printed note: torch.compile (TorchInductor's C++ build takes minutes there),
NCCL (DDP runs with gloo instead) and peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netspec.analysis import analyze  # noqa: E402
from netspec.resolve import load_spec  # noqa: E402
from netspec.torch_backend import build  # noqa: E402
from netspec.train import train  # noqa: E402
from netspec.train.data import DataSplit, synthetic  # noqa: E402
from netspec.zoo import find_spec  # noqa: E402

FORMAT = "netspec-gpu-check/1"
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
VAL_FRACTION = 0.01  # the runner validates after its epoch; a sliver keeps that short


@dataclass(frozen=True)
class Case:
    name: str
    side: str  # runner | hand
    amp: str  # bf16 | fp16
    compile: bool = False
    ddp: bool = False


CASES = [
    Case("bf16", "hand", "bf16"),
    Case("bf16", "runner", "bf16"),
    Case("bf16 compiled", "hand", "bf16", compile=True),
    Case("bf16 compiled", "runner", "bf16", compile=True),
    Case("fp16 + grad scaler", "hand", "fp16"),
    Case("fp16 + grad scaler", "runner", "fp16"),
    Case("bf16 DDP world 1", "hand", "bf16", ddp=True),
]


@dataclass
class Outcome:
    case: str
    side: str
    amp: str
    compile: bool
    ddp: bool
    images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    wall_s: float | None = None
    final_loss: float | None = None
    note: str = ""  # why a case was skipped, or what ran instead
    failed: bool = False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--smoke", action="store_true", help="lenet5, batch 8, a few steps: seconds on a CPU")
    p.add_argument("--spec", default=None, help="spec file or zoo name (default resnet50_d; smoke lenet5)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128; smoke 8")
    p.add_argument("--steps", type=int, default=None, help="timed steps after the warm-up (default 40)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; smoke 2)")
    p.add_argument("--log-every", type=int, default=None, help="steps between clock reads (default 5)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile cases")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "gpu_check.json", help="JSON output")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.spec = args.spec or ("lenet5" if smoke else "resnet50_d")
    args.batch_size = args.batch_size or (8 if smoke else 128)
    args.steps = args.steps or (4 if smoke else 40)
    args.warmup = args.warmup if args.warmup is not None else (2 if smoke else 10)
    args.log_every = args.log_every or (1 if smoke else 5)
    if min(args.batch_size, args.steps, args.log_every) < 1 or args.warmup < 0:
        p.error("--batch-size, --steps and --log-every must be >= 1, --warmup >= 0")
    if args.steps % args.log_every or args.warmup % args.log_every:
        p.error("--steps and --warmup must be multiples of --log-every (the clock is read there)")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device here (use --device cpu --smoke)")
    args.dev = dev
    return args


# ---------------------------------------------------------------- timing


class Clock:
    """The time at chosen steps, read after synchronising the device: the images/s between the
    first and the last reading after the warm-up are the steady state."""

    def __init__(self, dev: torch.device, warmup: int):
        self.dev, self.warmup = dev, warmup
        self.marks: list[tuple[int, float]] = []

    def mark(self, step: int) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.marks.append((step, time.perf_counter()))

    def images_per_s(self, batch: int) -> float:
        steady = [(s, t) for s, t in self.marks if s >= self.warmup]
        if len(steady) < 2:
            raise RuntimeError(f"too few clock readings after the warm-up: {self.marks}")
        (s0, t0), (s1, t1) = steady[0], steady[-1]
        return (s1 - s0) * batch / (t1 - t0)


@contextlib.contextmanager
def peak_memory(dev: torch.device, out: Outcome) -> Iterator[None]:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    yield
    out.wall_s = time.perf_counter() - t0
    if dev.type == "cuda":
        out.peak_memory_bytes = int(torch.cuda.max_memory_allocated(dev))


# ---------------------------------------------------------------- the two sides


def runner_side(args: argparse.Namespace, case: Case, split: DataSplit, out: Outcome, work: Path) -> None:
    """`netspec train` through its Python API, timed in a callback on its step events."""
    clock = Clock(args.dev, args.warmup)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            clock.mark(int(event["step_in_epoch"]))
            out.final_loss = float(event["loss"])

    overrides = [
        "train.epochs=1",
        f"train.batch_size={args.batch_size}",
        f"train.amp={case.amp}",
        "train.channels_last=true",
        f"train.compile={str(case.compile).lower()}",
        f"train.optimizer={{name: sgd, lr: {LR}, momentum: {MOMENTUM}, weight_decay: {WEIGHT_DECAY}}}",
        "train.schedule={name: constant}",
        "train.label_smoothing=0",
        "train.mixup_alpha=0",
        "train.ema_decay=null",
        "train.grad_clip=null",
        "train.plots=false",
    ]
    run_dir = work / f"run-{case.name.replace(' ', '_')}"
    train(
        find_spec(args.spec), data=split, out=run_dir, device=str(args.dev), log="quiet",
        log_every=args.log_every, overrides=overrides, callbacks=[on_event],
    )  # fmt: skip
    out.images_per_s = clock.images_per_s(args.batch_size)


def hand_side(args: argparse.Namespace, case: Case, split: DataSplit, out: Outcome, work: Path) -> None:
    """The plainest loop a person writes for the same step: autocast, cross-entropy, backward
    (through a GradScaler for fp16), SGD; batches drawn from the in-memory tensors by index."""
    dev = args.dev
    spec = load_spec(find_spec(args.spec))
    model = build(spec, seed=0).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    with ddp_group(args, case, work, out) as wrap:
        fwd: Callable[[torch.Tensor], torch.Tensor] = wrap(model)
        if case.compile:
            fwd = torch.compile(fwd)
        scaler = torch.amp.GradScaler(dev.type, enabled=case.amp == "fp16")
        dtype = torch.bfloat16 if case.amp == "bf16" else torch.float16
        x_all, y_all = split.train.tensors  # type: ignore[attr-defined]  # a TensorDataset
        order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
        clock = Clock(dev, args.warmup)
        clock.mark(0)
        b = args.batch_size
        for i in range(args.warmup + args.steps):
            idx = order[i * b : (i + 1) * b]
            x = x_all[idx].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y_all[idx].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=dtype):
                loss = F.cross_entropy(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if (i + 1) % args.log_every == 0:
                out.final_loss = loss.item()
                clock.mark(i + 1)
    out.images_per_s = clock.images_per_s(b)


@contextlib.contextmanager
def ddp_group(args: argparse.Namespace, case: Case, work: Path, out: Outcome) -> Iterator[Callable[..., Any]]:
    """For a DDP case, a one-process group (NCCL on CUDA, gloo on the CPU) over a file store, and
    the wrapper that puts a module in DistributedDataParallel; otherwise the identity."""
    if not case.ddp:
        yield lambda m: m
        return
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dev = args.dev
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type != "cuda":
        note(out, "NCCL needs CUDA: DDP runs with gloo here")
    store = work / "ddp_store"
    kwargs: dict[str, Any] = {}
    ids = None
    if dev.type == "cuda":  # NCCL binds the process to its GPU
        gpu = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(gpu)
        kwargs["device_id"], ids = gpu, [gpu.index]
    dist.init_process_group(backend, init_method=store.as_uri(), rank=0, world_size=1, **kwargs)
    try:
        yield lambda m: DistributedDataParallel(m, device_ids=ids)
    finally:
        dist.destroy_process_group()


def note(out: Outcome, text: str) -> None:
    out.note = f"{out.note}; {text}" if out.note else text
    print(f"note: {out.case} ({out.side}): {text}", flush=True)


# ---------------------------------------------------------------- the check


def run_case(args: argparse.Namespace, case: Case, split: DataSplit, work: Path) -> Outcome:
    out = Outcome(case.name, case.side, case.amp, case.compile, case.ddp)
    if case.compile and args.no_compile:
        note(out, "skipped (--no-compile)")
        return out
    if case.compile and args.dev.type != "cuda":
        note(out, "skipped on the CPU: TorchInductor's C++ build takes minutes there (CUDA only here)")
        return out
    side = runner_side if case.side == "runner" else hand_side
    try:  # one failing case must not cost the others' figures: a GPU session is short
        with peak_memory(args.dev, out):
            side(args, case, split, out, work)
        if out.final_loss is None or not math.isfinite(out.final_loss):
            raise RuntimeError(f"the loss is {out.final_loss}, not a finite number")
    except Exception as exc:
        traceback.print_exc()
        out.images_per_s = None
        out.failed = True
        note(out, f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return out
    print(f"{case.name:>20} {case.side:>6}: {out.images_per_s:10.1f} images/s", flush=True)
    return out


def ratios(outcomes: list[Outcome]) -> dict[str, float]:
    """runner / hand images/s for each case both sides ran (1.00: as fast as the hand loop)."""
    speed = {(o.case, o.side): o.images_per_s for o in outcomes if o.images_per_s}
    return {
        case: speed[(case, "runner")] / speed[(case, "hand")]
        for case, side in speed
        if side == "runner" and (case, "hand") in speed
    }


def markdown(outcomes: list[Outcome], ratio: dict[str, float]) -> str:
    lines = [
        "| case | side | images/s | runner / hand | peak memory GiB | wall s | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        speed = f"{o.images_per_s:,.1f}" if o.images_per_s else "-"
        r = f"{ratio[o.case]:.3f}" if o.side == "runner" and o.case in ratio else ""
        peak = f"{o.peak_memory_bytes / 2**30:.2f}" if o.peak_memory_bytes is not None else "-"
        wall = f"{o.wall_s:.1f}" if o.wall_s is not None else "-"
        lines.append(f"| {o.case} | {o.side} | {speed} | {r} | {peak} | {wall} | {o.note} |")
    return "\n".join(lines)


def environment(args: argparse.Namespace, shape: tuple[int, ...]) -> dict[str, Any]:
    dev = args.dev
    return {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "spec": args.spec,
        "input_shape": list(shape),
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "smoke": args.smoke,
    }


def bench_inference(args: argparse.Namespace) -> dict[str, Any] | None:
    """`netspec bench` of the same spec on the same device, channels_last: inference latency and
    throughput beside the static MACs (its JSON), so one GPU session also checks its CUDA path."""
    from netspec.bench import benchmark
    from netspec.bench.result import to_markdown

    batches = (1, 8) if args.smoke else (1, 32, args.batch_size)
    try:
        result = benchmark(
            find_spec(args.spec), batch_sizes=batches, device=str(args.dev), channels_last=True,
            min_run_time=0.05 if args.smoke else 0.5,
        )  # fmt: skip
    except Exception:  # the training figures above stand on their own
        traceback.print_exc()
        return None
    print(to_markdown(result))
    return dict(json.loads(result.to_json()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    a = analyze(load_spec(find_spec(args.spec)))
    c, h, w = a.input_shape
    shape, classes = (c, h, w), a.output_shape[0]
    steps = args.warmup + args.steps
    n = math.ceil(steps * args.batch_size / (1 - VAL_FRACTION)) + 2  # the runner drops a partial batch
    t0 = time.perf_counter()
    split = synthetic(shape, classes, n, val_fraction=VAL_FRACTION)
    took = time.perf_counter() - t0
    print(f"{args.spec} {'x'.join(map(str, shape))}, batch {args.batch_size}, {args.warmup} + {args.steps}"
          f" steps, {n} synthetic images ({took:.1f} s) on {args.dev}", flush=True)  # fmt: skip
    if args.dev.type != "cuda":
        print("note: peak memory is CUDA's counter: not measured on the CPU", flush=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for case in CASES:
            outcomes.append(run_case(args, case, split, Path(tmp)))
    ratio = ratios(outcomes)
    table = markdown(outcomes, ratio)
    print(table)
    inference = bench_inference(args)
    report = {
        "format": FORMAT,
        **environment(args, shape),
        "cases": [asdict(o) for o in outcomes],
        "runner_over_hand": ratio,
        "bench": inference,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    done = main()
    sys.exit(1 if any(c["failed"] for c in done["cases"]) or done["bench"] is None else 0)
