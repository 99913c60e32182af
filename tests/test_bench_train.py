"""benchmarks/bench_train.py measures on a shared machine by interleaving its sides: the order rotates,
the spread is reported, and a tiny runner-against-hand-loop comparison runs end to end."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_train", None)


def test_sides_run_interleaved_in_rotating_order(bench):
    calls: list[str] = []
    sides = {name: (lambda name=name: calls.append(name) or len(calls)) for name in "ABC"}
    runs = bench.interleaved(sides, rounds=3)
    assert calls == list("ABCBCACAB")
    assert runs["A"] == [1, 6, 8]  # each side's results in round order


def test_spread_is_median_min_max_and_quartiles(bench):
    # statistics.quantiles' default (exclusive) quartiles of 1..5 are 1.5 and 4.5
    assert bench.spread([5.0, 1.0, 3.0, 2.0, 4.0]) == "3.00 (1.00-5.00, IQR 1.50-4.50)"
    assert bench.spread([1.0, 2.0]) == "1.50 (1.00-2.00)"  # too few rounds for quartiles


def test_a_tiny_runner_against_hand_loop_comparison_runs(bench, capsys, one_thread):
    bench.compare_runner([bench.Case("lenet5", "synthetic:50", 1, batch=8)], rounds=1, threads=1)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| lenet5"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1 x 8"
    assert float(cells[2].split()[0]) > 0 and float(cells[3].split()[0]) > 0  # the two ratios
