"""`netspec bench`: measured latency and throughput beside the static MACs.

The static figures are checked against fvcore and torchvision, the measured ones against their own
measurements (torch.utils.benchmark's median and IQR recomputed with numpy from the JSON's list) and
against a plain perf_counter loop over the same forward; bad options exit 2 with one clear line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import netspec
from netspec.bench import BENCH_FORMAT, BenchError, BenchSettings, benchmark
from netspec.errors import SpecError

from .conftest import ROOT, fvcore_macs, n_params, run_cli

pytestmark = pytest.mark.usefixtures("one_thread_module")

FAST = ["--threads", "1", "--min-run-time", "0.02", "--device", "cpu"]


def bench_json(*args: str) -> dict:
    result = run_cli("bench", *args, *FAST, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_json_figures_are_torch_measurements_of_the_asked_batches():
    # a real process with every warning shown (`-W default`): the terminal gets the JSON and nothing
    # else (importing torch.utils.benchmark logs "No CUDA runtime is found" on a CUDA build without GPU)
    command = [sys.executable, "-W", "default", "cli.py", "bench", "lenet5", "--batch-sizes", "1,3", *FAST]
    done = subprocess.run([*command, "-f", "json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["format"] == BENCH_FORMAT
    assert (data["name"], data["input_shape"], data["mode"]) == ("lenet5", [1, 32, 32], "inference")
    assert (data["device"], data["threads"], data["channels_last"], data["compile"]) == (
        "cpu",
        1,
        False,
        False,
    )
    assert [r["batch_size"] for r in data["results"]] == [1, 3]
    for r in data["results"]:
        times = np.array(r["measurements"])
        assert len(times) >= 1 and r["calls_per_measurement"] >= 1
        latency = r["latency_s"]
        # torch's Measurement statistics, recomputed by numpy from the same measurements
        assert latency["median"] == pytest.approx(np.median(times), rel=1e-9)
        assert latency["iqr"] == pytest.approx(np.percentile(times, 75) - np.percentile(times, 25), abs=1e-12)
        assert latency["mean"] == pytest.approx(times.mean(), rel=1e-9)
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / latency["median"], rel=1e-9)
        assert r["macs_per_call"] == data["macs_per_image"] * r["batch_size"]
        assert r["gmacs_per_s"] == pytest.approx(r["macs_per_call"] / latency["median"] / 1e9, rel=1e-9)
        assert r["noisy"] == (latency["iqr"] > 0.1 * latency["median"])
        assert r["peak_memory_bytes"] is None  # CPU: torch keeps no peak
    # the static cost is fvcore's count of the module netspec builds
    spec = netspec.load_spec("specs/lenet5.yaml")
    assert data["macs_per_image"] == fvcore_macs(netspec.build(spec), (1, 32, 32))
    assert data["params"] == n_params(netspec.build(spec))


def test_bench_macs_and_params_are_torchvisions_resnet18_at_the_asked_input_size():
    import torchvision

    spec = netspec.load_spec("specs/resnet18.yaml", ["input.size=32"])
    result = benchmark(spec, BenchSettings((2,), "cpu", threads=1, min_run_time=0.02, warmup=1))
    reference = torchvision.models.resnet18(weights=None)
    assert result.input_shape == (3, 32, 32)
    assert result.macs_per_image == fvcore_macs(reference, (3, 32, 32))
    assert result.params == n_params(reference)
    (point,) = result.points
    assert point.batch_size == 2 and point.macs_per_call == 2 * result.macs_per_image


def test_bench_latency_is_one_forward_of_the_whole_batch():
    """Against a plain loop timed with perf_counter: within 4x either way on a busy machine, so a
    latency per image (32x less) or per measurement block (100x more) cannot pass."""
    batch = 32
    result = benchmark("lenet5", batch_sizes=(batch,), device="cpu", threads=1, min_run_time=0.05)
    model = netspec.build(netspec.load_spec("specs/lenet5.yaml"), seed=0).eval()
    x = torch.randn(batch, 1, 32, 32)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(10):
                model(x)
            runs.append((time.perf_counter() - t0) / 10)
    plain = statistics.median(runs)
    assert plain / 4 < result.points[0].median < plain * 4


def test_bench_train_times_a_training_step_and_counts_it_as_three_forwards():
    data = bench_json("lenet5", "--batch-sizes", "8", "--train")
    inference = bench_json("lenet5", "--batch-sizes", "8")
    assert data["mode"] == "train"
    (step,), (forward,) = data["results"], inference["results"]
    assert step["macs_per_call"] == 3 * data["macs_per_image"] * 8
    assert step["gmacs_per_s"] == pytest.approx(step["macs_per_call"] / step["latency_s"]["median"] / 1e9)
    # forward, backward and an SGD step take longer than the forward alone
    assert step["latency_s"]["median"] > forward["latency_s"]["median"]


def test_bench_table_and_markdown_show_every_batch_size():
    table = run_cli("bench", "lenet5", "-b", "1,2", *FAST)
    assert table.exit_code == 0, table.output
    assert "lenet5" in table.stdout and "images/s" in table.stdout and "GMAC/s" in table.stdout
    markdown = run_cli("bench", "lenet5", "-b", "2", "--channels-last", *FAST, "-f", "markdown")
    assert markdown.exit_code == 0, markdown.output
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 1 and "channels_last" in markdown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "0,8"], "--batch-sizes: 0 out of range"),
        (["-b", "1,x"], "--batch-sizes '1,x': not a list of batch sizes"),
        (["-b", ","], "not a list of batch sizes"),
        (["--threads", "0"], "--threads 0: must be from 1"),
        (["--min-run-time", "0"], "--min-run-time 0.0: must be above 0"),
        (["--device", "tpu"], "--device 'tpu': not a device"),
        (["--set", "stages.0.depth=x"], "stages.0.depth"),
    ],
)
def test_bench_bad_options_exit_2_with_one_clear_line(args, message):
    result = run_cli("bench", "lenet5", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_bench_refuses_cuda_where_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("bench", "lenet5", "--device", "cuda")
    assert result.exit_code == 2
    assert "--device cuda:" in result.output and "use --device cpu" in result.output


def test_bench_refuses_a_batch_beyond_memory_before_allocating():
    result = run_cli("bench", "resnet50", "-b", "1,65536", "--device", "cpu")
    assert result.exit_code == 2
    assert "a forward pass of 65,536 samples would allocate" in result.output


def test_bench_reports_a_failing_training_step_at_its_batch_size():
    # ResNet-18 at 32x32 reaches layer4 at 1x1: a batch of one gives batch norm one value per channel
    result = run_cli("bench", "resnet18", "--input-size", "32", "-b", "1", "--train", *FAST)
    assert result.exit_code == 2
    assert "batch size 1: the training step failed: ValueError: Expected more than 1 value" in result.output


def test_bench_compile_failure_is_a_clear_error(monkeypatch):
    def unavailable(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    result = run_cli("bench", "lenet5", "-b", "1", "--compile", *FAST)
    assert result.exit_code == 2
    assert "--compile: torch.compile failed: RuntimeError: torch.compile is not supported" in result.output


def test_bench_errors_are_spec_errors_from_the_api():
    with pytest.raises(BenchError) as info:
        benchmark("lenet5", batch_sizes=(), threads=0)
    assert isinstance(info.value, SpecError)
    assert [p.message for p in info.value.problems] == [
        "no batch size given",
        "--threads 0: must be from 1 to 1024",
    ]


@pytest.mark.slow
def test_bench_compiled_module_runs_on_cpu():
    result = benchmark("lenet5", batch_sizes=(4,), device="cpu", threads=1, min_run_time=0.05, compile=True)
    assert result.compiled and result.points[0].images_per_s > 0


# -- benchmarks/gpu_check.py -----------------------------------------------------------------------


def test_gpu_check_smoke_runs_every_case_the_cpu_has_and_names_the_rest(tmp_path, capsys, monkeypatch):
    """The GPU check's code paths on the CPU: runner and hand loop in bf16 and fp16 (grad scaler),
    DDP in one process (gloo: NCCL is CUDA's); torch.compile and peak memory are noted as skipped."""
    import importlib.util
    import math
    import sys

    loaded = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert loaded is not None and loaded.loader is not None
    gpu_check = importlib.util.module_from_spec(loaded)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look their module up
    loaded.loader.exec_module(gpu_check)
    out = tmp_path / "gpu.json"
    report = gpu_check.main(["--device", "cpu", "--smoke", "--threads", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == report
    assert report["format"] == "netspec-gpu-check/1" and report["device"] == "cpu"
    ran = {(c["case"], c["side"]): c for c in report["cases"] if c["images_per_s"] is not None}
    assert set(ran) == {
        ("bf16", "hand"),
        ("bf16", "runner"),
        ("fp16 + grad scaler", "hand"),
        ("fp16 + grad scaler", "runner"),
        ("bf16 DDP world 1", "hand"),
    }
    assert all(c["images_per_s"] > 0 and math.isfinite(c["final_loss"]) for c in ran.values())
    for case in ("bf16", "fp16 + grad scaler"):
        speeds = ran[(case, "runner")]["images_per_s"] / ran[(case, "hand")]["images_per_s"]
        assert report["runner_over_hand"][case] == pytest.approx(speeds)
    assert "skipped on the CPU: TorchInductor" in printed and "NCCL needs CUDA" in printed
    assert "peak memory is CUDA's counter" in printed
    assert "| bf16 | runner |" in printed  # the markdown table
    bench = report["bench"]  # netspec bench of the same spec on the same device
    assert bench["format"] == BENCH_FORMAT and bench["name"] == "lenet5" and bench["channels_last"]
    assert [r["batch_size"] for r in bench["results"]] == [1, 8]
