"""What one lowering run accumulates: the problems found, the work done, the blocks being expanded.

Problems are collected rather than raised one by one, so a user sees all of them at once; after a
problem the shape downstream is unknown (None) and only parameter checks continue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import Problem, SpecError, SpecShapeError, clean_pydantic_errors, did_you_mean
from ..expr import ExprError, Steps, has_expression, substitute
from ..layers import KINDS
from ..layers.base import Shape, check_module_name, pair
from ..source import locate, locate_key
from ..spec import Spec
from .budget import Budget
from .cursor import Cursor, Lowered, Src

# evaluation steps per unit of lowering work: a formula is one unit, a list of 1,000 elements ~40-400
EXPR_STEPS_PER_UNIT = 25
# lowers a list of items at a cursor (sequence.lower_sequence)
SequenceLowerer = Callable[["Lowering", Any, Cursor], Lowered]


class BadValueError(Exception):
    """A value that cannot be used (a failing expression, a shortcut that cannot be built)."""

    def __init__(self, message: str, src: Src, hint: str | None = None):
        super().__init__(message)
        self.message, self.src, self.hint = message, src, hint


class Lowering:
    """Lowering is recursive (a block's body is a sequence that may use blocks); the function that
    lowers a sequence is handed in, so blocks and shortcuts reach it without importing it back."""

    def __init__(self, spec: Spec, input_size: tuple[int, int] | None, lower_sequence: SequenceLowerer):
        self.spec = spec
        self.lower_sequence = lower_sequence
        self.problems: list[tuple[Problem, bool]] = []  # (problem, is_shape_problem)
        self.budget = Budget(spec.limits, spec.raw)
        self.expanding: list[str] = []  # the blocks being expanded, outermost first
        # what primitive.py worked out for a layer's parameters and input shape, reused by every layer of
        # this run that repeats them (ResNet's repeated blocks, DenseNet's layers)
        self.memo: dict[tuple[Any, ...], Any] = {}
        self.wrapped: dict[str, str] = {}  # names inside the `features:`/`trunk:` wrapper -> its name
        size = input_size or pair(spec.input.size)
        self.input_shape: Shape = (spec.input.channels, size[0], size[1])
        self.globals = self._globals(size)
        # spec-wide layer defaults may use expressions too: evaluated once, in the global scope
        self.defaults = self._defaults()
        if self.problems:  # everything downstream reads the vars: report them alone
            raise SpecError([p for p, _ in self.problems])

    def _globals(self, size: tuple[int, int]) -> dict[str, Any]:
        spec = self.spec
        scope: dict[str, Any] = {
            "classes": spec.classes,
            "input_channels": spec.input.channels,
            "input_height": size[0],
            "input_width": size[1],
        }
        for key, value in spec.vars.items():
            try:
                scope[key] = self.value(value, scope, ("vars", key))
            except BadValueError as bad:
                self.problem(bad.message, bad.src)
        return scope

    def _defaults(self) -> dict[str, dict[str, Any]]:
        defaults: dict[str, dict[str, Any]] = {}
        for kind, values in self.spec.defaults.items():
            if kind not in KINDS:
                hint = did_you_mean(kind, KINDS) or "defaults are per primitive layer kind"
                self.problem(f"unknown layer kind '{kind}' in `defaults`", ("defaults", kind), hint)
                continue
            try:
                defaults[kind] = {
                    k: self.value(v, self.globals, ("defaults", kind, k)) for k, v in values.items()
                }
            except BadValueError as bad:
                self.problem(bad.message, bad.src)
        return defaults

    # -- values -------------------------------------------------------------------------------
    def value(self, v: Any, scope: Mapping[str, Any], src: Src) -> Any:
        """Evaluate `${...}` in a value (recursively through lists); each evaluation is work, and so is
        each element of a list."""
        if isinstance(v, list):
            self.budget.spend(len(v), src)
            return [self.value(x, scope, (*src, i)) for i, x in enumerate(v)]
        if has_expression(v):
            self.budget.spend(1, src)
            steps = Steps()
            try:
                return substitute(v, scope, steps, self.memo)
            except ExprError as exc:
                raise BadValueError(str(exc), src) from None
            finally:  # a long list comprehension is more than one unit of work
                self.budget.spend(steps.taken // EXPR_STEPS_PER_UNIT, src)
        return v

    def condition(self, v: Any, scope: Mapping[str, Any], src: Src) -> bool:
        """A `when:`: true or false, written or computed; anything else is a mistake, not a truth value."""
        value = self.value(v, scope, src)
        if not isinstance(value, bool):
            said = f"`when: {v}` gives {value!r}" if has_expression(v) else f"`when` is {value!r}"
            raise BadValueError(
                f"{said}: a condition must be true or false",
                src,
                'write `when: false`, or a comparison such as `when: "${n > 0}"`',
            )
        return value

    # -- problems -----------------------------------------------------------------------------
    def problem(self, message: str, src: Src, hint: str | None = None, shape: bool = False) -> None:
        self.problems.append((Problem(message, src, locate(self.spec.raw, src), hint), shape))

    def explicit_name(self, name: Any, src: Src) -> bool:
        """Check a `name:` given to a composite or a block instance (layers check their own)."""
        if name is None:
            return True
        try:
            if not isinstance(name, str):
                raise ValueError(f"a module name must be text, not {name!r}")
            check_module_name(name)
        except ValueError as exc:
            self.problem(str(exc), (*src, "name"))
            return False
        return True

    def pydantic(self, exc: ValidationError, src: Src, model: type) -> None:
        for loc, err in clean_pydantic_errors(exc.errors()):
            msg = err["msg"]
            hint = None
            if err["type"] == "extra_forbidden":
                field = str(loc[-1]) if loc else ""
                fields = getattr(model, "model_fields", {})
                hint = did_you_mean(field, fields) or "allowed: " + ", ".join(fields)
                msg = f"unknown field '{field}'"
                where = locate_key(self.spec.raw, (*src, *loc))  # the key, not its value
                self.problems.append((Problem(msg, (*src, *loc), where, hint), False))
                continue
            elif err["type"] == "missing":
                msg = f"missing required field '{loc[-1]}'" if loc else "missing field"
            elif "input" in err and not isinstance(err["input"], (Mapping, list)):
                msg = f"{msg} (got {err['input']!r})"
            self.problem(msg, (*src, *loc), hint)

    def raise_problems(self) -> None:
        if self.problems:
            problems = [p for p, _ in self.problems]
            cls = SpecShapeError if all(s for _, s in self.problems) else SpecError
            raise cls(problems)
