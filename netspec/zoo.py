"""The bundled model zoo: specs shipped in `specs/` (also packaged into the wheel).

A zoo spec is named three ways: a bare name on the command line (`netspec report resnet50`), and
`zoo:NAME` anywhere, in particular in `extends: zoo:resnet50`, which finds the spec inside the
installed package wherever that is (a relative path into the install would break with every move).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ZOO_PREFIX = "zoo:"
_ZOO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # a file stem: no slash, no leading dot
MAX_COMPLETIONS = 200  # a directory of thousands of files must not flood the shell


def zoo_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "specs"
    if checkout.is_dir():
        return checkout
    # an installed wheel: setuptools maps specs/ to the package directory netspec/zoo_specs
    return Path(__file__).resolve().parent / "zoo_specs"


def zoo_specs() -> list[Path]:
    return sorted(zoo_dir().glob("*.yaml"))


def zoo_names() -> list[str]:
    return [p.stem for p in zoo_specs()]


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system: reading it reports that, located
        return False


def zoo_spec(name: str) -> Path | None:
    """The zoo spec called `name` (`resnet50`, not a path), or None when there is none."""
    if not _ZOO_NAME.fullmatch(name):
        return None
    candidate = zoo_dir() / f"{name}.yaml"
    return candidate if _exists(candidate) else None


def is_zoo_spec(path: Path) -> bool:
    """Whether `path` is one of the bundled specs (however it was spelled)."""
    try:
        return path.resolve().parent == zoo_dir().resolve() and zoo_spec(path.stem) is not None
    except OSError:
        return False


def find_spec(name_or_path: str) -> Path:
    """A path as given, or a zoo spec by name (`resnet50` or `zoo:resnet50` -> specs/resnet50.yaml)."""
    if name_or_path.startswith(ZOO_PREFIX):
        found = zoo_spec(name_or_path[len(ZOO_PREFIX) :])
        return found if found is not None else Path(name_or_path)
    p = Path(name_or_path)
    if _exists(p) or p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return p
    candidate = zoo_dir() / f"{name_or_path}.yaml"
    return candidate if _exists(candidate) else p


def complete_spec(incomplete: str) -> list[tuple[str, str]]:
    """Shell completions of a SPEC argument: the zoo names (also as `zoo:NAME`), then spec and model
    files (`.yaml`, `.yml`, `.py`) and directories on the path typed so far."""
    out: list[tuple[str, str]] = []
    if "/" not in incomplete:
        prefix = ZOO_PREFIX if incomplete.startswith(ZOO_PREFIX) else ""
        out += [(prefix + n, "zoo spec") for n in zoo_names() if (prefix + n).startswith(incomplete)]
    folder, _, start = incomplete.rpartition("/")
    directory = (folder or "/") if incomplete.startswith("/") else (folder or ".")
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if len(out) >= MAX_COMPLETIONS:
                break
            if not entry.name.startswith(start) or (entry.name.startswith(".") and not start):
                continue
            shown = f"{folder}/{entry.name}" if folder or incomplete.startswith("/") else entry.name
            if entry.is_dir():
                out.append((shown + "/", "directory"))
            elif entry.name.endswith((".yaml", ".yml", ".py")):
                out.append((shown, "file"))
    except OSError:  # a folder that is not there (yet) or cannot be read: nothing to offer from it
        pass
    return out
