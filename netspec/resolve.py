"""Resolution: `extends`, command-line overrides and tricks turn files into one raw spec tree."""

from __future__ import annotations

import os
import re
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import Location, Problem, SpecError, SpecSyntaxError, clean_pydantic_errors, did_you_mean
from .source import (
    MAX_DEPTH,
    PosDict,
    PosList,
    ReadBudget,
    abbreviated,
    locate,
    locate_key,
    parse_yaml,
    read_spec_file,
)
from .spec import Limits, Spec, apply_caps
from .zoo import ZOO_PREFIX, zoo_names, zoo_spec

MAX_EXTENDS_DEPTH = 16


def merge_trees(base: Any, over: Any) -> Any:
    """Deep-merge `over` onto `base`: mappings merge key by key, anything else is replaced."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = PosDict()
    out.location = getattr(over, "location", None) or getattr(base, "location", None)
    for source in (base, over):
        for key, value in source.items():
            out[key] = merge_trees(out[key], value) if key in out and source is over else value
            pos = getattr(source, "positions", {}).get(key)
            if pos is not None:
                out.positions[key] = pos
            key_pos = getattr(source, "key_positions", {}).get(key)
            if key_pos is not None:
                out.key_positions[key] = key_pos
    return out


def read_with_extends(path: str | FsPath) -> Any:
    """Read a spec file and everything it extends, with cycle, depth and size checks."""
    return _read_chain(os.fspath(path), None, [], ReadBudget())


def _read_chain(
    path: str, named_at: Location | None, chain: list[tuple[tuple[int, int], str]], budget: ReadBudget
) -> Any:
    """`path` and its parents; `chain` holds the files that extend it (identity, name), child first.

    A cycle is found by file identity (device, inode), so `./a.yaml`, `../dir/a.yaml` and a symlink
    to a.yaml are all the same file. The chain together is held to one file's size limits."""
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecSyntaxError(
            Problem(f"`extends` is nested more than {MAX_EXTENDS_DEPTH} deep", ("extends",), named_at)
        )
    file = read_spec_file(path, named_at, ("extends",) if chain else ())
    if any(identity == file.identity for identity, _ in chain):
        names = [name for _, name in chain] + [path]
        cycle = " -> ".join(FsPath(p).name for p in names)
        raise SpecSyntaxError(Problem(f"`extends` forms a cycle: {cycle}", ("extends",), named_at))
    budget.charge_bytes(len(file.text.encode("utf-8")), file.name)
    tree = parse_yaml(file.text, file.name, budget)
    if tree is None:  # a document with no content (`---`, `~`)
        raise SpecSyntaxError(Problem("file is empty", location=Location(path, 1, 1), hint="write a spec"))
    if not isinstance(tree, PosDict):  # the YAML reader's mapping
        raise SpecSyntaxError(
            Problem(
                f"a spec is a mapping of fields (name, input, stem, ...), not a {_kind(tree)}",
                location=getattr(tree, "location", None) or Location(path, 1, 1),
            )
        )
    if "extends" not in tree or tree["extends"] is None:
        return tree
    where = locate(tree, ("extends",))
    base = _read_chain(
        _parent_path(tree["extends"], path, where), where, [*chain, (file.identity, path)], budget
    )
    own = PosDict({k: v for k, v in tree.items() if k != "extends"})
    own.positions = {k: v for k, v in tree.positions.items() if k != "extends"}
    own.key_positions = {k: v for k, v in tree.key_positions.items() if k != "extends"}
    own.location = tree.location
    return merge_trees(base, own)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _parent_path(parent: Any, child: str, where: Location | None) -> str:
    """The file an `extends:` value names: `zoo:NAME`, a spec of the installed package's zoo, or a
    local path, relative to the real directory of the child (so a symlinked spec still finds its zoo
    parents). `~` is not expanded; nothing is downloaded. The file is then read like any other."""
    if not isinstance(parent, str) or not parent.strip():
        what = "an empty text" if isinstance(parent, str) else f"a {_kind(parent)}"
        raise SpecSyntaxError(
            Problem(
                f"`extends` takes one file path, not {what}",
                ("extends",),
                where,
                "e.g. `extends: zoo:resnet50`, or a file path relative to this one",
            )
        )
    if parent.startswith(ZOO_PREFIX):
        return _zoo_parent(parent[len(ZOO_PREFIX) :], where)
    if _URL.match(parent):
        raise SpecSyntaxError(
            Problem(
                "`extends` takes a local file path, not a URL",
                ("extends",),
                where,
                "netspec never downloads a spec; save it next to this one",
            )
        )
    if parent.startswith("~"):
        raise SpecSyntaxError(
            Problem(
                "`extends` does not expand `~`",
                ("extends",),
                where,
                "write the path relative to this file, or an absolute path",
            )
        )
    # the child was just read, so its path is valid; realpath does not raise on a missing part or a loop
    return os.path.join(os.path.dirname(os.path.realpath(child)), parent)


def _zoo_parent(name: str, where: Location | None) -> str:
    found = zoo_spec(name)
    if found is None:
        names = zoo_names()
        guess = did_you_mean(ZOO_PREFIX + name, [ZOO_PREFIX + n for n in names])
        shown = abbreviated(name, 60)
        raise SpecSyntaxError(
            Problem(
                f"no zoo spec '{shown}'",
                ("extends",),
                where,
                guess or "the zoo: " + ", ".join(names),
            )
        )
    return os.fspath(found)


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


_INDEX = re.compile(r"-?[0-9]{1,18}")  # ASCII only: '²'.isdigit() is true, and int('²') fails


def override_source(text: str) -> str:
    """The name problems with an override are located at: `<--set TEXT>` (a long TEXT shortened)."""
    return f"<--set {abbreviated(text, 200)}>"


def _override_error(text: str, message: str, hint: str | None = None) -> SpecSyntaxError:
    return SpecSyntaxError(Problem(message, location=Location(override_source(text), 1, 1), hint=hint))


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`stages.2.depth=8` -> (['stages', 2, 'depth'], 8). The value is YAML (safe).

    Every problem is located at `<--set TEXT>`, a problem in the value at the value's column."""
    if "=" not in text:
        raise _override_error(text, "an override has the form PATH=VALUE", hint="e.g. --set stages.2.depth=8")
    key, raw = text.split("=", 1)
    if key.count(".") >= MAX_DEPTH:  # checked before splitting: the path is as deep as a YAML document may be
        raise _override_error(text, f"the override path is nested deeper than {MAX_DEPTH} levels")
    segments = key.strip().split(".")
    if any(not s for s in segments):
        raise _override_error(
            text, "the override path has an empty path segment", hint="e.g. --set stages.2.depth=8"
        )
    parts: list[str | int] = [int(s) if _INDEX.fullmatch(s) else s for s in segments]
    value_col = len(key) + 2
    try:
        value = parse_yaml(raw, override_source(text)) if raw.strip() else None
    except SpecError as exc:  # the value's own positions count from its first character
        for p in exc.problems:
            if p.location is not None and p.location.line == 1:
                p.location = Location(p.location.file, 1, p.location.col + value_col - 1)
        raise
    if isinstance(value, (PosDict, PosList)):
        _relocate(value, Location(override_source(text), 1, value_col))
    return parts, value


def _relocate(tree: Any, loc: Location) -> None:
    if isinstance(tree, (PosDict, PosList)):
        tree.location = loc
        for k in list(tree.positions):
            tree.positions[k] = loc
        for v in tree.values() if isinstance(tree, dict) else tree:
            _relocate(v, loc)


def apply_override(tree: Any, parts: list[str | int], value: Any, text: str) -> None:
    """Set `value` at `parts` inside `tree`, creating missing mappings on the way."""
    loc = Location(override_source(text), 1, len(text.split("=", 1)[0]) + 2)

    def here(i: int) -> str:  # only built for a message: joining every prefix would be quadratic
        return ".".join(map(str, parts[: i + 1]))

    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise _override_error(text, f"'{here(i)}' is not an index of a list of {len(node)}")
            part %= len(node)
        elif isinstance(node, dict):
            if isinstance(part, int):
                part = str(part)
            if part not in node and not last:
                node[part] = PosDict()
                node[part].location = loc
        else:
            raise _override_error(text, f"'{here(i)}' goes inside a {_kind(node)}, which has no fields")
        if last:
            node[part] = value
        positions = getattr(node, "positions", None)
        if positions is not None and (last or part not in positions):
            positions[part] = loc
        node = node[part]


def validate(tree: Any, file: str | None) -> Spec:
    try:
        spec = Spec.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for loc, err in clean_pydantic_errors(exc.errors()):
            msg, hint = err["msg"], None
            where = locate(tree, loc)
            if err["type"] == "extra_forbidden" and loc:
                msg = f"unknown field '{loc[-1]}'"
                hint = _field_hint(loc)
                where = locate_key(tree, loc)
            elif err["type"] == "missing" and loc:
                msg = f"missing required field '{loc[-1]}'"
            elif "input" in err and not isinstance(err["input"], (dict, list)):
                msg = f"{msg} (got {abbreviated(repr(err['input']), 60)})"
            problems.append(Problem(msg, loc, where, hint))
        raise SpecError(_dedupe(problems)) from None
    spec._raw = tree
    spec._file = file
    return spec


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _field_hint(loc: tuple[Any, ...]) -> str | None:
    """'did you mean' against the fields of the model that owns loc[-1]."""
    from .spec import BlockDef, InitSpec, InputSpec, Limits

    owners: dict[str, type[BaseModel]] = {"input": InputSpec, "init": InitSpec, "limits": Limits}
    model: type[BaseModel] = Spec
    if len(loc) >= 3 and loc[0] == "blocks":
        model = BlockDef
    elif len(loc) >= 2 and loc[0] in owners:
        model = owners[loc[0]]
    return did_you_mean(str(loc[-1]), model.model_fields)


def resolve_tree(path: str | FsPath, overrides: list[str] | None = None) -> Any:
    from .tricks import apply_tricks

    tree = read_with_extends(path)
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(tree, parts, value, text)
    return apply_tricks(tree)


def load_spec(
    path: str | FsPath, overrides: list[str] | None = None, *, limits: Limits | None = None
) -> Spec:
    """Read, resolve and validate a spec file. Raises SpecError (with file:line:col) on any problem.
    `limits`: the safety caps (default: Limits()); the spec's own `limits:` may only lower them."""
    tree = resolve_tree(path, overrides)
    return apply_caps(validate(tree, str(path)), limits)


def loads_spec(
    text: str, name: str = "<string>", overrides: list[str] | None = None, *, limits: Limits | None = None
) -> Spec:
    """Like load_spec, from YAML text (no `extends`)."""
    from .tricks import apply_tricks

    tree = parse_yaml(text, name)
    if tree is None:
        raise SpecSyntaxError(Problem("file is empty", location=Location(name, 1, 1), hint="write a spec"))
    if not isinstance(tree, dict):
        raise SpecSyntaxError(
            Problem(
                f"a spec is a mapping of fields (name, input, stem, ...), not a {_kind(tree)}",
                location=getattr(tree, "location", None) or Location(name, 1, 1),
            )
        )
    if "extends" in tree:
        raise SpecSyntaxError(
            Problem(
                "`extends` needs a spec file, not a string",
                ("extends",),
                locate(tree, ("extends",)),
                "load the spec with load_spec(path)",
            )
        )
    for text_ in overrides or []:
        parts, value = parse_override(text_)
        apply_override(tree, parts, value, text_)
    return apply_caps(validate(apply_tricks(tree), name), limits)


def resolved_spec_text(spec: Spec, input_size: int | tuple[int, int] | None = None) -> str:
    """The spec after `extends`, overrides and tricks, as standalone YAML that `loads_spec` reads back
    to the same network (checked: same analysis, layer by layer).

    The tricks are already applied to the fields, so `tricks:` is dropped (applying resnet_c twice
    would fail) and named in a comment. An `input_size` given here replaces the spec's input size.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=False, exclude_defaults=True)
    tricks = data.pop("tricks", None) or []
    if size is not None:
        data.setdefault("input", {})["size"] = [size[0], size[1]]
    from ._version import __version__
    from .analysis import analyze

    header = f"# {spec.name}: resolved by netspec {__version__}"
    if spec.file:
        header += f" from {FsPath(spec.file).name}"
    if tricks:
        header += f"\n# tricks already applied: {', '.join(tricks)}"
    text = header + "\n" + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)
    again = loads_spec(text, f"<resolved {spec.name}>", limits=spec.caps)
    if analyze(again).to_json() != analyze(spec, size).to_json():
        raise SpecError(
            Problem(
                f"the resolved text of spec '{spec.name}' does not describe the same network",
                hint="this is a bug in netspec; please report it with the spec",
            )
        )
    return text
