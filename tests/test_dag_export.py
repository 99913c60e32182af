"""`netspec export` of graph specs (items that read earlier outputs by name, `from:`; dotted module names;
named `outputs:`): the file names every value in its forward, builds holders for dotted names, and is
the compiled network: the same state_dict keys in the same order, the same outputs for the same
weights (in a process where netspec cannot be imported), the same initial weights for a seed, and it
goes through TorchScript and torch.export.

The specs: four small ones written here (a DLA-like tree block whose root concatenates
`[x2, x1, bottom]` and whose body reads its `input`; a two-level FPN with torchvision's
`fpn.inner_blocks.i.0` names and named outputs; a squeeze-excitation gate written with `mul`, holders
with non-identifier names and a shortcut from the image; names that are no identifiers or are the
generated file's own words) and the zoo's dla34 and resnet50_fpn.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import netspec
from netspec.export import export_source

from .conftest import SPECS
from .test_export import random_weights

TREE = """
name: tiny_tree
input: {channels: 3, size: 16}
classes: 5
stem:
  - conv: {out: 8, kernel: 3, padding: 1, name: conv1}
  - relu: {name: relu1}
stages:
  - {block: tree, depth: 2, out: 16, stride: 2, name: layer1}
head:
  - avgpool: {kernel: global, name: pool}
  - flatten: {name: flat}
  - linear: {out: "${classes}", name: fc}
blocks:
  tree:
    params: {out: int, stride: 1}
    body:
      - maxpool: {kernel: "${stride}", stride: "${stride}", name: bottom}
      - conv: {out: "${out}", kernel: 3, stride: "${stride}", padding: 1, name: conv1, from: input}
      - batchnorm: {name: bn1}
      - relu: {name: x1}
      - conv: {out: "${out}", kernel: 3, padding: 1, name: conv2}
      - relu: {name: x2}
      - concat: {from: [x2, x1, bottom], name: cat}
      - conv: {out: "${out}", kernel: 1, name: root}
"""

FPN = """
name: tiny_fpn
input: {channels: 3, size: 32}
stem:
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1, name: body.conv1}
  - relu: {name: body.relu}
stages:
  - {block: down, depth: 1, out: 16, name: body.layer1}
  - {block: down, depth: 1, out: 32, name: body.layer2}
head:
  - conv: {name: fpn.inner_blocks.1.0, from: body.layer2, out: 8, kernel: 1}
  - conv: {name: fpn.layer_blocks.1.0, out: 8, kernel: 3, padding: 1}
  - conv: {name: fpn.inner_blocks.0.0, from: body.layer1, out: 8, kernel: 1}
  - upsample: {name: top_down, from: fpn.inner_blocks.1.0, scale: 2}
  - add: {name: inner0, from: [fpn.inner_blocks.0.0, top_down]}
  - conv: {name: fpn.layer_blocks.0.0, out: 8, kernel: 3, padding: 1}
  - maxpool: {name: pool, from: fpn.layer_blocks.1.0, kernel: 1, stride: 2}
outputs: {"0": fpn.layer_blocks.0.0, "1": fpn.layer_blocks.1.0, pool: pool}
blocks:
  down:
    params: {out: int}
    body:
      - conv: {out: "${out}", kernel: 3, stride: 2, padding: 1}
      - batchnorm: {}
      - relu: {}
"""

GATE = """
name: tiny_gate
input: {channels: 3, size: 16}
classes: 4
stem:
  - conv: {out: 8, kernel: 3, padding: 1, name: conv1}
  - relu: {name: relu1}
  - avgpool: {kernel: global, name: se.squeeze}
  - conv: {out: 8, kernel: 1, name: se.excite-1}
  - sigmoid: {name: se.3}
  - mul: {from: [relu1, se.3], name: gated}
  - conv: {out: 8, kernel: 1, name: skip, from: input}
  - add: {from: [gated, skip], name: sum}
head:
  - avgpool: {kernel: global, name: pool}
  - flatten: {name: flat}
  - linear: {out: "${classes}", name: fc}
"""

# module names no attribute can hold (`2x`, `-a`), attributes that are the file's own words (`self`,
# `torch`, `out`, `OrderedDict`, `x`), an output key with a space, a holder that gets a module after
# another item's (`blk.late`: module order differs from list order)
ODD = """
name: odd_names
input: {channels: 3, size: 8}
stem:
  - conv: {out: 4, kernel: 1, name: blk.klass}
  - relu: {name: blk.2x}
  - conv: {out: 4, kernel: 1, name: blk.-a, from: input}
  - add: {from: [blk.2x, blk.-a], name: x}
  - conv: {out: 4, kernel: 1, name: out}
  - conv: {out: 4, kernel: 1, name: blk.late}
  - conv: {out: 4, kernel: 1, name: self.torch, from: x}
  - concat: {from: [blk.late, self.torch], name: OrderedDict}
outputs: {a: OrderedDict, "b c": x}
"""

# selective kernel (SKNet): a merge of three inputs with its own source text
SK = """
name: tiny_sk
input: {channels: 3, size: 8}
stem:
  - conv: {out: 4, kernel: 3, padding: 1, name: path0}
  - conv: {out: 4, kernel: 5, padding: 2, name: path1, from: input}
  - add: {from: [path0, path1], name: u}
  - avgpool: {kernel: global, name: s}
  - conv: {out: 8, kernel: 1, name: fc_select}
  - select: {from: [path0, path1, fc_select], name: v}
"""

SMALL = {"tiny_tree": TREE, "tiny_fpn": FPN, "tiny_gate": GATE, "odd_names": ODD, "tiny_sk": SK}
ZOO_GRAPHS = ["dla34", "resnet50_fpn"]
ALL = [*SMALL, *ZOO_GRAPHS]

pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def spec_of(name: str) -> netspec.Spec:
    return netspec.loads_spec(SMALL[name]) if name in SMALL else netspec.load_spec(SPECS / f"{name}.yaml")


@functools.cache
def exported(name: str) -> str:
    return export_source(spec_of(name))


def load(source: str, name: str, folder: Path) -> types.ModuleType:
    """The exported file imported from a real file (TorchScript reads the forward's source)."""
    path = folder / f"{name}_model.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"netspec_exported_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example(name: str) -> torch.Tensor:
    """A small input: 64x64 for the zoo's ImageNet networks (global pooling; the FPN halves to 2x2)."""
    shape = netspec.analyze(spec_of(name)).input_shape
    if name in ZOO_GRAPHS:
        shape = (shape[0], 64, 64)
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))


def as_dict(y: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(y) if isinstance(y, dict) else {"": y}


def assert_same_outputs(a: torch.Tensor | dict, b: torch.Tensor | dict) -> None:
    da, db = as_dict(a), as_dict(b)
    assert list(da) == list(db), "the same output keys, in order"
    for key in da:
        scale = max(1.0, db[key].abs().max().item())
        assert (da[key] - db[key]).abs().max().item() <= 1e-5 * scale, key


# -- equivalent, in a process without netspec -----------------------------------------------------------

WORKER = r"""
import contextlib, importlib.util, io, json, runpy, sys
sys.modules["netspec"] = None  # `import netspec` raises ImportError from here on
import torch
torch.set_num_threads(1)


def check(req):
    if req.get("main"):  # run the file as a script: what its __main__ smoke check prints
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runpy.run_path(req["file"], run_name="__main__")
        return {"stdout": out.getvalue()}
    spec = importlib.util.spec_from_file_location(req["module"], req["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    weights = torch.load(req["weights"], weights_only=True)
    io_ = torch.load(req["io"], weights_only=True)
    model = module.build_model()
    keys = list(model.state_dict())
    model.load_state_dict(weights, strict=True)
    model.eval()
    with torch.no_grad():
        y = model(io_["x"])
    ys = dict(y) if isinstance(y, dict) else {"": y}
    ref = io_["y"]
    return {
        "keys": keys == list(weights),
        "type": type(y).__name__,
        "output_keys": list(ys),
        "diff": {k: (ys[k] - ref[k]).abs().max().item() for k in ref if k in ys},
        "scale": {k: ref[k].abs().max().item() for k in ref},
    }


for line in sys.stdin:
    try:
        result = check(json.loads(line))
    except Exception as exc:  # reported to the test, which fails with it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """One process without netspec for the whole file: request -> its reply."""
    folder = tmp_path_factory.mktemp("dag_export")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", WORKER],
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(request: dict) -> dict:
        assert proc.poll() is None and proc.stdin is not None and proc.stdout is not None, "the worker died"
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert "error" not in reply, reply["error"]
        return reply

    yield ask
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=60)


@pytest.mark.parametrize("name", ALL)
def test_graph_spec_export_is_the_compiled_network_without_netspec(name, worker, tmp_path):
    """Same state_dict keys in the same order, same eval outputs (every named output, in order) for
    the same random weights, computed in a process where netspec cannot be imported."""
    spec = spec_of(name)
    model = random_weights(spec).eval()
    x = example(name)
    with torch.no_grad():
        y = as_dict(model(x))
    (tmp_path / "model.py").write_text(exported(name))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"x": x, "y": y}, tmp_path / "io.pt")
    paths = {"file": "model.py", "weights": "w.pt", "io": "io.pt"}
    report = worker({"module": f"generated_{name}", **{k: str(tmp_path / v) for k, v in paths.items()}})
    assert report["keys"], "state_dict keys in the compiled module's order"
    assert report["output_keys"] == list(y)
    assert report["type"] == ("OrderedDict" if spec.outputs is not None else "Tensor")
    for key, diff in report["diff"].items():
        assert diff <= 1e-5 * max(1.0, report["scale"][key]), (key, report)


@pytest.mark.parametrize("name", [*SMALL, "dla34"])
def test_graph_export_starts_from_the_compiled_weights(name, tmp_path):
    """`build_model(seed=s)` gives the tensors of `netspec.build(spec, seed=s)` bit for bit, holders and
    out-of-order module paths included."""
    spec = spec_of(name)
    ours = load(exported(name), name, tmp_path).build_model(seed=7).state_dict()
    ref = netspec.build(spec, seed=7).state_dict()
    assert list(ours) == list(ref)
    assert [k for k in ref if not torch.equal(ours[k], ref[k])] == []


# -- what the file says ------------------------------------------------------------------------------------


def method_of(source: str, cls: str, method: str = "forward") -> str:
    """The text of a generated class's method, as ast writes it (quotes normalised)."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return ast.unparse(next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method))


def test_tree_block_forward_names_each_value_and_concatenates_in_order():
    forward = method_of(exported("tiny_tree"), "Tree")
    assert "bottom = self.bottom(x)" in forward
    assert "conv1 = self.conv1(x)" in forward, "the body's `from: input` reads the block's input"
    assert "cat = torch.cat([x2, x1, bottom], 1)" in forward
    assert "root = self.root(cat)" in forward and forward.rstrip().endswith("return root")


def test_fpn_holders_getattr_and_named_outputs():
    source = exported("tiny_fpn")
    init = method_of(source, "TinyFpn", "__init__")
    assert "self.fpn = nn.Module()" in init and "self.fpn.inner_blocks = nn.Module()" in init
    assert "self.fpn.inner_blocks.add_module('1', nn.Module())" in init
    forward = method_of(source, "TinyFpn")
    assert "getattr(getattr(self.fpn.inner_blocks, '1'), '0')(body_layer2)" in forward
    assert "inner0 = fpn_inner_blocks_0_0 + top_down" in forward
    assert "out['pool'] = pool" in forward and forward.rstrip().endswith("return out")
    assert "from collections import OrderedDict" in source


def test_gate_writes_mul_and_add_merges_and_non_identifier_names():
    source = exported("tiny_gate")
    forward = method_of(source, "TinyGate")
    assert "gated = relu1 * se_3" in forward
    assert "getattr(self.se, 'excite-1')(se_squeeze)" in forward
    assert "skip = self.skip(x)" in forward, "a reference to the image"
    assert "sum_2 = gated + skip" in forward, "a builtin's name is never shadowed"


@pytest.mark.parametrize("name", ALL)
def test_graph_exports_make_only_safe_calls(name):
    """The calls of test_export's safety check, plus getattr with a string literal (holders) and
    OrderedDict; nothing from the spec reaches the file as code."""
    tree = ast.parse(exported(name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            assert len(node.args) == 2 and isinstance(node.args[1], ast.Constant), ast.unparse(node)
            assert isinstance(node.args[1].value, str)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {a.name for a in node.names}
            module = getattr(node, "module", None)
            assert names <= {"torch", "torch.nn.functional"} or (module, names) in (
                ("torch", {"Tensor", "nn"}),
                ("collections", {"OrderedDict"}),
            ), ast.dump(node)
        if isinstance(node, ast.Name):
            assert node.id not in {"eval", "exec", "__import__", "open", "setattr", "globals"}, node.id


# -- compiled: TorchScript and torch.export of the exported file ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_exported_graph_scripts_and_exports_equal_to_the_built_module(name, tmp_path):
    """The exported file's network through torch.jit.script and torch.export.export gives the outputs of
    `netspec.build`'s module with the same weights."""
    script_and_export_equal_built(name, tmp_path)


def test_exported_tiny_graphs_script_and_export(tmp_path):
    """The quick version of the test above, on the small specs, so the default run checks it too."""
    for name in SMALL:
        script_and_export_equal_built(name, tmp_path)


def script_and_export_equal_built(name: str, folder: Path) -> None:
    model = random_weights(spec_of(name)).eval()
    mine = load(exported(name), name, folder).build_model().eval()
    mine.load_state_dict(model.state_dict(), strict=True)
    x = example(name)
    with torch.no_grad():
        ref = model(x)
        assert_same_outputs(torch.jit.script(mine)(x), ref)
        assert_same_outputs(torch.export.export(mine, (x,)).module()(x), ref)


def test_exported_main_prints_every_output(worker, tmp_path):
    (tmp_path / "model.py").write_text(exported("tiny_fpn"))
    lines = worker({"main": True, "file": str(tmp_path / "model.py")})["stdout"].splitlines()
    assert lines == ["output 0: (1, 8, 8, 8)", "output 1: (1, 8, 4, 4)", "output pool: (1, 8, 2, 2)"]


def compiled_outputs_equal(name: str, folder: Path) -> None:
    """`netspec compile` to TorchScript (.ts) and torch.export (.pt2) of the built module with random
    weights: each file, loaded back by torch alone, gives the module's outputs."""
    from netspec.compile import save_compiled

    spec = spec_of(name)
    model = random_weights(spec).eval()
    x = example(name)
    size = tuple(x.shape[2:])
    with torch.no_grad():
        ref = model(x)
        for suffix in (".ts", ".pt2"):
            path = save_compiled(spec, folder / f"{name}{suffix}", input_size=size, model=model)
            loaded = torch.jit.load(str(path)) if suffix == ".ts" else torch.export.load(str(path)).module()
            assert_same_outputs(loaded(x), ref)


def test_netspec_compile_of_small_graph_specs(tmp_path):
    for name in ("tiny_tree", "tiny_fpn"):
        compiled_outputs_equal(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_GRAPHS)
def test_netspec_compile_of_dla34_and_resnet50_fpn(name, tmp_path):
    compiled_outputs_equal(name, tmp_path)


def test_random_graph_specs_export_equivalently(tmp_path):
    """The graph fuzzer's specs (references across stages and inside blocks, merges of 2-4 inputs,
    dotted names, named outputs): the exported file is the compiled network (same outputs, weights
    copied over), in this process; a few here, more in the slow run."""
    from hypothesis import given

    from .fuzz_graph import graph_spec, quick_settings

    @quick_settings(8)
    @given(graph_spec())
    def check(generated) -> None:
        spec = netspec.loads_spec(generated.text)
        ref = random_weights(spec).eval()
        mine = load(export_source(spec, format=False), "fuzz_graph", tmp_path).build_model().eval()
        mine.load_state_dict(ref.state_dict(), strict=True)
        assert list(mine.state_dict()) == list(ref.state_dict())
        x = torch.randn(2, *netspec.analyze(spec).input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert_same_outputs(mine(x), ref(x))

    check()
