"""The exported standalone source works under torch.compile(fullgraph=True), like the compiled module.
Slow (Inductor compiles C++ on CPU): `pytest -m slow tests/test_export_compile.py`."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import netspec
from netspec.export import export_source

from .conftest import SPECS


@pytest.mark.slow
def test_exported_resnet_compiles_with_fullgraph(tmp_path):
    spec = netspec.load_spec(SPECS / "resnet20_cifar.yaml")
    path = tmp_path / "resnet20_exported.py"
    path.write_text(export_source(spec))
    module_spec = importlib.util.spec_from_file_location("resnet20_exported", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)

    reference = netspec.build(spec, seed=0).eval()
    exported = module.build_model().eval()
    exported.load_state_dict(reference.state_dict())
    compiled = torch.compile(exported, fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-4, atol=1e-5)
