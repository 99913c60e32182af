"""Naming a model that is not a spec: `torchvision:resnet50`, `timm:convnext_tiny`, `pkg.module:factory`,
or a model file (`lenet5.py`, see netspec/train/pymodel.py).

torchvision and timm models are built with random weights (`weights=None`, `pretrained=False`: nothing
is downloaded) on the meta device (nothing is allocated). `pkg.module:factory` imports the module the
user named (the current directory first on sys.path, as `python -m` has it) and calls `factory()` with
no arguments: like a model file, the one place netspec runs code, and only code the user named. An
exception there is reported at the line of the user's code that raised it.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import Location, Problem, SpecError, did_you_mean
from ..layers.base import Shape
from .trace import user_line

# `source:name`; a source is `torchvision`, `timm` or a dotted module path, a name a model or factory
_REFERENCE = re.compile(r"(?P<source>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<name>[\w.\-]+)")
_NOT_MODELS = frozenset({"zoo"})  # `zoo:resnet50` names a bundled spec
TORCHVISION, TIMM = "torchvision", "timm"
DEFAULT_INPUT: Shape = (3, 224, 224)
MAX_SIDE = 1 << 16


@dataclass
class ForeignModel:
    name: str
    module: nn.Module
    input_shape: Shape  # (C, H, W) the model expects by default


def is_model_reference(text: str) -> bool:
    """Whether a report argument names a model rather than a spec."""
    if text.endswith(".py"):
        return True
    m = _REFERENCE.fullmatch(text)
    if m is None or m["source"] in _NOT_MODELS:
        return False
    with contextlib.suppress(OSError):
        if Path(text).exists():
            return False
    return True


def _error(message: str, hint: str | None = None, where: Location | None = None) -> SpecError:
    return SpecError(Problem(message, location=where, hint=hint))


def load_model(text: str) -> ForeignModel:
    """The module a reference names, and its default input shape. SpecError for anything wrong."""
    if text.endswith(".py"):
        from ..train.pymodel import read_model_file

        mf = read_model_file(text)
        return ForeignModel(mf.name, mf.build(), mf.input_shape)
    m = _REFERENCE.fullmatch(text)
    if m is None:
        raise _error(
            f"'{text}' is not a model reference", "torchvision:NAME, timm:NAME or package.module:factory"
        )
    source, name = m["source"], m["name"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notes on GoogLeNet's init, timm's deprecations
        if source == TORCHVISION:
            return _torchvision(name)
        if source == TIMM:
            return _timm(name)
    return _factory(source, name)


def _torchvision(name: str) -> ForeignModel:
    from torchvision import models

    known = models.list_models()
    if name not in known:
        raise _error(
            f"torchvision has no model '{name}'",
            did_you_mean(name, known) or "see torchvision.models.list_models()",
        )
    size = 224
    with contextlib.suppress(Exception):  # a model without weights keeps 224
        weights = next(iter(models.get_model_weights(name)))
        size = int(weights.transforms.keywords.get("crop_size", size))
    return ForeignModel(
        name, _on_meta(lambda: models.get_model(name, weights=None), f"torchvision:{name}"), (3, size, size)
    )


def _timm(name: str) -> ForeignModel:
    try:
        import timm
    except ImportError:
        raise _error("timm is not installed", "pip install timm") from None
    if not timm.is_model(name):
        known = timm.list_models()
        raise _error(f"timm has no model '{name}'", did_you_mean(name, known) or "see timm.list_models()")
    module = _on_meta(lambda: timm.create_model(name, pretrained=False), f"timm:{name}")
    size = tuple(getattr(module, "pretrained_cfg", {}).get("input_size", DEFAULT_INPUT))
    return ForeignModel(name, module, size if len(size) == 3 else DEFAULT_INPUT)


def _on_meta(build: Callable[[], nn.Module], what: str) -> nn.Module:
    """The model built on the meta device (no memory, no init work); where its constructor needs values
    (a `.tolist()` of a drop-path schedule), built on the CPU instead."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:
        pass
    try:
        return build()
    except Exception as exc:
        raise _error(f"building {what} raised {type(exc).__name__}: {exc}") from None


def _factory(module_name: str, factory: str) -> ForeignModel:
    """Import the user's module and call its factory: the one place netspec runs code here."""
    sys.path.insert(0, str(Path.cwd()))
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise _error(
                    f"no module named '{exc.name}'",
                    "run netspec from the directory that holds it, or install its package",
                ) from None
            raise _error(
                f"importing {module_name} raised {type(exc).__name__}: {exc}", where=user_line(exc)
            ) from None
        except (Exception, SystemExit) as exc:
            raise _error(
                f"importing {module_name} raised {type(exc).__name__}: {exc}", where=user_line(exc)
            ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(Path.cwd()))
    fn = getattr(module, factory, None)
    where = Location(getattr(module, "__file__", None) or module_name, 1, 1)
    if not callable(fn):
        raise _error(f"{module_name} has no function '{factory}'", did_you_mean(factory, dir(module)), where)
    try:
        built = fn()
    except (Exception, SystemExit) as exc:
        raise _error(
            f"{factory}() raised {type(exc).__name__}: {exc}", where=user_line(exc) or where
        ) from None
    if not isinstance(built, nn.Module):
        raise _error(f"{factory}() returned a {type(built).__name__}, not a torch.nn.Module", where=where)
    shape = getattr(module, "INPUT_SHAPE", DEFAULT_INPUT)
    if not (
        isinstance(shape, tuple | list)
        and len(shape) == 3
        and all(type(d) is int and 0 < d <= MAX_SIDE for d in shape)
    ):
        raise _error(f"{module_name}.INPUT_SHAPE must be (C, H, W), three positive integers", where=where)
    return ForeignModel(f"{module_name}:{factory}", built, tuple(shape))


def input_shape(text: str | None, default: Shape) -> Shape:
    """`--input` for a model: `224`, `160x192` or `3x224x224`; the model's own shape without it."""
    if not text:
        return default
    try:
        dims = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise _error(f"--input '{text}' is not a size", "use 224, 160x192 or 3x224x224") from None
    if len(dims) not in (1, 2, 3) or min(dims) < 1 or max(dims) > MAX_SIDE:
        raise _error(f"--input '{text}' must be 1 to 3 positive sizes, each at most {MAX_SIDE}")
    if len(dims) == 1:
        dims = dims * 2
    return tuple(dims) if len(dims) == 3 else (default[0], *dims)
