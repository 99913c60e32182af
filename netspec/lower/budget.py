"""Bounds on lowering: the layers and parameters it produces (`limits`) and the work it does.

Counting only what is produced is not enough: a block that fans out four ways thirty levels deep, or a
stage of 20,000 blocks of 2,000 layers that are all `when: false`, produce nothing and would run for
hours. So every block expansion, layer item and expression evaluation is a unit of work, and lowering
stops with a located SpecSizeError once the work passes a budget tied to the layer limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Problem, SpecSizeError
from ..source import locate
from ..spec import Limits
from .cursor import Src

# Work units allowed per layer of `limits.max_layers`. A real network spends a few units per layer
# (the zoo at most 6.8, RegNetX-400MF; tests/test_lowering_budget.py keeps it under 7), so a spec at the
# layer limit fits with room to spare, and at the default limit of 20,000 layers the whole budget
# (320,000 units) is seconds of work.
WORK_PER_LAYER = 16


@dataclass(frozen=True)
class Tally:
    """What lowering has produced and done so far."""

    layers: int
    params: int
    work: int


class Budget:
    def __init__(self, limits: Limits, raw: Any):
        self.limits = limits
        self.raw = raw  # the spec tree, to locate errors
        self.max_work = WORK_PER_LAYER * limits.max_layers
        self.layers = 0
        self.params = 0
        self.work = 0

    def tally(self) -> Tally:
        return Tally(self.layers, self.params, self.work)

    def spend(self, units: int, src: Src) -> None:
        """Count work; past the budget, stop at the spec item that was being lowered."""
        self.work += units
        if self.work > self.max_work:
            raise SpecSizeError(
                Problem(
                    f"lowering stopped after {self.work:,} units of work (block expansions, layer items and"
                    f" expression evaluations) with {self.layers:,} layers produced: the work budget is"
                    f" {self.max_work:,} ({WORK_PER_LAYER} per layer of `limits.max_layers`)",
                    src,
                    locate(self.raw, src),
                    "a block that expands many times but produces few layers (`when: false`, deep"
                    " fan-out)? reduce the repeats,; if this is intended, run with --allow-large",
                )
            )

    def fits(self, units: int) -> bool:
        """Whether `units` more work stay within the budget (work measured before, done again)."""
        return self.work + units <= self.max_work

    def add_layer(self, params: int, path: str, src: Src) -> None:
        self.layers += 1
        self.params += params
        limits = self.limits
        if self.layers > limits.max_layers or self.params > limits.max_params:
            raise SpecSizeError(
                Problem(
                    f"the model grows past {self.layers:,} layers and "
                    f"{self.params:,} parameters at {path} (limits: "
                    f"{limits.max_layers:,} layers, {limits.max_params:,} parameters)",
                    src,
                    locate(self.raw, src),
                    "reduce widths or depths; if this is intended, run with --allow-large",
                )
            )

    def check_depth(self, depth: int, src: Src) -> None:
        """A stage of `depth` blocks has at least `depth` layers: refuse it before expanding any."""
        if depth > self.limits.max_layers:
            raise SpecSizeError(
                Problem(
                    f"a stage of depth {depth:,} has at least {depth:,} layers, more than"
                    f" the limit of {self.limits.max_layers:,}",
                    src,
                    locate(self.raw, (*src, "depth")),
                    "lower the depth,; if this is intended, run with --allow-large",
                )
            )

    def check_stage(self, depth: int, before: Tally, src: Src) -> None:
        """After the first block of a deep stage, refuse early if the whole stage would be too large."""
        one = Tally(self.layers - before.layers, self.params - before.params, self.work - before.work)
        layers = self.layers + one.layers * (depth - 1)
        params = self.params + one.params * (depth - 1)
        work = self.work + one.work * (depth - 1)
        limits = self.limits
        if layers > limits.max_layers or params > limits.max_params:
            raise SpecSizeError(
                Problem(
                    f"this stage of {depth} blocks would bring the model to about {layers:,} layers"
                    f" and {params:,} parameters (limits: {limits.max_layers:,} layers,"
                    f" {limits.max_params:,} parameters)",
                    src,
                    locate(self.raw, (*src, "depth")),
                    "lower depth or width; if this is intended, run with --allow-large",
                )
            )
        if work > self.max_work:
            raise SpecSizeError(
                Problem(
                    f"this stage of {depth:,} blocks would take about {work:,} units of lowering work"
                    f" (block expansions, layer items and expression evaluations) for {layers:,} layers:"
                    f" the work budget is {self.max_work:,} ({WORK_PER_LAYER} per layer of"
                    " `limits.max_layers`)",
                    src,
                    locate(self.raw, (*src, "depth")),
                    "blocks whose layers are mostly `when: false`? lower the depth, or raise"
                    " `limits.max_layers` if this is intended",
                )
            )
