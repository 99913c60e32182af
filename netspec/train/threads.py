"""How many intra-op threads a training run uses: the user's number, or one chosen for the work.

Torch's default (one thread per core) is wrong in two common cases. A small model's per-step ops
are too short to split: the threads spend the step waking up and waiting for each other. And on a
machine where another process is busy, every op waits for its slowest thread, the one sharing a
core with the neighbour: with one busy process beside it on 2 cores, LeNet-5 trained 6.7x slower
on torch's 2 threads than on 1 (issue 14). So the choice is made from two readings:

- the per-step work, `macs_per_sample * batch_size` (forward MACs; backward is about twice that):
  below `MACS_PER_THREAD` a step gets one thread, above it one more thread per `MACS_PER_THREAD`;
- the cores free to this process: its CPU affinity, capped by a cgroup CPU quota, less the cores
  other processes keep busy (a short /proc/stat sample, minus this process's own time; the 1-minute
  load average where /proc/stat is missing).

On CUDA the GPU does the arithmetic; the CPU threads only run the host side, so a few suffice.
The measurements: README's Speed section (the runner and its threads), benchmarks/bench_train.py.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the recipe imports MAX_THREADS: no torch import for that
    import torch

# Per-step forward MACs for each intra-op thread. On 2 free cores a second thread made every model
# measured 1.5-1.8x faster, LeNet-5 included; beside busy processes it made them 1.6-14x slower, worst
# for the smallest work (README, Speed). The free cores are read once, when the run starts, so small
# steps stay on one thread, where a neighbour that starts later costs little: LeNet-5 (0.4 MMACs a
# sample) up to batch 2,400, resnet20_cifar at batch 32 (1.3 G); batch 128 (5.2 G) takes the free cores.
MACS_PER_THREAD = 10**9
CUDA_THREADS = 4  # host-side work only: the GPU runs the model
MAX_THREADS = 1024  # the recipe's bound: more is a typo, not a machine
_SAMPLE_S = 0.1  # how long /proc/stat is watched for other processes' load
_IDLE_SHARE = 0.25  # a core busy less than this share of the time counts as free

_PROC_STAT = Path("/proc/stat")
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op threads of a run, where the number came from (`requested`, `environment` or
    `auto`), and why, in a short phrase for the run header."""

    threads: int
    source: str
    reason: str


def choose_threads(
    requested: int | None, *, macs_per_sample: int, batch_size: int, device: torch.device
) -> ThreadChoice:
    """The intra-op threads for training on `device`: `requested` (`--threads`, `train.threads`) when
    given, else OMP_NUM_THREADS when the environment sets it, else chosen from the work and the free
    cores (module docstring)."""
    if requested is not None:
        cores = usable_cores()
        over = f", more than the {cores} cores" if requested > cores else ""  # they will take turns
        return ThreadChoice(requested, "requested", f"{requested} requested{over}")
    env = _omp_num_threads()
    if env is not None:
        return ThreadChoice(env, "environment", f"OMP_NUM_THREADS={env}")
    if device.type == "cuda":
        n = min(CUDA_THREADS, usable_cores())
        return ThreadChoice(n, "auto", "cuda: the GPU does the work")
    step_macs = macs_per_sample * batch_size
    wanted = max(1, step_macs // MACS_PER_THREAD)
    if wanted == 1:
        return ThreadChoice(1, "auto", f"small steps ({_giga(step_macs)} MACs)")
    cores = usable_cores()
    others = other_busy_cores()
    free = free_cores(cores, others)
    n = max(1, min(wanted, free))
    busy = f" (others keep {others:.1f} busy)" if free < cores else ""
    return ThreadChoice(n, "auto", f"{_giga(step_macs)} MACs per step, {free} of {cores} cores free{busy}")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota is not None else cores)


def cgroup_quota() -> float | None:
    """The cgroup CPU quota in cores (cgroup v2 `cpu.max`, v1 `cfs_quota_us / cfs_period_us`), or None."""
    try:
        if _CGROUP_V2.exists():
            quota, period = _CGROUP_V2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = _CGROUP_V1
        if quota_file.exists():
            q, p = int(quota_file.read_text()), int(period_file.read_text())
            return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        pass
    return None


def free_cores(cores: int, others: float) -> int:
    """Of `cores`, how many remain when other processes keep `others` cores busy (at least 1)."""
    return max(1, min(cores, math.floor(cores - others + _IDLE_SHARE)))


def other_busy_cores() -> float:
    """Cores kept busy by other processes: a /proc/stat sample less this process's own CPU time, or
    the 1-minute load average (which counts this process too, when it has been busy) without it."""
    first = _stat_ticks()
    if first is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows has no load average
            return 0.0
    own0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(_SAMPLE_S)
    second = _stat_ticks()
    own, wall = time.process_time() - own0, time.perf_counter() - wall0
    if second is None:
        return 0.0
    busy, total, cpus = second[0] - first[0], second[1] - first[1], second[2]
    if total <= 0:
        return 0.0
    # ticks are summed over all host CPUs: the busy share times the CPUs is the cores busy, of which
    # this process's own CPU time over the sample is not someone else's
    return max(0.0, busy / total * cpus - own / wall)


def _stat_ticks() -> tuple[int, int, int] | None:
    """(busy ticks, all ticks, cpus) from /proc/stat's aggregate `cpu` line, or None off Linux."""
    try:
        lines = _PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user and nice
    total = sum(fields[:8])
    return total - idle, total, max(1, cpus)


def _omp_num_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def _giga(macs: int) -> str:
    return f"{macs / 1e9:.3g}G" if macs >= 10**9 else f"{macs / 1e6:.3g}M"
