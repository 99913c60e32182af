"""`netspec bench`: the measured speed of a built module beside its static cost.

    from netspec.bench import benchmark
    result = benchmark("lenet5", batch_sizes=(1, 8), min_run_time=0.5)
    result.points[0].images_per_s, result.macs_per_image
    print(result.to_json())

Modules, one job each: settings (what to measure, checked before anything is built), measure (build,
warm up, time with torch.utils.benchmark), result (the figures, as a table, markdown and JSON).
"""

from __future__ import annotations

from .measure import benchmark
from .result import BENCH_FORMAT, BenchPoint, BenchResult
from .settings import BenchError, BenchSettings, parse_batch_sizes

__all__ = [
    "BENCH_FORMAT",
    "BenchError",
    "BenchPoint",
    "BenchResult",
    "BenchSettings",
    "benchmark",
    "parse_batch_sizes",
]
