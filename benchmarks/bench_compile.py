"""netspec's compiled modules against torchvision's own: build time, forward, forward + backward.

Run on demand (not a test):

    .venv/bin/python benchmarks/bench_compile.py --quick              # ~1 minute smoke run
    .venv/bin/python benchmarks/bench_compile.py --threads 8 --json bench.json

For each model whose spec exists in specs/ (resnet18, resnet50 with tricks=[resnet_b], vgg11,
mobilenet_v2, densenet121): the median build time of netspec.build(spec) (the spec parsed once; the
parse is timed apart) against the torchvision constructor, both with default initialisation; then,
with torchvision's weights loaded into the netspec module (the logits are checked to agree), the
median forward time (eval, no_grad) and forward + backward time (train mode, sum of logits) at each
batch size, on CPU and on CUDA when there is one (synchronised). The module exported as standalone
source (`netspec export`) runs beside them with the netspec module's weights. The models' runs are
interleaved in rotating order, so that drift (thermal, other load) falls on all alike.

Prints a markdown table of milliseconds and ratios (netspec / torchvision: 1.00 = same speed,
above 1 = netspec slower) and writes it, with the settings, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402

# name: (spec file, overrides, torchvision constructor)
MODELS: dict[str, tuple[str, list[str], Callable[[], nn.Module]]] = {
    "resnet18": ("resnet18.yaml", [], torchvision.models.resnet18),
    "resnet50": ("resnet50.yaml", ["tricks=[resnet_b]"], torchvision.models.resnet50),
    "vgg11": ("vgg11.yaml", [], torchvision.models.vgg11),
    "mobilenet_v2": ("mobilenet_v2.yaml", [], torchvision.models.mobilenet_v2),
    "densenet121": ("densenet121.yaml", [], torchvision.models.densenet121),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats, batch 1 and 4, 64x64 inputs")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's; quick: 1)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measure (default 20; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; quick 1)")
    p.add_argument("--build-repeats", type=int, default=None, help="builds timed (default 5; quick 2)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16; quick 1 4")
    p.add_argument("--size", type=int, default=None, help="input H = W (default: the spec's; quick 64)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, cuda if any)")
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_compile.json", help="JSON output")
    args = p.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (3 if quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    args.build_repeats = args.build_repeats or (2 if quick else 5)
    args.build_warmup = 0 if quick else 1
    if args.threads is None and quick:
        args.threads = 1  # one thread: steadier on a shared machine, and what --quick is for
    args.batches = args.batches or ([1, 4] if quick else [1, 16])
    args.size = args.size or (64 if quick else None)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in args.devices and not torch.cuda.is_available():
        p.error("--devices cuda: no CUDA device here")
    return args


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(
    fns: list[Callable[[], Any]], repeats: int, warmup: int, device: str
) -> list[tuple[float, float]]:
    """(median, min) seconds of each function, run in rotating order (a b c, b c a, c a b, ...)
    after `warmup` untimed rounds, so that drift falls on all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    n = len(fns)
    for i in range(repeats):
        for j in range(n):
            slot = (i + j) % n
            _sync(device)
            start = time.perf_counter()
            fns[slot]()
            _sync(device)
            times[slot].append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


def load_exported(spec: netspec.Spec, name: str) -> nn.Module:
    """The spec's exported standalone source (netspec export), imported from a temporary file."""
    import importlib.util
    import tempfile

    from netspec.export import export_source

    path = Path(tempfile.mkdtemp()) / f"{name}_exported.py"
    path.write_text(export_source(spec))
    module_spec = importlib.util.spec_from_file_location(f"{name}_exported", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.build_model()


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def forward_backward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        _logits(model(x)).float().sum().backward()

    return run


def bench_model(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    file, overrides, ctor = MODELS[name]
    path = ROOT / "specs" / file
    overrides = [*overrides, *([f"input.size={args.size}"] if args.size else [])]
    start = time.perf_counter()
    spec = netspec.load_spec(path, overrides)
    parse_s = time.perf_counter() - start
    shape = netspec.analyze(spec).input_shape
    rows: list[dict[str, Any]] = []

    def row(
        device: str,
        measure: str,
        batch: int | None,
        ns: tuple[float, float],
        tv: tuple[float, float],
        ex: tuple[float, float] | None = None,
    ) -> None:
        rows.append(
            {
                "model": name,
                "device": device,
                "measure": measure,
                "batch": batch,
                "netspec_ms": ns[0] * 1e3,
                "torchvision_ms": tv[0] * 1e3,
                "ratio": ns[0] / tv[0] if tv[0] else float("nan"),
                "netspec_min_ms": ns[1] * 1e3,
                "torchvision_min_ms": tv[1] * 1e3,
                "exported_ms": ex[0] * 1e3 if ex else None,
                "exported_ratio": ex[0] / ns[0] if ex and ns[0] else None,
            }
        )

    torch.manual_seed(0)
    built: dict[str, nn.Module] = {}  # the last of each: the models timed below

    def build_ns() -> None:
        built["netspec"] = netspec.build(spec)

    def build_tv() -> None:
        built["torchvision"] = ctor()

    ns_build, tv_build = interleaved([build_ns, build_tv], args.build_repeats, args.build_warmup, "cpu")
    row("cpu", "build", None, ns_build, tv_build)

    ns, tv = built.pop("netspec"), built.pop("torchvision")
    same_weights = True
    try:
        ns.load_state_dict(tv.state_dict())
    except RuntimeError:
        same_weights = False  # names differ: time them anyway, each with its own weights
    ex = load_exported(spec, name)
    ex.load_state_dict(ns.state_dict())
    x = torch.randn(2, *shape)
    ns.eval()
    tv.eval()
    ex.eval()
    with torch.no_grad():
        max_diff = (ns(x) - tv(x)).abs().max().item() if same_weights else None
    info = {
        "spec": str(path.relative_to(ROOT)),
        "overrides": overrides,
        "input_shape": list(shape),
        "params": sum(p.numel() for p in ns.parameters()),
        "spec_parse_ms": parse_s * 1e3,
        "torchvision_weights_load": same_weights,
        "max_abs_logit_diff": max_diff,
    }
    with torch.no_grad():
        info["exported_max_abs_diff"] = (ex(x) - ns(x)).abs().max().item()

    for device in args.devices:
        for m in (ns, tv, ex):
            m.to(device)
        for batch in args.batches:
            x = torch.randn(batch, *shape, device=device)
            for m in (ns, tv, ex):
                m.eval()
            a, b, c = interleaved(
                [forward(ns, x), forward(tv, x), forward(ex, x)], args.repeats, args.warmup, device
            )
            row(device, "forward", batch, a, b, c)
            for m in (ns, tv, ex):
                m.train()
            a, b, c = interleaved(
                [forward_backward(ns, x), forward_backward(tv, x), forward_backward(ex, x)],
                args.repeats,
                args.warmup,
                device,
            )
            row(device, "fwd+bwd", batch, a, b, c)
        for m in (ns, tv, ex):
            m.to("cpu")
    return rows, info


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | device | measure | batch | netspec ms | torchvision ms | netspec / torchvision "
        "| exported ms | exported / netspec |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        batch = "" if r["batch"] is None else str(r["batch"])
        lines.append(
            f"| {r['model']} | {r['device']} | {r['measure']} | {batch} | {r['netspec_ms']:.2f} "
            f"| {r['torchvision_ms']:.2f} | {r['ratio']:.2f} "
            + (
                f"| {r['exported_ms']:.2f} | {r['exported_ratio']:.2f} |"
                if r["exported_ms"] is not None
                else "| | |"
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.models if (ROOT / "specs" / MODELS[n][0]).exists()]
    skipped = [n for n in args.models if n not in names]
    rows: list[dict[str, Any]] = []
    infos: dict[str, Any] = {}
    started = time.perf_counter()
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            model_rows, info = bench_model(name, args)
        except netspec.SpecError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            skipped.append(name)
            continue
        rows.extend(model_rows)
        infos[name] = info
    table = markdown(rows)
    settings = {
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "build_repeats": args.build_repeats,
        "batches": args.batches,
        "size": args.size or "spec's own",
        "devices": args.devices,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(table)
    print(
        f"\nratio = netspec / torchvision; medians of {args.repeats} interleaved runs after {args.warmup} "
        f"warm-up; builds: median of {args.build_repeats}; {settings['threads']} CPU threads; "
        f"{settings['seconds']} s in all"
    )
    for name, info in infos.items():
        diff = info["max_abs_logit_diff"]
        print(
            f"{name}: {info['params']:,} params at {'x'.join(map(str, info['input_shape']))}, "
            f"spec parse {info['spec_parse_ms']:.1f} ms, "
            + (
                f"torchvision weights loaded, max |logit diff| {diff:.2e}"
                if diff is not None
                else "own weights"
            )
        )
    if skipped:
        print(f"skipped (no spec yet): {', '.join(skipped)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"settings": settings, "models": infos, "skipped": skipped, "rows": rows, "markdown": table},
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
