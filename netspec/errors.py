"""The one error family users see: every mistake carries file, line, column and spec path."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Problem:
    """One thing wrong with a spec."""

    message: str
    path: Path = ()
    location: Location | None = None
    hint: str | None = None

    def format(self) -> str:
        where = f"{self.location}: " if self.location else ""
        dotted = format_path(self.path)
        text = f"{where}{dotted + ': ' if dotted else ''}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


def format_path(path: Path) -> str:
    return ".".join(str(p) for p in path)


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


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelled key or kind, or None."""
    matches = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
