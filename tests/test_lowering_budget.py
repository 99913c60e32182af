"""Lowering is bounded by the work it does, not only by the layers it produces (issue 11): block
expansions, layer items and expression evaluations count against a budget tied to `limits.max_layers`,
so a spec that expands exponentially or repeats thousands of `when: false` layers fails fast with a
located SpecSizeError instead of running for hours."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import netspec
from netspec import SpecSizeError
from netspec.lower import lower_sequence
from netspec.lower.budget import WORK_PER_LAYER
from netspec.lower.context import Lowering
from netspec.lower.stages import lower_model

from .conftest import ROOT, SPECS

HEAD = "name: t\ninput: {channels: 3, size: 8}\n"


def fan_out(levels: int, ways: int = 4, limits: str = "") -> str:
    """A block that uses the next one `ways` times, `levels` deep: ways**levels leaves, each a layer
    that is `when: false` (4**30 expansions that produce nothing, the issue's case)."""
    lines = [HEAD + limits + "stem:\n  - b0: {}\nblocks:"]
    for i in range(levels):
        lines.append(f"  b{i}:\n    body: [{', '.join([f'b{i + 1}: {{}}'] * ways)}]")
    lines.append(f"  b{levels}:\n    body: [{{relu: {{when: false}}}}]")
    return "\n".join(lines) + "\n"


def wide_stage(depth: int, layers: int) -> str:
    """A stage of `depth` blocks of `layers` items that are all `when: false` (4e7 conditions at
    20,000 x 2,000, the issue's case)."""
    body = "".join('      - relu: {when: "${in_channels < 0}"}\n' for _ in range(layers))
    return HEAD + f"stages:\n  - {{block: b, depth: {depth}}}\nblocks:\n  b:\n    body:\n{body}"


def _work(spec) -> tuple[int, int]:
    """(work units, layers) of lowering a spec."""
    ctx = Lowering(spec, None, lower_sequence)
    lower_model(ctx)
    return ctx.budget.work, ctx.budget.layers


def test_fan_out_stops_at_the_work_budget_with_a_located_error():
    limits = "limits: {max_layers: 200}\n"
    with pytest.raises(SpecSizeError) as info:
        netspec.analyze(netspec.loads_spec(fan_out(30, limits=limits)))
    (problem,) = info.value.problems
    assert (
        f"work budget is {200 * WORK_PER_LAYER:,}" in problem.message
        and "0 layers produced" in problem.message
    )
    assert problem.location is not None and problem.path[0] == "blocks"  # inside the fan-out


def test_work_counts_every_expansion_item_and_evaluation():
    # 4 levels of 4 ways: 1 + 4 + 16 + 64 + 256 expansions, as many items and 256 conditions
    expansions = sum(4**i for i in range(5))
    work, layers = _work(netspec.loads_spec(fan_out(4).replace("when: false", 'when: "${1 < 0}"')))
    assert layers == 0
    # an expansion is 1 unit, an item 1 + its parameters (`b1: {}`: 1, `relu: {when: ...}`: 2),
    # an evaluation 1
    assert work == expansions + expansions + 256 * 2 + 256


def test_a_wide_stage_of_false_layers_is_refused_after_its_first_block():
    text = wide_stage(20_000, 2_000)
    with pytest.raises(SpecSizeError) as info:
        netspec.analyze(netspec.loads_spec(text))
    (problem,) = info.value.problems
    assert "this stage of 20,000 blocks would take about" in problem.message
    assert f"{WORK_PER_LAYER} per layer of `limits.max_layers`" in problem.message
    assert problem.location is not None and problem.location.line == 4  # `depth:`


@pytest.mark.parametrize("text", [fan_out(30), wide_stage(20_000, 2_000)], ids=["fan-out", "wide-stage"])
def test_the_cli_rejects_them_at_the_default_limits_without_hanging(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # at the default limits the budget is WORK_PER_LAYER x 20,000 units: seconds, not the hours of 4**30
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{path}:") and "work budget" in proc.stderr


def test_the_zoo_spends_a_few_units_per_layer():
    """Real networks are far from the budget (WORK_PER_LAYER units per layer of the limit)."""
    for path in sorted(SPECS.glob("*.yaml")):
        work, layers = _work(netspec.load_spec(path))
        # at most 6.8 (RegNetX-400MF: torchvision's names nest each block's layers three containers deep)
        assert work <= 7 * layers < WORK_PER_LAYER * layers, path.name


def test_a_large_spec_within_its_limits_is_not_refused():
    # 1,900 layers, each with three expressions, under a limit of 2,000 layers
    text = (
        HEAD
        + "limits: {max_layers: 2000}\nvars: {w: 4}\n"
        + "stages:\n  - {block: b, depth: 950}\nblocks:\n  b:\n    params: {k: 1}\n    body:\n"
        + '      - conv: {out: "${w}", kernel: "${k}", stride: "${k}"}\n      - relu\n'
    )
    a = netspec.analyze(netspec.loads_spec(text))
    assert sum(r.is_layer for r in a.rows) == 1900
