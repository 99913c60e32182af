"""The package as a user gets it: the wheel setuptools builds from pyproject.toml holds every package and
data file, installs into a fresh virtual environment, and there trains and reports with no optional
package at all; its dependencies are lower bounds, and the exact versions CI uses are constraints."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from netspec.data import SCHEMA_FILE
from netspec.schema import schema_json
from netspec.train.data import _stratified_split, digits_arrays

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# what a plain `pip install netspec` must not need: the extras, and scikit-learn (the digits are shipped)
OPTIONAL = ["sklearn", "timm", "onnx", "onnxscript", "onnxruntime", "safetensors", "tensorboard", "mlflow"]


def _sources(dest: Path) -> Path:
    """The files a build reads, copied: building in the checkout would leave build/ and egg-info there
    (and read whatever stale files lie in them)."""
    src = dest / "netspec-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("netspec", "specs", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built by setuptools' PEP 517 backend (what `pip install .` and `python -m build` call)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = _sources(tmp), tmp / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return out / run.stdout.strip().splitlines()[-1]


def test_the_wheel_holds_every_package_and_data_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(p.parent for p in (ROOT / "netspec").rglob("__init__.py"))
    assert len(packages) >= 8
    for package in packages:  # every package of the source tree, with each of its modules
        for module in package.glob("*.py"):
            assert module.relative_to(ROOT).as_posix() in names, module
    zoo = sorted((ROOT / "specs").glob("*.yaml"))
    assert len(zoo) >= 29
    for spec in zoo:
        assert f"netspec/zoo_specs/{spec.name}" in names
    for template in (ROOT / "templates").glob("*.j2"):
        assert f"netspec/templates/{template.name}" in names
    assert {"netspec/data/digits.npz", "netspec/data/netspec.schema.json"} <= names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "netspec = netspec.cli:main" in entry


def test_the_wheel_states_lower_bounds_not_pins(wheel: Path):
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    )
    required = [
        Requirement(line.split(":", 1)[1])
        for line in meta.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    runtime = {r.name.lower(): r for r in required if r.marker is None}
    assert {"torch", "torchvision", "numpy"} <= set(runtime)
    for req in runtime.values():  # a user's own torch (a CUDA build, a newer release) is kept
        assert all(s.operator == ">=" for s in req.specifier), req
    assert "scikit-learn" not in runtime


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_direct_dependency_within_its_bounds():
    """constraints.txt (what `make setup` and CI install) pins each dependency of pyproject.toml and
    its test extra at a version the declared bounds allow: pip would refuse a contradiction, this says
    which."""
    pins = _constraints()
    project = PYPROJECT["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile and "torch==2.14.1 torchvision==0.29.1" in makefile


def test_version_is_written_once():
    from netspec import __version__

    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert importlib.metadata.version("netspec") == __version__


def test_shipped_digits_are_scikit_learns():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.load_digits()
    images, labels = digits_arrays()
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)


@pytest.mark.parametrize("fraction", [0.2, 0.1, 0.25, 0.33, 0.5, 0.9])
def test_digits_split_is_scikit_learns_stratified_split(fraction: float):
    """The train/val split drawn with numpy alone is scikit-learn's `train_test_split(stratify=...)`
    index for index, so a run's validation set is the one it was when scikit-learn drew it."""
    model_selection = pytest.importorskip("sklearn.model_selection")
    _, labels = digits_arrays()
    train, val = _stratified_split(labels, fraction)
    ref_train, ref_val = model_selection.train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=0, shuffle=True
    )
    assert train.tolist() == sorted(ref_train.tolist()) and val.tolist() == sorted(ref_val.tolist())


def test_packaged_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text() == schema_json()


# -- a fresh virtual environment -----------------------------------------------------------------


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A new venv with the wheel installed by pip (no dependencies, no index: nothing downloaded),
    then given the torch this test runs with through a .pth path line; the optional packages that the
    development environment also holds are made unimportable there, as on a user's clean machine."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    import torch

    blocked = f"import sys; sys.modules.update(dict.fromkeys({OPTIONAL!r}))"
    (_site_packages(venv) / "zz_dev_torch.pth").write_text(
        f"{Path(torch.__file__).parent.parent}\n{blocked}\n"
    )
    return venv


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NETSPEC"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_wheel_resolves_zoo_references_and_ships_the_schema_new_points_at(
    installed: Path, tmp_path: Path
):
    """`netspec new` in an install writes `extends: zoo:resnet50` (no path into site-packages) and a
    `$schema` that resolves, from the new spec's folder, to the schema file the wheel installed."""
    version = _run(installed, tmp_path, "netspec", "--version")
    assert version.returncode == 0 and version.stdout.strip() == "netspec 0.1.0", version.stdout
    new = _run(installed, tmp_path, "netspec", "new", "mine", "--from", "resnet50")
    assert new.returncode == 0, new.stderr
    text = (tmp_path / "mine.yaml").read_text()
    assert "\nextends: zoo:resnet50\n" in text
    schema = text.splitlines()[0].removeprefix("# yaml-language-server: $schema=")
    assert (tmp_path / schema).resolve() == (_site_packages(installed) / "netspec/data/netspec.schema.json")
    valid = _run(installed, tmp_path, "netspec", "validate", "mine.yaml")
    assert valid.returncode == 0 and "25,557,032 params" in valid.stdout, valid.stdout + valid.stderr


@pytest.mark.slow
def test_installed_wheel_trains_and_reports_with_no_optional_package(installed: Path, tmp_path: Path):
    here = _run(installed, tmp_path, "python", "-c", "import netspec, sys; print(netspec.__file__)")
    assert here.returncode == 0, here.stderr
    assert Path(here.stdout.strip()).is_relative_to(installed), here.stdout  # not the checkout
    assert _run(installed, tmp_path, "python", "-c", "import sklearn").returncode != 0
    deps = _run(installed, tmp_path, "python", "-c", _CHECK_REQUIREMENTS)
    assert deps.returncode == 0, deps.stdout + deps.stderr
    report = _run(installed, tmp_path, "netspec", "report", "lenet5")
    assert report.returncode == 0, report.stderr
    assert "61,706" in report.stdout  # LeNet-5 with a fully connected C3: 156+2416+48120+10164+850
    train = _run(installed, tmp_path, "netspec", "train", "lenet5", "--epochs", "1", "--out", "run", "-q")
    assert train.returncode == 0, train.stdout + train.stderr
    assert "done: run" in train.stdout and (tmp_path / "run" / "last.pt").is_file()


_CHECK_REQUIREMENTS = """
import importlib.metadata as md
from packaging.requirements import Requirement
for text in md.requires("netspec"):
    req = Requirement(text)
    if req.marker is None:
        have = md.version(req.name)
        assert req.specifier.contains(have, prereleases=True), (text, have)
print("ok")
"""
