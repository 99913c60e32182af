"""The bundled model zoo: specs shipped in `specs/` (also packaged into the wheel)."""

from __future__ import annotations

from pathlib import Path


def zoo_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "specs"
    if checkout.is_dir():
        return checkout
    # an installed wheel: setuptools maps specs/ to the package directory netspec/zoo_specs
    return Path(__file__).resolve().parent / "zoo_specs"


def zoo_specs() -> list[Path]:
    return sorted(zoo_dir().glob("*.yaml"))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system: reading it reports that, located
        return False


def find_spec(name_or_path: str) -> Path:
    """A path as given, or a zoo spec by name (`resnet50` -> specs/resnet50.yaml)."""
    p = Path(name_or_path)
    if _exists(p) or p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return p
    candidate = zoo_dir() / f"{name_or_path}.yaml"
    return candidate if _exists(candidate) else p
