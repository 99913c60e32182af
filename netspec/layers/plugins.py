"""Plug-in layer kinds: third-party packages register LayerKinds through the `netspec.layers` entry point
group, with no edit to netspec.

    # the plug-in package's pyproject.toml
    [project.entry-points."netspec.layers"]
    shift = "my_package.layers:Shift"   # a LayerKind subclass or instance

`NETSPEC_PLUGINS=my_package.layers:Shift,...` adds entry points without installing a package
(handy while writing one). Plug-ins are loaded once, lazily, the first time the registry (`KINDS`) is
read, so `import netspec` stays fast and imports no plug-in. A plug-in that fails to import or is not a
valid LayerKind is skipped with a one-line PluginWarning naming its entry point; a plug-in whose name
is already taken (by a built-in kind or another plug-in) is a PluginError naming both packages.
"""

from __future__ import annotations

import inspect
import keyword
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from .base import IDENTIFIER, LayerKind, LayerParams
from .composites import RESERVED_KINDS

GROUP = "netspec.layers"
ENV_VAR = "NETSPEC_PLUGINS"


class PluginWarning(UserWarning):
    """A plug-in layer kind could not be loaded and was skipped."""


class PluginError(RuntimeError):
    """Two layer kinds claim the same name (a plug-in and a built-in kind, or two plug-ins)."""


def _identifier(value: Any) -> bool:
    return isinstance(value, str) and bool(IDENTIFIER.fullmatch(value)) and not keyword.iskeyword(value)


def _package(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        try:
            return f"{dist.metadata['Name']} {dist.version}"
        except Exception:  # a distribution with broken metadata still names its entry point
            pass
    return f"module {ep.value.split(':')[0].strip()}"


def _entry_points() -> list[Any]:
    from importlib.metadata import EntryPoint, entry_points

    found = list(entry_points(group=GROUP))
    for value in os.environ.get(ENV_VAR, "").split(","):
        value = value.strip()
        if value:
            name = value.rpartition(":")[2] or value
            found.append(EntryPoint(name=name, value=value, group=GROUP))
    return found


def validate(obj: Any) -> LayerKind:
    """The LayerKind an entry point resolves to (an instance, or a subclass to instantiate), checked;
    raises TypeError/ValueError with a short reason."""
    if isinstance(obj, type) and issubclass(obj, LayerKind):
        obj = obj()
    if not isinstance(obj, LayerKind):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise TypeError(f"it is {what}, not a netspec.layers.LayerKind (or a subclass of it)")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not _identifier(name) or name.startswith("_"):
        raise ValueError(f"its name {name!r} is not an identifier")
    params = getattr(obj, "Params", None)
    if not (isinstance(params, type) and issubclass(params, LayerParams)):
        raise TypeError(f"kind '{name}': Params must be a subclass of netspec.layers.LayerParams")
    if not _identifier(getattr(obj, "prefix", None)):
        raise ValueError(f"kind '{name}': prefix {getattr(obj, 'prefix', None)!r} is not an identifier")
    shorthand = getattr(obj, "shorthand", None)
    if shorthand is not None and shorthand not in params.model_fields:
        raise ValueError(f"kind '{name}': shorthand {shorthand!r} is not a field of its Params")
    if not isinstance(getattr(obj, "doc", ""), str):
        raise TypeError(f"kind '{name}': doc must be a string")
    source = inspect.getattr_static(obj, "module_source", None)  # a property is read by export only
    if source is not None and not isinstance(source, str | property):
        raise TypeError(f"kind '{name}': module_source must be a string (Python source of one class)")
    return obj


def load_plugins(registry: dict[str, LayerKind], entry_points: Iterable[Any] | None = None) -> list[str]:
    """Add the plug-in kinds to `registry` (a plain dict view of the built-ins); returns their names."""
    eps = _entry_points() if entry_points is None else list(entry_points)
    added: dict[str, str] = {}  # kind name -> the package that registered it
    for ep in eps:
        where = f"entry point '{ep.name} = {ep.value}' ({_package(ep)})"
        try:
            kind = validate(ep.load())
        except Exception as exc:  # an import error, a wrong type: skip the plug-in, never a traceback
            reason = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, TypeError | ValueError) else str(exc)
            )
            reason = " ".join(reason.split())
            warnings.warn(f"netspec plug-in {where} skipped: {reason}", PluginWarning, stacklevel=2)
            continue
        if kind.name in added:
            raise PluginError(
                f"layer kind '{kind.name}' is registered twice: by {added[kind.name]} and by {where}"
            )
        if kind.name in registry or kind.name in RESERVED_KINDS:
            raise PluginError(
                f"layer kind '{kind.name}' of {where} clashes with the built-in kind '{kind.name}' (netspec)"
            )
        added[kind.name] = where
        registry[kind.name] = kind
    return list(added)


class Registry(dict):
    """The layer-kind registry: a dict of the built-in kinds that adds the plug-ins the first time it
    is read (any read: lookup, membership, iteration), so every reader sees them."""

    def __init__(self, kinds: Iterable[LayerKind]):
        super().__init__((k.name, k) for k in kinds)
        self._loaded = False
        self._plugins: list[str] = []

    def load(self, entry_points: Iterable[Any] | None = None) -> None:
        """(Re)load the plug-ins: once on first use, or again (tests) with the given entry points."""
        for name in self._plugins:
            dict.pop(self, name, None)
        self._plugins = []
        self._loaded = True  # before loading: a plug-in that reads KINDS while loading sees the built-ins
        staged: dict[str, LayerKind] = dict(dict.items(self))
        names = load_plugins(staged, entry_points)
        for name in names:
            dict.__setitem__(self, name, staged[name])
        self._plugins = names
        self.__class__ = _LoadedRegistry  # from now on every read is a plain dict read

    def _ready(self) -> None:
        if not self._loaded:
            self.load()

    @property
    def plugins(self) -> list[str]:
        self._ready()
        return list(self._plugins)

    def __getitem__(self, key: str) -> LayerKind:
        self._ready()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._ready()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self._ready()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._ready()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._ready()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._ready()
        return dict.keys(self)

    def values(self) -> Any:
        self._ready()
        return dict.values(self)

    def items(self) -> Any:
        self._ready()
        return dict.items(self)

    def copy(self) -> dict[str, LayerKind]:
        self._ready()
        return dict(dict.items(self))

    def __repr__(self) -> str:
        self._ready()
        return dict.__repr__(self)


class _LoadedRegistry(Registry):
    """The registry once its plug-ins are loaded: reads go straight to the dict, with no check in
    Python around them (lowering reads the registry several times for every layer). `load` still
    reloads."""

    __getitem__ = dict.__getitem__
    get = dict.get  # type: ignore[assignment]  # (dict.get is overloaded)
    __contains__ = dict.__contains__
    __iter__ = dict.__iter__
    __len__ = dict.__len__
    keys = dict.keys
    values = dict.values
    items = dict.items

    def _ready(self) -> None:
        pass
