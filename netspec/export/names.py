"""Names in the generated file: class names, argument names, attributes, and paths to submodules."""

from __future__ import annotations

import builtins
import keyword
import re

from ..layers.base import CHILD_NAME, IDENTIFIER
from .errors import ExportError

# the generated forward's name for the shortcut's value, as torchvision's blocks write it
SHORTCUT_VAR = "identity"
# names the generated code uses (or Python reserves): never a class, argument or variable name
RESERVED = frozenset(
    {
        *keyword.kwlist,
        *keyword.softkwlist,
        *dir(builtins),
        "torch",
        "nn",
        "F",
        "Tensor",
        "OrderedDict",  # imported by files whose network returns named outputs
        "self",
        "x",
        "out",
        SHORTCUT_VAR,
        "aux",
        "i",
        "model",
        "build_model",
        "num_classes",
        "_sequential",
        "kwargs",
    }
)


def camel(name: str, fallback: str) -> str:
    """`inverted_residual` -> `InvertedResidual`: a class name that cannot shadow anything."""
    parts = re.findall(r"[A-Za-z0-9]+", name)
    text = "".join(p[0].upper() + p[1:] for p in parts)
    if not text or not text[0].isalpha():
        text = fallback + text
    text = text[:64]
    if not IDENTIFIER.fullmatch(text) or "_" in text:  # cannot happen with the pattern above
        text = fallback
    if text in RESERVED:
        text += fallback
    return text


def param_name(candidate: str | None) -> str | None:
    """An argument name from a hint, or None when it is not a plain safe lowercase identifier."""
    if not candidate:
        return None
    name = candidate.lower()
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name) or name.startswith("__"):
        return None
    if name in RESERVED or name in ("l", "_") or re.fullmatch(r"layers\d*", name):
        return None
    return name


def attr(name: str) -> str:
    """A module name from the IR, used as an attribute: netspec validated it; check it again."""
    if not IDENTIFIER.fullmatch(name) or keyword.iskeyword(name):
        raise ExportError(f"{name!r} is not a valid attribute name")
    return name


def child(name: str) -> str:
    """A child name inside an nn.Sequential (always written as text): a number, a valid attribute name,
    or a name with '-' (`block1-0`)."""
    if (name.isdigit() and name.isascii() and len(name) < 10) or ("-" in name and CHILD_NAME.fullmatch(name)):
        return name
    return attr(name)


# a component of a dotted module name in a graph list (`fpn.inner_blocks.3.0`), as netspec validates it
COMPONENT = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def is_attribute(name: str) -> bool:
    return bool(IDENTIFIER.fullmatch(name)) and not keyword.iskeyword(name)


def component(name: str) -> str:
    """A module name as a string literal (for add_module and getattr), checked again."""
    if not COMPONENT.fullmatch(name):
        raise ExportError(f"{name!r} is not a valid module name")
    return ascii(name)


def member(base: str, name: str) -> str:
    """Code for the submodule `name` of `base`: an attribute, or getattr where the name is not one."""
    return f"{base}.{name}" if is_attribute(name) else f"getattr({base}, {component(name)})"


def path_expr(base: str, path: str, sequentials: frozenset[str] | None = None, at: str = "") -> str:
    """Code for the submodule at a dotted path: `self.layer1[0].conv1`. `sequentials`: the paths of the
    nn.Sequentials (`at` is the path of `base`), whose numbered children are indexed; any other child
    whose name is not an identifier (a holder's `3`, `block1-0`) is read with getattr."""
    code = base
    parent = at
    for part in path.split(".") if path else []:
        indexed = sequentials is None or parent in sequentials
        code = f"{code}[{part}]" if indexed and child(part).isdigit() else member(code, part)
        parent = f"{parent}.{part}" if parent else part
    return code
