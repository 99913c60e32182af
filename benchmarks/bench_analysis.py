"""Static analysis against the tools people use to count a model: fvcore, ptflops, torchinfo.

Run on demand (not a test):

    .venv/bin/python benchmarks/bench_analysis.py                 # ~2 minutes
    .venv/bin/python benchmarks/bench_analysis.py --quick         # ~20 s smoke run
    PYTHONPATH=/path/to/extra .venv/bin/python benchmarks/bench_analysis.py   # with ptflops / torchinfo

netspec's side is what `netspec report` does, from the spec file: read and parse the YAML, resolve and
validate it, lower it to the IR and analyse it (`netspec.analyze(netspec.load_spec(path))`). The
others count the torchvision model, already built (weights=None, eval mode), on one 1x3x224x224 input:
fvcore's `FlopCountAnalysis(model, x).total()` (a jit trace), and, when they are installed, ptflops'
`get_model_complexity_info` and torchinfo's `summary` (forward hooks). Model construction is not timed
for them; netspec builds nothing. One torch thread (`--threads`).

The sides are interleaved (netspec, fvcore, ..., then the next round in rotated order), so that drift
and neighbours on a shared machine fall on all alike. netspec runs `--inner` times in a row per round
(its calls are ~100x shorter); its round time is the mean of those. Each ratio is taken per round
(tool / netspec in the same round) and reported as the median with its min-max spread; times are
medians with their interquartile range. Both wall-clock and CPU time (`time.process_time`) are
reported: on a shared machine the CPU time leaves out the time the process waited for a core. The MAC
totals are printed beside the times: netspec's must equal fvcore's (same model: resnet50 with
`tricks: [resnet_b]` is torchvision's resnet50).

`--depths` times netspec alone on a generated network of N residual blocks (two layers each) to show
the cost per block stays flat as N grows (linear in depth).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402

# name: (spec file, overrides that make it torchvision's model, torchvision constructor)
MODELS: dict[str, tuple[str, list[str], Callable[..., nn.Module]]] = {
    "resnet50": ("resnet50.yaml", ["tricks=[resnet_b]"], torchvision.models.resnet50),
    "densenet121": ("densenet121.yaml", [], torchvision.models.densenet121),
    "mobilenet_v2": ("mobilenet_v2.yaml", [], torchvision.models.mobilenet_v2),
}

DEEP_SPEC = """\
name: deep{n}
input: {{channels: 3, size: 32}}
classes: 10
stem:
  - conv: {{out: 16, kernel: 3}}
stages:
  - {{block: basic, depth: {n}, name: layer1}}
head:
  - avgpool: global
  - flatten
  - linear: {{out: "${{classes}}"}}
blocks:
  basic:
    body:
      - conv: {{out: 16, kernel: 3}}
      - relu
    merge: add
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15; quick 4)")
    p.add_argument("--inner", type=int, default=None, help="netspec runs per round (default 20; quick 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument(
        "--depths",
        type=int,
        nargs="*",
        default=None,
        help="blocks of the depth scan (default 1000 2000 4000)",
    )
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_analysis.json", help="JSON output")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (4 if args.quick else 15)
    args.inner = args.inner or (5 if args.quick else 20)
    if args.depths is None:
        args.depths = [500, 1000, 2000] if args.quick else [1000, 2000, 4000]
    return args


# -- the tools -------------------------------------------------------------------------------------


def netspec_count(path: Path, overrides: list[str]) -> Callable[[], int]:
    """What `netspec report` does: the spec file to its analysis."""

    def run() -> int:
        return netspec.analyze(netspec.load_spec(path, overrides)).macs

    return run


def fvcore_count(model: nn.Module, x: torch.Tensor) -> Callable[[], int]:
    from fvcore.nn import FlopCountAnalysis

    def run() -> int:
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())

    return run


def ptflops_count(model: nn.Module, x: torch.Tensor) -> Callable[[], int]:
    from ptflops import get_model_complexity_info

    def run() -> int:
        macs, _ = get_model_complexity_info(
            model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False, verbose=False
        )
        return int(macs)

    return run


def torchinfo_count(model: nn.Module, x: torch.Tensor) -> Callable[[], int]:
    from torchinfo import summary

    def run() -> int:
        return int(summary(model, input_data=x, verbose=0).total_mult_adds)

    return run


def tools(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], int]]:
    """The counters installed here, fvcore first (a project dependency)."""
    found = {"fvcore": fvcore_count(model, x)}
    if importlib.util.find_spec("ptflops"):
        found["ptflops"] = ptflops_count(model, x)
    if importlib.util.find_spec("torchinfo"):
        found["torchinfo"] = torchinfo_count(model, x)
    return found


# -- timing ----------------------------------------------------------------------------------------


def timed(fn: Callable[[], int], times: int = 1) -> tuple[float, float, int]:
    """Mean wall-clock and CPU seconds of `times` calls in a row, and the last result."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(times):
        result = fn()
    return (time.perf_counter() - wall) / times, (time.process_time() - cpu) / times, result


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def summary(times: list[float], base: list[float] | None) -> dict[str, float]:
    """Median and quartiles of one side's times (ms); with `base` (netspec's times in the same rounds),
    the per-round ratios' median, min and max."""
    q1, med, q3 = quartiles(times)
    out = {"median_ms": med * 1e3, "q1_ms": q1 * 1e3, "q3_ms": q3 * 1e3}
    if base is not None:
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        out.update(ratio_median=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
    return out


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    file, overrides, ctor = MODELS[name]
    model = ctor(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    sides: dict[str, Callable[[], int]] = {"netspec": netspec_count(ROOT / "specs" / file, overrides)}
    sides.update(tools(model, x))
    names = list(sides)
    repeats = {n: args.inner if n == "netspec" else 1 for n in names}
    macs: dict[str, int] = {}
    with torch.no_grad():
        for _ in range(args.warmup):
            for n in names:
                macs[n] = timed(sides[n], repeats[n])[2]
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for i in range(len(names)):
                n = names[(r + i) % len(names)]  # rotate: netspec, fvcore, ... then fvcore, ..., netspec
                w, c, _ = timed(sides[n], repeats[n])
                wall[n].append(w)
                cpu[n].append(c)
    out: dict[str, Any] = {"model": name, "overrides": overrides, "macs": macs, "tools": {}}
    for n in names:
        base = None if n == "netspec" else "netspec"
        out["tools"][n] = {
            "wall": summary(wall[n], wall[base] if base else None),
            "cpu": summary(cpu[n], cpu[base] if base else None),
        }
    return out


def depth_scan(depths: list[int], repeats: int) -> list[dict[str, Any]]:
    """netspec alone on N residual blocks: the time per block should not grow with N."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in depths:
            path = Path(tmp) / f"deep{n}.yaml"
            path.write_text(DEEP_SPEC.format(n=n))
            run = netspec_count(path, [])
            run()  # warm-up
            samples = [timed(run) for _ in range(repeats)]
            wall = statistics.median(w for w, _, _ in samples)
            cpu = statistics.median(c for _, c, _ in samples)
            rows.append(
                {"blocks": n, "wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "cpu_us_per_block": cpu / n * 1e6}
            )
    return rows


# -- output ----------------------------------------------------------------------------------------


def markdown(results: list[dict[str, Any]], scan: list[dict[str, Any]]) -> str:
    lines = [
        "| model | tool | MACs | wall ms: median (IQR) | tool / netspec, wall"
        " | CPU ms: median | tool / netspec, CPU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def ratio(e: dict[str, float]) -> str:
        if "ratio_median" not in e:
            return ""
        return f"{e['ratio_median']:.0f}x ({e['ratio_min']:.0f}-{e['ratio_max']:.0f})"

    for res in results:
        for n, e in res["tools"].items():
            w, c = e["wall"], e["cpu"]
            lines.append(
                f"| {res['model']} | {n} | {res['macs'][n]:,} | {w['median_ms']:.2f} ({w['q1_ms']:.2f}-"
                f"{w['q3_ms']:.2f}) | {ratio(w)} | {c['median_ms']:.2f} | {ratio(c)} |"
            )
    if scan:
        lines += [
            "",
            "| blocks | wall ms (median) | CPU ms (median) | CPU us per block |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['blocks']:,} | {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | {r['cpu_us_per_block']:.0f} |"
            for r in scan
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # fvcore logs every op it skips
    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for name in args.models:
        res = bench_model(name, args)
        results.append(res)
        medians = ", ".join(f"{n} {e['wall']['median_ms']:.2f} ms" for n, e in res["tools"].items())
        print(f"{name}: {medians}", flush=True)
        ours, theirs = res["macs"]["netspec"], res["macs"]["fvcore"]
        if ours != theirs:
            print(f"  note: MACs differ: netspec {ours:,}, fvcore {theirs:,}")
    scan = depth_scan(args.depths, 3 if args.quick else 5)
    load_after = os.getloadavg()
    table = markdown(results, scan)
    print()
    print(table)
    print(
        f"\n{args.rounds} interleaved rounds ({args.inner} netspec runs each), "
        f"{args.threads} torch thread(s), {time.perf_counter() - started:.0f} s; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    meta = {
        "settings": settings,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_after},
    }
    args.json.write_text(json.dumps({**meta, "models": results, "depth_scan": scan}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
