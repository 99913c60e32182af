"""Names in the generated file: class names, argument names, attributes, and paths to submodules."""

from __future__ import annotations

import builtins
import keyword
import re

from ..layers.base import IDENTIFIER, module_name_problem
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


def is_attribute(name: str) -> bool:
    """A name the file can write as an attribute (`self.conv1`): an ASCII identifier, so no keyword
    and nothing Python's NFKC normalisation of identifiers would change (`self.ﬁ` is `self.fi`)."""
    return bool(IDENTIFIER.fullmatch(name)) and not keyword.iskeyword(name)


def attr(name: str) -> str:
    """A module name from the IR, checked again (netspec validated it) before code is written with it."""
    problem = module_name_problem(name) if isinstance(name, str) else "not text"
    if problem is not None:
        raise ExportError(f"{name!r} cannot name a module: {problem}")
    return name


def child(name: str) -> str:
    """A child name inside an nn.Sequential (always written as a string literal), checked again."""
    return attr(name)


def component(name: str) -> str:
    """A module name as a string literal (for add_module and getattr), checked again."""
    return ascii(attr(name))


def member(base: str, name: str) -> str:
    """Code for the submodule `name` of `base`: an attribute, or getattr where the name is not one."""
    return f"{base}.{name}" if is_attribute(name) else f"getattr({base}, {component(name)})"


def assign(base: str, name: str, code: str) -> str:
    """Code that makes `code` the submodule `name` of `base`: `base.name = code`, or add_module."""
    if is_attribute(name):
        return f"{base}.{name} = {code}"
    return f"{base}.add_module({component(name)}, {code})"


def path_expr(base: str, path: str, sequentials: frozenset[str] | None = None, at: str = "") -> str:
    """Code for the submodule at a dotted path: `self.layer1[0].conv1`. `sequentials`: the paths of the
    nn.Sequentials whose children are numbered 0, 1, 2 (`at` is the path of `base`): those children are
    indexed; any other child whose name is not an attribute (a holder's `3`, `block1-0`, `a b`) is read
    with getattr."""
    code = base
    parent = at
    for part in path.split(".") if path else []:
        indexed = sequentials is None or parent in sequentials
        code = f"{code}[{part}]" if indexed and part.isdigit() and part.isascii() else member(code, part)
        parent = f"{parent}.{part}" if parent else part
    return code
