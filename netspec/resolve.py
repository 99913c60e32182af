"""Resolution: `extends`, command-line overrides and tricks turn files into one raw spec tree."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import Location, Problem, SpecError, SpecSyntaxError, clean_pydantic_errors, did_you_mean
from .source import PosDict, PosList, locate, locate_key, parse_yaml, read_yaml_file
from .spec import Spec

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


def read_with_extends(path: str | FsPath, chain: tuple[str, ...] = ()) -> Any:
    """Read a spec file and everything it extends, with cycle and depth checks."""
    resolved = str(FsPath(path).resolve())
    if resolved in chain:
        cycle = " -> ".join(FsPath(p).name for p in (*chain, resolved))
        raise SpecSyntaxError(Problem(f"`extends` forms a cycle: {cycle}", ("extends",)))
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecSyntaxError(Problem(f"`extends` is nested more than {MAX_EXTENDS_DEPTH} deep"))
    tree = read_yaml_file(path)
    if tree is None:  # a document with no content (`---`, `~`)
        raise SpecSyntaxError(
            Problem("file is empty", location=Location(str(path), 1, 1), hint="write a spec")
        )
    if not isinstance(tree, PosDict):  # the YAML reader's mapping
        raise SpecSyntaxError(
            Problem(
                f"a spec is a mapping of fields (name, input, stem, ...), not a {_kind(tree)}",
                location=getattr(tree, "location", None) or Location(str(path), 1, 1),
            )
        )
    parent = tree.get("extends")
    if parent is None:
        return tree
    if not isinstance(parent, str):
        raise SpecSyntaxError(
            Problem("`extends` takes a file path", ("extends",), locate(tree, ("extends",)))
        )
    parent_path = (FsPath(path).parent / parent).resolve()
    try:
        base = read_with_extends(parent_path, (*chain, resolved))
    except SpecError as exc:
        if any(p.location is None for p in exc.problems):
            for p in exc.problems:
                p.location = p.location or locate(tree, ("extends",))
        raise
    own = PosDict({k: v for k, v in tree.items() if k != "extends"})
    own.positions = {k: v for k, v in tree.positions.items() if k != "extends"}
    own.key_positions = {k: v for k, v in tree.key_positions.items() if k != "extends"}
    own.location = tree.location
    return merge_trees(base, own)


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`stages.2.depth=8` -> (['stages', 2, 'depth'], 8). The value is YAML (safe)."""
    where = f"<--set {text}>"
    if "=" not in text:
        raise SpecSyntaxError(Problem(f"override '{text}' needs the form PATH=VALUE, e.g. stages.2.depth=8"))
    key, raw = text.split("=", 1)
    parts: list[str | int] = [int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split(".")]
    if not key.strip() or any(p == "" for p in parts):
        raise SpecSyntaxError(Problem(f"override '{text}' has an empty path segment"))
    value = parse_yaml(raw, where) if raw.strip() else None
    if isinstance(value, (PosDict, PosList)):
        _relocate(value, Location(where, 1, len(key) + 2))
    return parts, value


def _relocate(tree: Any, loc: Location) -> None:
    if isinstance(tree, (PosDict, PosList)):
        tree.location = loc
        for k in list(tree.positions):
            tree.positions[k] = loc
        for v in tree.values() if isinstance(tree, dict) else tree:
            _relocate(v, loc)


def apply_override(tree: Any, parts: list[str | int], value: Any, text: str) -> None:
    loc = Location(f"<--set {text}>", 1, 1)
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(map(str, parts[: i + 1]))
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise SpecSyntaxError(
                    Problem(f"override '{text}': '{here}' is not an index of a list of {len(node)}")
                )
        elif isinstance(node, dict):
            if isinstance(part, int):
                part = str(part)
            if part not in node and not last:
                node[part] = PosDict()
                if isinstance(node, PosDict):
                    node.positions[part] = loc
        else:
            raise SpecSyntaxError(
                Problem(f"override '{text}': '{here}' goes inside a {_kind(node)}, which has no fields")
            )
        if last:
            node[part] = value
            positions = getattr(node, "positions", None)
            if positions is not None:
                positions[part if not isinstance(node, list) else part % len(node)] = loc
        else:
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
                msg = f"{msg} (got {err['input']!r})"
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


def load_spec(path: str | FsPath, overrides: list[str] | None = None) -> Spec:
    """Read, resolve and validate a spec file. Raises SpecError (with file:line:col) on any problem."""
    tree = resolve_tree(path, overrides)
    return validate(tree, str(path))


def loads_spec(text: str, name: str = "<string>", overrides: list[str] | None = None) -> Spec:
    """Like load_spec, from YAML text (no `extends`)."""
    from .tricks import apply_tricks

    tree = parse_yaml(text, name)
    if tree is None:
        raise SpecSyntaxError(Problem("file is empty", location=Location(name, 1, 1), hint="write a spec"))
    if not isinstance(tree, dict):
        raise SpecSyntaxError(Problem(f"a spec is a mapping of fields, not a {_kind(tree)}"))
    if "extends" in tree:
        raise SpecSyntaxError(Problem("`extends` needs a spec file, not a string", ("extends",)))
    for text_ in overrides or []:
        parts, value = parse_override(text_)
        apply_override(tree, parts, value, text_)
    return validate(apply_tricks(tree), name)


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
    again = loads_spec(text, f"<resolved {spec.name}>")
    if analyze(again).to_json() != analyze(spec, size).to_json():
        raise SpecError(
            Problem(
                f"the resolved text of spec '{spec.name}' does not describe the same network",
                hint="this is a bug in netspec; please report it with the spec",
            )
        )
    return text
