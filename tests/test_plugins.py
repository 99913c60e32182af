"""Plug-in layer kinds (entry point group `netspec.layers`), with the example package in
examples/netspec-plugin-example: ShiftNet's shift (a custom module that brings its source to
`netspec export`) and mish (torch.nn.Mish, read back by the exporter).

The default run simulates the installed package (importlib.metadata.entry_points patched to return its
entry points, the package on sys.path); a slow test installs it into the venv with pip for real."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import netspec
from netspec import ExportError, SpecShapeError, export_source
from netspec.layers import KINDS, PluginError, PluginWarning
from netspec.lower import lower
from tests.conftest import fvcore_analysis, n_params

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "examples" / "netspec-plugin-example"
SPEC = PLUGIN_DIR / "shiftnet_tiny.yaml"
GROUP = "netspec.layers"
EXAMPLE = {
    "shift": "netspec_plugin_example.layers:Shift",
    "mish": "netspec_plugin_example.layers:Mish",
}


def _eps(mapping: dict[str, str]) -> list[importlib.metadata.EntryPoint]:
    return [importlib.metadata.EntryPoint(name=k, value=v, group=GROUP) for k, v in mapping.items()]


@pytest.fixture
def use_plugins(monkeypatch):
    """Load the given entry points as if installed packages declared them; restore the registry after."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.delenv("NETSPEC_PLUGINS", raising=False)
    real = importlib.metadata.entry_points

    def load(mapping: dict[str, str]) -> None:
        def entry_points(**kwargs):
            if kwargs.get("group") == GROUP:
                return importlib.metadata.EntryPoints(_eps(mapping))
            return real(**kwargs)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        KINDS.load()

    yield load
    KINDS.load([])
    KINDS._loaded = False  # the next reader discovers the real entry points again


@pytest.fixture
def example(use_plugins):
    use_plugins(EXAMPLE)


def test_plugin_kinds_join_the_registry(example):
    assert KINDS.plugins == ["shift", "mish"]
    assert "shift" in KINDS and KINDS["shift"].prefix == "shift"
    assert "shift" in list(KINDS) and "conv" in KINDS


def test_spec_counts_match_fvcore_and_shapes_match_the_built_module(example):
    spec = netspec.load_spec(SPEC)
    analysis = netspec.analyze(spec)
    model = netspec.build(spec, seed=0).eval()
    assert analysis.params == n_params(model)
    fv = fvcore_analysis(model, analysis.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert analysis.macs == int(fv.total())
    shifts = [r for r in lower(spec).children if getattr(r, "kind", None) == "shift"]
    assert len(shifts) == 2 and all(n.cost.macs == 0 and n.cost.params == 0 for n in shifts)

    # every layer's output shape, static vs. a real forward pass
    expected = {n.path: n.out_shape for n in lower(spec).children}
    seen: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_modules():
        if name in expected:
            module.register_forward_hook(
                lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:]))
            )
    out = model(torch.randn(2, *analysis.input_shape))
    assert seen == expected
    assert tuple(out.shape) == (2, *analysis.output_shape)

    # the shift is ShiftNet's: a depthwise convolution whose kernel is one-hot at its group's offset
    # (Wu et al. 2018, eq. 2), channel group g = (i, j) of the 3 x 3 groups
    shift = model.get_submodule("shift1")
    assert shift.__class__.__name__ == "Shift" and shift.kernel == 3
    x = torch.randn(2, 36, 7, 7)
    one_hot = torch.zeros(36, 1, 3, 3)
    for c in range(36):
        g = c // 4
        one_hot[c, 0, g // 3, g % 3] = 1.0
    assert torch.equal(shift(x), torch.nn.functional.conv2d(x, one_hot, padding=1, groups=36))


def test_shape_rule_error_names_the_layer(example):
    spec = netspec.loads_spec("name: bad\ninput: {channels: 3, size: 8}\nstem: [conv: 8, shift: 3]\n")
    with pytest.raises(SpecShapeError, match="divisible by kernel x kernel: 8 by 9"):
        netspec.analyze(spec)


def test_export_writes_the_plugin_class_and_gives_the_same_outputs(example):
    spec = netspec.load_spec(SPEC)
    source = export_source(spec)
    assert "class Shift(nn.Module):" in source
    assert "self.shift1 = Shift(kernel=3)" in source
    assert "self.mish1 = nn.Mish()" in source
    assert "import netspec" not in source and "netspec_plugin_example" not in source
    namespace: dict = {"__name__": "exported"}
    exec(compile(source, "exported.py", "exec"), namespace)
    ours = namespace["build_model"]().eval()
    ref = netspec.build(spec, seed=0).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_export_refuses_a_module_source_that_imports(example, monkeypatch):
    kind = type(KINDS["shift"])
    monkeypatch.setattr(kind, "module_source", "import os\n\n\nclass Shift:\n    pass\n")
    spec = netspec.loads_spec("name: s\ninput: {channels: 3, size: 8}\nstem: [conv: 9, shift: 3]\n")
    with pytest.raises(ExportError, match="exactly one class definition"):
        export_source(spec)
    monkeypatch.setattr(kind, "module_source", "class Shift:\n    import os\n")
    with pytest.raises(ExportError, match="may not import"):
        export_source(spec)


def test_plugins_appear_in_kinds_and_schema(example):
    from typer.testing import CliRunner

    from netspec.cli import app
    from netspec.schema import spec_schema

    result = CliRunner().invoke(app, ["kinds"])
    assert result.exit_code == 0 and "shift" in result.output and "[kernel]" in result.output
    item = spec_schema()["$defs"]["LayerItem"]["anyOf"][1]["properties"]
    assert set(item["shift"]["anyOf"][0]["properties"]) == {"name", "kernel", "when", "from"}
    assert "mish" in item


def test_broken_plugins_are_skipped_with_a_warning(use_plugins):
    with pytest.warns(PluginWarning) as record:
        use_plugins(
            {
                "missing": "no_such_module_xyz:Kind",
                "params": "netspec_plugin_example.layers:ShiftParams",
                "shift": EXAMPLE["shift"],
            }
        )
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert "'missing = no_such_module_xyz:Kind'" in messages[0] and "ModuleNotFoundError" in messages[0]
    assert "ShiftParams" in messages[1] and "not a netspec.layers.LayerKind" in messages[1]
    assert KINDS.plugins == ["shift"]


def test_name_clashes_are_errors_naming_both(use_plugins, monkeypatch):
    from netspec_plugin_example import layers

    class Conv(layers.Mish):
        name = "conv"

    monkeypatch.setattr(layers, "Conv", Conv, raising=False)
    with pytest.raises(PluginError, match=r"'conv'.*layers:Conv.*built-in kind 'conv' \(netspec\)"):
        use_plugins({"conv": "netspec_plugin_example.layers:Conv"})
    assert "mish" not in KINDS
    with pytest.raises(PluginError, match="registered twice"):
        use_plugins({"a": EXAMPLE["mish"], "b": EXAMPLE["mish"]})


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR), **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=environment
    )


def test_cli_reports_a_broken_plugin_in_one_line():
    result = _cli("kinds", NETSPEC_PLUGINS=f"no_such_module_xyz:Kind,{EXAMPLE['shift']}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "warning: netspec plug-in entry point 'Kind = no_such_module_xyz:Kind' (module no_such_module_xyz) "
        "skipped: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    ]
    assert "ShiftNet's shift" in result.stdout


def test_import_netspec_loads_no_plugin_and_no_torch():
    code = textwrap.dedent(
        """
        import sys
        import netspec
        from netspec.layers import KINDS
        print(KINDS._loaded, "torch" in sys.modules, "netspec_plugin_example" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR), "NETSPEC_PLUGINS": EXAMPLE["mish"]}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


@pytest.mark.slow
def test_pip_installed_plugin_is_found_by_the_cli(tmp_path):
    """The real thing: `pip install -e` the example into this venv, run the CLI, uninstall it."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    install = [*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(PLUGIN_DIR)]
    subprocess.run(install, check=True, capture_output=True)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("NETSPEC_PLUGINS", "PYTHONPATH")}
        cli = [sys.executable, str(ROOT / "cli.py")]
        kinds = subprocess.run([*cli, "kinds"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert "ShiftNet's shift" in kinds.stdout and kinds.stderr == "", kinds.stderr
        out = tmp_path / "model.py"
        export = [*cli, "export", str(SPEC), "-o", str(out)]
        result = subprocess.run(export, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        run = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    finally:
        subprocess.run([*pip, "uninstall", "-y", "netspec-plugin-example"], check=False, capture_output=True)
