"""What a finished (or running) training run left in its directory, read back for reports and model
cards: the per-epoch metrics (`metrics.jsonl`, else `metrics.csv`), the recipe (`recipe.yaml`), the
spec that was trained (`spec.yaml`) and the curves the runner drew (`loss.png`, ...).

The files are the user's: each is read with a size bound and parsed as data only (JSON, CSV, safe
YAML); a file that cannot be read is a SpecError located at that file, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError

SPEC = "spec.yaml"
RECIPE = "recipe.yaml"
METRICS = ("metrics.jsonl", "metrics.csv")
PLOTS = ("loss.png", "accuracy.png", "lr.png")  # as netspec/train/plots.py names them
MAX_BYTES = 32 << 20  # a metrics file of a million epochs is still far below this


class RunReadError(SpecError):
    """A run directory, or one of its files, cannot be read."""


@dataclass
class RunRecord:
    """A run directory's results: one dict per epoch (epoch, train_loss, val_loss, val_top1, ...)."""

    path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    plots: list[Path] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    @property
    def best(self) -> dict[str, Any] | None:
        """The epoch with the best validation top-1 (the first such epoch)."""
        rows = [r for r in self.history if isinstance(r.get("val_top1"), float | int)]
        return max(rows, key=lambda r: r["val_top1"]) if rows else None

    @property
    def data(self) -> str | None:
        """The data set the recipe names (`digits`, `cifar10:DIR`, ...), if known."""
        data = (self.recipe or {}).get("data")
        return data if isinstance(data, str) else None

    def series(self, key: str) -> list[tuple[float, float]]:
        """(epoch, value) for every epoch that has a finite number under `key`."""
        points = []
        for row in self.history:
            x, y = row.get("epoch"), row.get(key)
            if isinstance(x, int | float) and isinstance(y, int | float) and _number(x) and _number(y):
                points.append((float(x), float(y)))
        return points


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_run_dir(path: Path) -> bool:
    """`path` is a directory a run wrote (its spec, recipe or metrics are there)."""
    return path.is_dir() and any((path / name).is_file() for name in (SPEC, RECIPE, *METRICS))


def _error(path: Path, message: str, hint: str | None = None) -> RunReadError:
    return RunReadError(Problem(message, location=Location(str(path), 1, 1), hint=hint))


def _read(path: Path) -> str:
    try:
        if not path.is_file():
            raise _error(path, "not a regular file")
        if path.stat().st_size > MAX_BYTES:
            raise _error(path, f"larger than {MAX_BYTES >> 20} MiB: not a run's file")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _error(path, "not UTF-8 text") from None
    except OSError as exc:
        raise _error(path, f"cannot read: {exc.strerror or exc}") from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RunReadError(
                Problem(f"not JSON: {exc}", location=Location(str(path), i, 1), hint="a row per epoch")
            ) from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _csv(path: Path) -> list[dict[str, Any]]:
    def value(text: str | None) -> Any:
        try:
            number = float(text or "")
        except ValueError:
            return text or None
        return int(number) if number.is_integer() and "." not in (text or "") else number

    try:
        reader = csv.DictReader(io.StringIO(_read(path)))
        return [{k: value(v) for k, v in row.items() if isinstance(k, str)} for row in reader]
    except csv.Error as exc:
        raise _error(path, f"not CSV: {exc}") from None


def _recipe(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise _error(path, f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise _error(path, "a recipe is a mapping of fields (epochs, batch_size, ...)")
    return doc


def read_run(path: Path) -> RunRecord:
    """The results in run directory `path` (metrics may be empty: a run that has not ended an epoch)."""
    if not is_run_dir(path):
        raise _error(
            path,
            "not a run directory: it holds none of spec.yaml, recipe.yaml, metrics.jsonl, metrics.csv",
            hint="give the directory `netspec train` wrote (runs/<name>)",
        )
    history: list[dict[str, Any]] = []
    for name in METRICS:
        if (path / name).exists():
            history = _jsonl(path / name) if name.endswith(".jsonl") else _csv(path / name)
            break
    plots = [path / name for name in PLOTS if (path / name).is_file()]
    return RunRecord(path, history, _recipe(path / RECIPE), plots)


def run_spec(path: Path) -> Path:
    """The spec a run trained (its spec.yaml); a RunReadError when the run trained a model file."""
    spec = path / SPEC
    if not spec.is_file():
        other = " (it trained a model file, model.py)" if (path / "model.py").exists() else ""
        raise _error(path, f"the run directory holds no spec.yaml{other}", hint="give the spec as well")
    return spec
