"""The one error family users see: every mistake carries file, line, column and spec path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]

# Characters that would act on a terminal instead of showing: C0/C1 controls (ESC sequences, BEL,
# a newline or carriage return that forges an `ok` line), line separators and bidi overrides.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\n`, `\\u202e`): what a
    spec, a file name or a checkpoint says reaches the terminal as text, never as a command. With a
    `limit`, cut to that many characters (a checkpoint key or a value can be a megabyte long)."""
    shown = _UNPRINTABLE.sub(_escape, text)
    return shown if limit is None or len(shown) <= limit else shown[: limit - 3] + "..."


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{printable(self.file)}:{self.line}:{self.col}"


@dataclass
class Problem:
    """One thing wrong with a spec."""

    message: str
    path: Path = ()
    location: Location | None = None
    hint: str | None = None

    def format(self) -> str:
        """One line, `FILE:LINE:COL: path: message (hint)`, with control characters escaped."""
        where = f"{self.location}: " if self.location else ""
        dotted = format_path(self.path)
        text = f"{where}{dotted + ': ' if dotted else ''}{printable(self.message)}"
        if self.hint:
            text += f" ({printable(self.hint)})"
        return text


def format_path(path: Path) -> str:
    return printable(".".join(str(p) for p in path))


class SpecError(Exception):
    """Anything a user can get wrong in a spec. Holds every problem found, not only the first."""

    def __init__(self, problems: Problem | str | Sequence[Problem], *, path: Path = ()):
        if isinstance(problems, str):
            problems = [Problem(problems, path)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)

    def __str__(self) -> str:
        return self.format()


class SpecSyntaxError(SpecError):
    """The file is not readable YAML (or not a file at all)."""


class SpecShapeError(SpecError):
    """The spec is well-formed but describes impossible tensor shapes."""


class SpecSizeError(SpecError):
    """The spec (or file) is too large to process safely."""


_TYPE_TAGS = frozenset({"int", "float", "bool", "str", "none", "list", "dict", "tuple"})


def _is_tag(part: object) -> bool:
    """A location part pydantic adds for a union member or a validator, not a field of the spec."""
    return isinstance(part, str) and (
        "[" in part or part.startswith(("function-", "constrained-")) or part in _TYPE_TAGS
    )


def _substantive(err: Mapping[str, Any]) -> bool:
    """An error about the value itself, not about its type not matching one union member."""
    kind = str(err.get("type", ""))
    return not (kind.endswith(("_type", "_parsing")) or kind == "literal_error")


def clean_pydantic_errors(errors: Sequence[Mapping[str, Any]]) -> list[tuple[Path, Mapping[str, Any]]]:
    """pydantic's errors as (spec path, error): union-member tags are dropped from the paths and, of a
    union's members, only the one that fits the value best is kept, so one mistake gives one line
    (`stride: 0` says "must be >= 1", not that as well as "should be a valid tuple")."""
    kept: list[tuple[int, Path, Mapping[str, Any]]] = []
    unions: dict[Path, dict[str, list[tuple[int, Path, Mapping[str, Any], int]]]] = {}
    for i, err in enumerate(errors):
        loc = tuple(err.get("loc", ()))
        clean = tuple(p for p in loc if not _is_tag(p))
        cut = next((j for j, p in enumerate(loc) if _is_tag(p)), None)
        if cut is None:
            kept.append((i, clean, err))
        else:
            member = unions.setdefault(loc[:cut], {}).setdefault(str(loc[cut]), [])
            member.append((i, clean, err, len(loc) - cut))

    def fit(errs: list[tuple[int, Path, Mapping[str, Any], int]]) -> tuple[bool, int]:
        return (any(_substantive(e) for _, _, e, _ in errs), max(d for *_, d in errs))

    for members in unions.values():
        best = max(members.values(), key=fit)  # the first of equally good members
        kept += [(i, clean, err) for i, clean, err, _ in best]
    return [(clean, err) for _, clean, err in sorted(kept, key=lambda t: t[0])]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelled key or kind, or None."""
    matches = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
