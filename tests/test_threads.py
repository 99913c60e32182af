"""Intra-op threads for a training run (netspec/train/threads.py): the user's number wins; otherwise one
thread for small steps, the free cores for large ones, a few on CUDA. Core and load readings are
monkeypatched for the decisions; the load reading itself is checked against a real busy process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from netspec.errors import SpecError
from netspec.train import threads as th
from netspec.train.recipe import train_overrides, validate_recipe
from tests.conftest import run_cli

CPU = torch.device("cpu")
# forward MACs per sample: LeNet-5 (LeCun et al. 1998): C1 117,600 + C3 240,000 + C5 48,000 + F6 10,080
# + output 840; ResNet-18 at 224: torchvision's model card gives 1.81 GFLOPS (multiply-adds)
LENET5_MACS = 416_520
RESNET18_MACS = 1_810_000_000


@pytest.fixture
def machine(monkeypatch):
    """A machine with `cores` usable cores of which `busy` are kept busy by other processes."""

    def set_machine(cores: int, busy: float) -> None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(th, "usable_cores", lambda: cores)
        monkeypatch.setattr(th, "other_busy_cores", lambda: busy)

    return set_machine


def test_requested_threads_win_over_the_work_and_the_environment(machine, monkeypatch):
    machine(cores=2, busy=1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    choice = th.choose_threads(3, macs_per_sample=LENET5_MACS, batch_size=32, device=CPU)
    assert (choice.threads, choice.source) == (3, "requested")
    assert "3" in choice.reason


def test_requesting_more_threads_than_cores_says_so(machine):
    machine(cores=2, busy=0.0)
    choice = th.choose_threads(8, macs_per_sample=LENET5_MACS, batch_size=32, device=CPU)
    assert (choice.threads, choice.reason) == (8, "8 requested, more than the 2 cores")


def test_a_small_model_gets_one_thread_whatever_the_cores(machine):
    machine(cores=64, busy=0.0)
    choice = th.choose_threads(None, macs_per_sample=LENET5_MACS, batch_size=128, device=CPU)
    assert (choice.threads, choice.source) == (1, "auto")
    assert "small" in choice.reason


def test_large_steps_take_the_free_cores(machine):
    machine(cores=8, busy=0.0)
    choice = th.choose_threads(None, macs_per_sample=RESNET18_MACS, batch_size=256, device=CPU)
    assert (choice.threads, choice.source) == (8, "auto")
    assert "8 of 8 cores free" in choice.reason


def test_a_busy_neighbour_takes_its_core_away(machine):
    machine(cores=2, busy=1.0)
    choice = th.choose_threads(None, macs_per_sample=RESNET18_MACS, batch_size=256, device=CPU)
    assert choice.threads == 1
    assert choice.reason.endswith("1 of 2 cores free (others keep 1.0 busy)")


def test_threads_grow_with_the_work_up_to_the_free_cores(machine):
    machine(cores=16, busy=0.0)
    per_step = th.MACS_PER_THREAD * 3
    choice = th.choose_threads(None, macs_per_sample=per_step // 8, batch_size=8, device=CPU)
    assert choice.threads == 3


def test_a_mostly_idle_core_counts_as_free_and_an_overloaded_machine_leaves_one():
    assert th.free_cores(2, others=0.2) == 2
    assert th.free_cores(2, others=0.9) == 1
    assert th.free_cores(2, others=2.0) == 1
    assert th.free_cores(16, others=3.5) == 12


def test_cuda_takes_a_few_threads_for_the_host_side(machine):
    machine(cores=32, busy=0.0)
    choice = th.choose_threads(
        None, macs_per_sample=RESNET18_MACS, batch_size=256, device=torch.device("cuda")
    )
    assert choice.threads == th.CUDA_THREADS and "cuda" in choice.reason
    machine(cores=2, busy=0.0)
    assert th.choose_threads(None, macs_per_sample=1, batch_size=1, device=torch.device("cuda")).threads == 2


def test_omp_num_threads_in_the_environment_is_respected(machine, monkeypatch):
    machine(cores=8, busy=0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    choice = th.choose_threads(None, macs_per_sample=RESNET18_MACS, batch_size=256, device=CPU)
    assert (choice.threads, choice.source, choice.reason) == (2, "environment", "OMP_NUM_THREADS=2")
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a number: ignored, as torch ignores it
    assert th.choose_threads(None, macs_per_sample=LENET5_MACS, batch_size=32, device=CPU).source == "auto"


@pytest.mark.parametrize(
    ("cpu_max", "cores"), [("150000 100000\n", 2), ("100000 100000\n", 1), ("max 100000\n", None)]
)
def test_a_cgroup_v2_quota_caps_the_usable_cores(tmp_path, monkeypatch, cpu_max, cores):
    (tmp_path / "cpu.max").write_text(cpu_max)
    monkeypatch.setattr(th, "_CGROUP_V2", tmp_path / "cpu.max")
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert th.usable_cores() == (cores or 8)


def test_a_cgroup_v1_quota_caps_the_usable_cores(tmp_path, monkeypatch):
    (tmp_path / "quota").write_text("250000\n")
    (tmp_path / "period").write_text("100000\n")
    monkeypatch.setattr(th, "_CGROUP_V2", tmp_path / "absent")
    monkeypatch.setattr(th, "_CGROUP_V1", (tmp_path / "quota", tmp_path / "period"))
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert th.cgroup_quota() == 2.5 and th.usable_cores() == 3
    (tmp_path / "quota").write_text("-1\n")  # v1's "no limit"
    assert th.cgroup_quota() is None and th.usable_cores() == 8


def test_proc_stat_is_read_as_busy_and_total_ticks(tmp_path, monkeypatch):
    # the format of proc(5): user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text(
        "cpu  100 5 50 800 20 0 10 15 7 0\n"
        "cpu0 50 2 25 400 10 0 5 8 7 0\n"
        "cpu1 50 3 25 400 10 0 5 7 0 0\n"
        "intr 1\n"
    )
    monkeypatch.setattr(th, "_PROC_STAT", tmp_path / "stat")
    # guest time is already inside user: not counted twice
    assert th._stat_ticks() == (100 + 5 + 50 + 10 + 15, 1000, 2)


def test_other_processes_load_is_the_busy_share_less_this_process(monkeypatch):
    readings = iter([(1000, 4000, 2), (1000 + 150, 4000 + 200, 2)])  # 150 of 200 ticks busy on 2 CPUs
    monkeypatch.setattr(th, "_stat_ticks", lambda: next(readings))
    monkeypatch.setattr(th.time, "sleep", lambda s: None)
    clock = iter([0.0, 1.0])
    own = iter([10.0, 10.5])  # this process used half a core over the sample
    monkeypatch.setattr(th.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(th.time, "process_time", lambda: next(own))
    assert th.other_busy_cores() == pytest.approx(150 / 200 * 2 - 0.5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_real_busy_process_is_seen_as_a_busy_core():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert th.other_busy_cores() >= 0.6  # the kernel's count; other users only add to it
    finally:
        spinner.kill()
        spinner.wait()


# ---------------------------------------------------------------- the recipe field and the option


@pytest.mark.parametrize("value", [0, -1, th.MAX_THREADS + 1, True, "two", 1.5])
def test_recipe_threads_outside_1_to_max_is_a_located_error(value):
    with pytest.raises(SpecError) as exc:
        validate_recipe({"threads": value})
    (problem,) = exc.value.problems
    assert problem.path == ("train", "threads")


def test_recipe_threads_default_to_auto_and_take_a_number():
    assert validate_recipe({}).threads is None
    assert validate_recipe({"threads": 4}).threads == 4
    assert train_overrides(threads=3) == ["train.threads=3"]


def test_train_threads_option_out_of_range_exits_2_located():
    result = run_cli("train", "specs/lenet5.yaml", "--threads", "0", "--out", "unused")
    assert result.exit_code == 2
    assert result.output.startswith("<--set train.threads=0>:1:15: train.threads:")


def test_train_threads_in_the_spec_out_of_range_exits_2_at_its_line(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("extends: zoo:lenet5\ntrain:\n  threads: 5000\n")
    result = run_cli("train", str(spec), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.output.startswith(f"{spec}:3:12: train.threads: ")
    assert "1024" in result.output


# ---------------------------------------------------------------- a run records its choice


def _trained(tmp_path, monkeypatch, *options: str) -> tuple[dict, str]:
    import yaml

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    out = tmp_path / "run"
    result = run_cli(
        "train", "specs/lenet5.yaml", "--epochs", "1", "--data", "synthetic:40", "--out", str(out), *options
    )
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == before  # the run's choice does not leak into the caller
    return yaml.safe_load((out / "recipe.yaml").read_text()), result.output


def test_a_run_records_the_automatic_choice_with_the_step_macs(tmp_path, monkeypatch):
    recipe, output = _trained(tmp_path, monkeypatch)
    # LeNet-5 at the recipe's batch 32: 416,520 x 32 = 13.3M MACs a step, a small model: one thread
    assert recipe["threads"] == 1
    assert recipe["threads_chosen"] == "auto: small steps (13.3M MACs)"
    assert "threads: 1 (auto: small steps (13.3M MACs))" in output


def test_a_run_records_the_requested_threads(tmp_path, monkeypatch):
    recipe, output = _trained(tmp_path, monkeypatch, "--threads", "2")
    assert recipe["threads"] == 2 and recipe["threads_chosen"].startswith("2 requested")
    assert "threads: 2 (2 requested" in output
