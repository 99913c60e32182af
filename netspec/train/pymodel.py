"""A network given as Python source: `netspec train model.py` and `netspec eval model.py -c RUN`.

The file is the one `netspec export` writes, or any file like it (a user who edits generated code
keeps the runner):

    INPUT_SHAPE = (3, 224, 224)            # (C, H, W) of one image
    RECIPE = {"epochs": 90, ...}           # optional: the spec's `train:` section
    def build_model(**kwargs) -> nn.Module: ...   # N x C x H x W -> N x classes logits

INPUT_SHAPE and RECIPE are read from the file's syntax tree, as literals, never run: a mistake in them
is reported at its line and column like a mistake in a YAML spec, and `--set train.epochs=3`
overrides RECIPE's fields. Building the network imports the file: the one place where netspec runs
code, and only a .py file the user named (its directory is on sys.path meanwhile, as with `python
model.py`). An exception there is reported at the file's line that raised it, not as a traceback.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import Location, Problem, SpecError
from ..resolve import apply_override, parse_override
from ..source import PosDict, PosList
from .recipe import Recipe, validate_recipe

FACTORY = "build_model"
MAX_BYTES = 16 << 20  # a generated ResNet-152 is about 10 KB; anything this big is not a model file


def is_model_file(arg: Any) -> bool:
    """A `.py` path: a network as Python source rather than a spec."""
    return isinstance(arg, str | Path) and str(arg).endswith(".py")


def _error(message: str, where: Location | None, hint: str | None = None, path: tuple = ()) -> SpecError:
    return SpecError(Problem(message, path, where, hint))


def _loc(file: str, node: ast.AST) -> Location:
    return Location(file, getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1)


def _literal(node: ast.expr, file: str, name: str) -> Any:
    """A literal expression as a positioned tree (PosDict / PosList / scalars)."""
    if isinstance(node, ast.Dict):
        out = PosDict()
        out.location = _loc(file, node)
        for k, v in zip(node.keys, node.values, strict=True):
            if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                raise _error(f"{name}: keys must be strings", _loc(file, k or v))
            out[k.value] = _literal(v, file, name)
            out.positions[k.value] = _loc(file, v)
            out.key_positions[k.value] = _loc(file, k)
        return out
    if isinstance(node, ast.List | ast.Tuple):
        items = ((_literal(item, file, name), _loc(file, item)) for item in node.elts)
        return PosList.of(items, _loc(file, node))
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)  # -True is not a literal one writes
    ):
        return -node.operand.value
    raise _error(
        f"{name} must be a literal (numbers, strings, booleans, None, lists and dicts of them)",
        _loc(file, node),
        "netspec reads it without running the file",
    )


def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """The value last assigned to each top-level name (`X = ...` or `X: T = ...`)."""
    found: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            found[stmt.targets[0].id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            found[stmt.target.id] = stmt.value
    return found


def _defines(tree: ast.Module, name: str, assignments: dict[str, ast.expr]) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.ClassDef) and stmt.name == name:
            return True
        if isinstance(stmt, ast.Import | ast.ImportFrom) and any(
            (a.asname or a.name) == name for a in stmt.names
        ):
            return True
    return name in assignments


@dataclass
class ModelFile:
    """A model file, read (not yet run): its name, input shape and validated recipe."""

    path: Path
    name: str
    input_shape: tuple[int, int, int]
    recipe: Recipe
    raw: PosDict  # {"train": RECIPE} with positions, to locate data errors at RECIPE's lines
    shape_at: Location

    def build(self) -> nn.Module:
        """Import the file and call its build_model()."""
        module = _import(self.path)
        factory = getattr(module, FACTORY, None)
        where = Location(str(self.path), 1, 1)
        if not callable(factory):
            raise _error(f"'{FACTORY}' is not a function", where)
        try:
            model = factory()
        except (Exception, SystemExit) as exc:
            raise _raised(self.path, exc, f"{FACTORY}()") from None
        if not isinstance(model, nn.Module):
            raise _error(f"{FACTORY}() returned a {type(model).__name__}, not a torch.nn.Module", where)
        return model

    def classes(self, model: nn.Module) -> int:
        """The number of outputs of `model` (one CPU forward of a zero image in eval mode), which
        also checks that the network takes INPUT_SHAPE."""
        from .losses import main_logits

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = main_logits(model(torch.zeros(1, *self.input_shape)))
        except Exception as exc:
            raise _error(
                f"the network of {FACTORY}() does not take INPUT_SHAPE {self.input_shape}:"
                f" {type(exc).__name__}: {exc}",
                self.shape_at,
                "INPUT_SHAPE is (channels, height, width) of one image",
            ) from None
        finally:
            model.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise _error(
                f"the network of {FACTORY}() gives {shape} for one image; the runner needs"
                " (N, classes) logits",
                self.shape_at,
            )
        return int(out.shape[1])


def read_model_file(path: str | os.PathLike[str], overrides: list[str] | None = None) -> ModelFile:
    """Read a model file's INPUT_SHAPE and RECIPE (with `train.*` overrides applied) without running
    it. Raises SpecError, located in the file, for anything missing or malformed."""
    path = Path(path)
    file = str(path)
    top = Location(file, 1, 1)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _error(f"{path.stat().st_size:,} bytes is too large for a model file", top)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error(f"no such file: '{path}'", None) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read '{path}': {exc}", None) from None
    try:
        tree = ast.parse(text, filename=file)
    except SyntaxError as exc:
        raise _error(f"invalid Python: {exc.msg}", Location(file, exc.lineno or 1, exc.offset or 1)) from None
    values = _assignments(tree)
    if not _defines(tree, FACTORY, values):
        raise _error(
            f"the file defines no {FACTORY}()",
            top,
            "a model file defines build_model() returning the nn.Module (netspec export writes one)",
        )
    if "INPUT_SHAPE" not in values:
        raise _error(
            "the file defines no INPUT_SHAPE",
            top,
            "add `INPUT_SHAPE = (C, H, W)`, the size of one input image, e.g. (3, 224, 224)",
        )
    shape_at = _loc(file, values["INPUT_SHAPE"])
    shape = _literal(values["INPUT_SHAPE"], file, "INPUT_SHAPE")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(d) is int and 0 < d <= 1 << 16 for d in shape)
    ):
        raise _error(
            f"INPUT_SHAPE must be (C, H, W), three positive integers, not {shape!r}",
            shape_at,
            "e.g. (3, 224, 224)",
        )
    recipe_tree: Any = PosDict()
    raw = PosDict()
    if "RECIPE" in values:
        recipe_tree = _literal(values["RECIPE"], file, "RECIPE")
        raw.positions["train"] = _loc(file, values["RECIPE"])
    raw["train"] = recipe_tree
    for text_ in overrides or []:
        parts, value = parse_override(text_)
        if parts[0] != "train" or len(parts) < 2:
            raise _error(
                f"override '{text_}': a model file takes `train.*` overrides only",
                Location(f"<--set {text_}>", 1, 1),
                "the network is the file's code: change it there",
            )
        apply_override(raw, parts, value, text_)
    if not isinstance(raw["train"], dict):
        raise _error("RECIPE must be a dict (the `train:` section)", raw.positions.get("train"))
    recipe = validate_recipe(raw["train"], raw)
    return ModelFile(path, path.stem, (shape[0], shape[1], shape[2]), recipe, raw, shape_at)


def _import(path: Path) -> ModuleType:
    """Execute the file as a module of its own (a name from its absolute path, so two files named
    model.py never share one), with its directory first on sys.path as `python model.py` has it."""
    resolved = path.resolve()
    name = "_netspec_model_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise _error(f"cannot import '{path}'", None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look a module up by name
    sys.path.insert(0, str(resolved.parent))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise _raised(path, exc, "importing the file") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(resolved.parent))
    return module


def _raised(path: Path, exc: BaseException, what: str) -> SpecError:
    """An exception of the user's code, located at the deepest line of `path` it passed through."""
    resolved = str(path.resolve())
    line = 1
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == resolved and frame.lineno:
            line = frame.lineno
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _error(f"{what} raised {detail}", Location(str(path), line, 1))


__all__ = ["ModelFile", "is_model_file", "read_model_file"]
