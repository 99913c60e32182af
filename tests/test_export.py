"""`netspec.export_source`: every zoo spec as one standalone PyTorch file.

The equivalence checks run the generated files in a separate Python process (`python -I`, with
`sys.modules["netspec"] = None`, so netspec cannot be imported there): one worker process for the whole
file, fed the state_dict of `netspec.build`'s module filled with random tensors (BN statistics and
affine parameters included, so a swapped layer shows), saved here with `torch.save` and loaded there
with `weights_only=True`. The generated network is built on the meta device and takes the saved tensors
(`assign=True`), so a 140M-parameter VGG is never initialised; inputs are small where a network takes
them (64x64 for ImageNet networks with global or adaptive pooling).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

import netspec
from netspec.export import ExportError, export_source

from .conftest import ROOT, SPECS

ZOO = sorted(SPECS.glob("*.yaml"))
RUFF = Path(sys.executable).with_name("ruff")
RUFF_CONFIG = ["--config", str(ROOT / "pyproject.toml")]

WORKER = r"""
import importlib.util
import json
import sys

sys.modules["netspec"] = None  # `import netspec` raises ImportError from here on
import torch

torch.set_num_threads(1)


def check(req):
    spec = importlib.util.spec_from_file_location(req["module"], req["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    leaked = sorted(m for m in sys.modules if m == "netspec" or m.startswith("netspec."))
    if leaked != ["netspec"] or sys.modules["netspec"] is not None:
        return {"ok": False, "error": f"netspec modules loaded: {leaked}"}
    weights = torch.load(req["weights"], weights_only=True, mmap=True)
    io = torch.load(req["io"], weights_only=True)
    with torch.device("meta"):
        model = module.build_model()
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k, list(v.shape)) for k, v in weights.items()]
    if ours != theirs:
        return {"ok": False, "error": "state_dict differs",
                "only_generated": sorted(set(map(str, ours)) - set(map(str, theirs)))[:8],
                "only_compiled": sorted(set(map(str, theirs)) - set(map(str, ours)))[:8]}
    model.load_state_dict(weights, strict=True, assign=True)
    model.eval()
    with torch.no_grad():
        y = model(io["x"])
    if isinstance(y, dict):  # a spec with named `outputs:`: every output, by key and in order
        if list(y) != list(io["y"]):
            return {"ok": False, "error": f"output keys {list(y)} != {list(io['y'])}"}
        ys, refs = list(y.values()), list(io["y"].values())
    else:
        ys, refs = [y], [io["y"]]
    return {"ok": True, "keys": len(ours), "diff": max((a - b).abs().max().item() for a, b in zip(ys, refs)),
            "scale": max(b.abs().max().item() for b in refs), "shape": list(ys[0].shape),
            "finite": all(bool(a.isfinite().all()) for a in ys)}


for line in sys.stdin:
    request = json.loads(line)
    try:
        result = check(request)
    except Exception as exc:  # reported to the test, which fails with it
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
"""


pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def exported(path: Path) -> str:
    return export_source(netspec.load_spec(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Where the generated files and the weights go: in memory (/dev/shm) where the system has it."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="netspec-export-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def worker(workdir):
    """check(path to a generated file, compiled model, input) -> the worker's report."""
    script = workdir / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, "-I", str(script)],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    counter = iter(range(1_000_000))

    def check(file: Path, model: torch.nn.Module, x: torch.Tensor) -> dict:
        n = next(counter)
        weights, io = workdir / f"weights{n}.pt", workdir / f"io{n}.pt"
        model.eval()
        with torch.no_grad():
            y = model(x)
        torch.save(model.state_dict(), weights)
        torch.save({"x": x, "y": y}, io)
        request = {"module": f"generated_{n}", "file": str(file), "weights": str(weights), "io": str(io)}
        assert proc.poll() is None, "the worker process died"
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        reply = proc.stdout.readline()
        weights.unlink()
        io.unlink()
        assert reply, "the worker process died"
        return json.loads(reply)

    yield check
    proc.stdin.close()
    proc.wait(timeout=60)


def random_weights(spec: netspec.Spec) -> torch.nn.Module:
    """netspec's module for the spec with random weights: every tensor a fresh random block tiled over
    it (fast even for VGG's 140M parameters), BN statistics and affine parameters away from 0 and 1, so
    that the outputs depend on every tensor being in its place."""
    with torch.device("meta"):
        model = netspec.build(spec)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
                continue
            block = torch.rand(min(t.numel(), 4099), generator=g)
            t.view(-1).copy_(block.repeat(-(-t.numel() // block.numel()))[: t.numel()])
            if t.dim() > 1:
                t.sub_(0.5).mul_(3.0 / math.sqrt(t[0].numel()))
            elif name.endswith(("running_var", "weight")):
                t.add_(0.5)
            else:
                t.sub_(0.5).mul_(0.4)
    return model


def small_input(spec: netspec.Spec) -> tuple[int, ...]:
    """A smaller input than the spec's where its network takes one (a quicker forward), else its own."""
    natural = netspec.analyze(spec).input_shape
    for size in (64, 96, 128):
        if size < min(natural[1:]):
            try:
                if netspec.analyze(spec, input_size=size).params == netspec.analyze(spec).params:
                    return (natural[0], size, size)
            except netspec.SpecError:
                continue
    return natural


def assert_equivalent(spec: netspec.Spec, source: str, worker, workdir: Path, stem: str) -> dict:
    file = workdir / f"{stem}_model.py"
    file.write_text(source)
    x = torch.randn(1, *small_input(spec), generator=torch.Generator().manual_seed(1))
    report = worker(file, random_weights(spec), x)
    assert report["ok"], report
    assert report["finite"], report
    assert report["diff"] <= 1e-6 * max(1.0, report["scale"]), report
    return report


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_spec_equivalent_without_netspec(path, worker, workdir):
    """Same state_dict keys (in order) and shapes as netspec.build, same eval outputs for the same
    weights, in a process where netspec cannot be imported."""
    assert_equivalent(netspec.load_spec(path), exported(path), worker, workdir, path.stem)


def test_generated_files_pass_ruff(tmp_path):
    for path in ZOO:
        (tmp_path / f"{path.stem}.py").write_text(exported(path))
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [str(RUFF), *command, *RUFF_CONFIG, str(tmp_path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_unformatted_output_is_valid_and_equivalent(worker, workdir):
    """Without ruff the file is not pretty-printed, but it is the same program."""
    spec = netspec.load_spec(SPECS / "resnet50_d.yaml")
    raw = export_source(spec, format=False)
    assert ast.dump(ast.parse(raw)) == ast.dump(ast.parse(exported(SPECS / "resnet50_d.yaml")))
    assert_equivalent(spec, raw, worker, workdir, "resnet50_d_raw")


# -- reads like torchvision ------------------------------------------------------------------------
def test_depth_changes_only_numbers():
    """A deeper ResNet is the same file with other loop counts: ResNet-152's is as long as ResNet-50's
    and no longer than ResNet-18's but for its bottleneck being a longer class than the basic block."""
    lines = {
        n: exported(SPECS / f"{n}.yaml").splitlines()
        for n in ("resnet18", "resnet34", "resnet50", "resnet152")
    }
    assert len(lines["resnet152"]) == len(lines["resnet50"])
    assert len(lines["resnet34"]) == len(lines["resnet18"])

    def classes(text: list[str]) -> dict[str, int]:
        tree = ast.parse("\n".join(text))
        return {c.name: c.end_lineno - c.lineno + 1 for c in tree.body if isinstance(c, ast.ClassDef)}

    c18, c152 = classes(lines["resnet18"]), classes(lines["resnet152"])
    block_extra = c152["Bottleneck"] - c18["Basic"]
    assert len(lines["resnet152"]) <= len(lines["resnet18"]) + block_extra
    # outside docstrings, the two ResNet-50 depths differ only in names and numbers
    code = {n: [ln for ln in lines[n] if "range(" in ln] for n in ("resnet50", "resnet152")}
    assert [re.sub(r"\d+", "N", ln) for ln in code["resnet50"]] == [
        re.sub(r"\d+", "N", ln) for ln in code["resnet152"]
    ]
    assert "for _ in range(1, 36):" in exported(SPECS / "resnet152.yaml")


def test_blocks_first_then_network_then_factory():
    source = exported(SPECS / "resnet50.yaml")
    tree = ast.parse(source)
    kinds = [(type(n).__name__, getattr(n, "name", None)) for n in tree.body]
    assert kinds[0][0] == "Expr" and "resnet50" in ast.get_docstring(tree)
    assert ("ClassDef", "Bottleneck") in kinds and ("ClassDef", "Resnet50") in kinds
    assert kinds.index(("ClassDef", "Bottleneck")) < kinds.index(("ClassDef", "Resnet50"))
    assert kinds.index(("ClassDef", "Resnet50")) < kinds.index(("FunctionDef", "build_model"))
    assert kinds[-1][0] == "If"  # if __name__ == "__main__":
    doc = ast.get_docstring(tree)
    analysis = netspec.analyze(netspec.load_spec(SPECS / "resnet50.yaml"))
    assert f"{analysis.params:,}" in doc and f"{analysis.macs:,}" in doc and "3x224x224" in doc
    # one class per block kind, written twice per stage (the first block, then a loop over the others,
    # as torchvision's _make_layer): no unrolled copies
    assert source.count("class ") == 2
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == "Bottleneck"]
    assert len(calls) == 2 * 4
    assert all(kw.arg for call in calls for kw in call.keywords) and not any(call.args for call in calls)
    assert source.count("for _ in range(1, ") == 4
    init = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Bottleneck").body[1]
    assert [a.arg for a in init.args.args] == ["self", "in_channels", "out_channels", "width", "stride"]
    assert "if self.downsample is not None:" in source
    assert "if stride != 1 or in_channels != out_channels:" in source


def test_loops_over_repeated_blocks():
    dense = exported(SPECS / "densenet121.yaml")
    assert "for i in range(24):" in dense and 'f"denselayer{i + 1}"' in dense
    assert "DenseLayer(in_channels=512 + 32 * i)" in dense
    vgg = exported(SPECS / "vgg19.yaml")
    assert vgg.count("for _ in range(1, 4):") == 2 and vgg.count("for _ in range(4):") == 1
    assert vgg.count("nn.Conv2d(") == 9  # of 16 convs
    assert len(vgg.splitlines()) == len(exported(SPECS / "vgg13.yaml").splitlines())
    mobile = exported(SPECS / "mobilenet_v2.yaml")
    assert mobile.count("class InvertedResidual(") == 1  # one class for residual and plain instances
    assert "self.use_residual = stride == 1 and in_channels == out_channels" in mobile


def test_num_classes_argument_and_main_smoke(tmp_path):
    """`build_model(num_classes=...)` works; running the file prints the output shape."""
    source = exported(SPECS / "resnet20_cifar.yaml")
    file = tmp_path / "resnet20_cifar_model.py"
    file.write_text(source)
    result = subprocess.run([sys.executable, "-I", str(file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "output shape: (1, 10)"
    module = load(file)
    assert module.build_model(num_classes=7)(torch.randn(2, 3, 32, 32)).shape == (2, 7)


# -- script / export / fx ----------------------------------------------------------------------------
def load(file: Path):
    spec = importlib.util.spec_from_file_location(f"netspec_generated_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["resnet20_cifar", "mobilenet_v2"])
def test_script_export_fx(name, tmp_path):
    """TorchScript, torch.export and torch.fx see the generated network as they see the compiled one."""
    spec = netspec.load_spec(SPECS / f"{name}.yaml")
    file = tmp_path / f"{name}_model.py"
    file.write_text(exported(SPECS / f"{name}.yaml"))
    model = load(file).build_model().eval()
    model.load_state_dict(random_weights(spec).state_dict())
    size = 32 if name == "resnet20_cifar" else 64
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), expected)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), expected)


def test_aux_heads_train_and_eval(tmp_path):
    """GoogLeNet: (logits, [aux1, aux2]) in training mode, logits in eval, also when scripted."""
    file = tmp_path / "googlenet_model.py"
    file.write_text(exported(SPECS / "googlenet.yaml"))
    model = load(file).build_model(num_classes=5)
    x = torch.randn(2, 3, 96, 96)
    logits, aux = model.train()(x)
    assert logits.shape == (2, 5) and [a.shape for a in aux] == [(2, 5), (2, 5)]
    assert model.eval()(x).shape == (2, 5)
    scripted = torch.jit.script(model)
    assert scripted.eval()(x).shape == (2, 5)
    assert len(scripted.train()(x)[1]) == 2


# -- more structures than the zoo has -----------------------------------------------------------------
ODDITIES = """
name: oddities
description: every structure the exporter must handle
input: {channels: 3, size: 32}
classes: 10
vars: {growth: 4}
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 8, kernel: [3, 5], padding: [1, 2], name: stem}
  - residual:
      body: [conv: {act: leaky_relu}, conv: {act: none, dilation: 2}]
      after: [hardswish]
  - parallel:
      branches:
        - [conv: {out: 4, kernel: 1}]
        - [maxpool: {kernel: 3, stride: 1, padding: 1}, conv: {out: 4, kernel: 1}]
      merge: add
      after: [lrn: 3, sigmoid]
stages:
  - {block: gated, depth: 2, out: 16, name: layer1}
  - {block: gated, depth: 3, out: 24, stride: 2, name: layer2}
  - {block: dense, depth: 3, name: dense, block_name: "unit${index + 1}"}
  - {block: shifty, depth: 2, t: "${2 - index}", name: shifty}
  - {block: pair, depth: 2, out: 20, inline: true}
  - aux: {name: side, layers: [avgpool: global, flatten, linear: 12, batchnorm, relu, linear: "${classes}"]}
head:
  - avgpool: global
  - flatten
  - dropout: 0.1
  - linear: {out: 32, bias: false}
  - identity
  - linear: "${classes}"
shortcut: projection
tricks: [zero_gamma]
blocks:
  se:
    params: {ratio: 4}
    body:
      - avgpool: global
      - conv: {out: "${in_channels // ratio}", kernel: 1, norm: none}
      - conv: {out: "${in_channels}", kernel: 1, norm: none, act: sigmoid}
    merge: mul
    shortcut: identity
  gated:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", stride: "${stride}"}
      - conv: {out: "${out}", act: none, padding: same}
      - se: {ratio: 2}
    merge: add
    shortcut_name: skip
    after: [relu6]
  dense:
    body: [conv: {out: "${growth}", kernel: 1}]
    merge: concat
    shortcut: identity
  shifty:
    params: {t: int}
    body:
      - conv: {out: "${in_channels * t}", kernel: 1, when: "${t != 1}"}
      - conv: {out: "${in_channels}", kernel: 3, act: silu}
    merge: add
    shortcut: [conv: {kernel: 1, act: none, bias: true}]
  pair:
    params: {out: int}
    body: [conv: {out: "${out}"}, conv: {out: "${out}", act: gelu}]
    merge: none
"""


def test_structures_beyond_the_zoo(worker, workdir):
    """Inline residual/parallel composites, squeeze-excite (mul) nested in a block, dense concat,
    a `when:` that shifts names (two classes), explicit shortcut lists, BatchNorm1d, an aux head."""
    spec = netspec.loads_spec(ODDITIES)
    source = export_source(spec)
    assert_safe(source)
    assert "class Shifty(" in source and "class Shifty2(" in source
    assert "class Se(" in source and "out = out * x" in source
    assert "torch.cat([x, out], 1)" in source
    assert "self.skip" in source
    report = assert_equivalent(spec, source, worker, workdir, "oddities")
    assert report["shape"] == [1, 10]


# -- safety ---------------------------------------------------------------------------------------------
PAYLOAD = (
    "x\"\"\" + __import__('os').system('echo pwned') + \"\"\"'''\\\n\"; import os #\u00e9\u2603\t\r\x00"
    " {{ 7 * 7 }} {% if true %}" + "A\\" * 80
)
TINY = """
name: tiny
description: {description}
input: {{channels: 3, size: 8}}
classes: 3
stages:
  - {{block: {block}, depth: 2, {param}: 4, name: body}}
head: [avgpool: global, flatten, linear: "${{classes}}"]
blocks:
  {block}:
    description: {description}
    params: {{{param}: int}}
    body: [conv: {{out: "${{{param}}}", kernel: 1}}, relu]
"""

ALLOWED_CALLS = {
    "super",
    "range",
    "print",
    "tuple",
    "str",
    "isinstance",
    "build_model",
    "_sequential",
    "model",
}
ALLOWED_DOTTED = {
    "torch.cat",
    "torch.randn",
    "torch.no_grad",
    "torch.manual_seed",
    "torch.random.fork_rng",
    "F.pad",
    "sequential.add_module",
    "aux.append",
}
FORBIDDEN_NAMES = {
    "__import__",
    "eval",
    "exec",
    "open",
    "getattr",
    "setattr",
    "compile",
    "globals",
    "os",
    "sys",
}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func)}()"
    return "?"


def assert_safe(source: str) -> ast.Module:
    """Only torch imports, and only the calls a generated network makes."""
    tree = ast.parse(source)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= {"torch", "torch.nn.functional"}, ast.dump(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.module == "torch" and {a.name for a in node.names} <= {"Tensor", "nn"}, ast.dump(node)
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            ok = (
                name in ALLOWED_CALLS
                or name in classes
                or name in ALLOWED_DOTTED
                or re.fullmatch(r"self\.\w+", name)
                or re.fullmatch(r"layers\d*\.(append|add_module)", name)
                or name in ("super().__init__", "build_model().eval")
                or (name.startswith("nn.") and isinstance(getattr(torch.nn, name[3:], None), type))
                or (name.startswith("nn.init.") and callable(getattr(torch.nn.init, name[8:], None)))
            )
            assert ok, f"unexpected call {name}"
        elif isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, node.id
        elif isinstance(node, ast.Attribute):
            assert not node.attr.startswith("__") or node.attr == "__init__", node.attr
    return tree


def test_random_composite_specs_export_equivalently(tmp_path):
    """The shape fuzzer's residual / parallel / dense / squeeze-excite specs (a few of them here; many
    more were run while writing the exporter): the file builds the same network, in this process."""
    from hypothesis import HealthCheck, given, settings

    from .test_shapes_fuzz import composite_spec

    @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(composite_spec())
    def check(text: str) -> None:
        try:
            spec = netspec.loads_spec(text)
            netspec.analyze(spec)
        except netspec.SpecError:
            return
        file = tmp_path / "fuzz_model.py"
        file.write_text(export_source(spec, format=False))
        ref = random_weights(spec).eval()
        ours = load(file).build_model().eval()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, *netspec.analyze(spec).input_shape)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)

    check()


def test_hostile_spec_names_are_refused():
    for name in ['"x"', "a\nb", "__import__('os')", 'a"""b']:
        text = TINY.format(description="d", block="blk", param="w").replace(
            "name: tiny", f"name: {json.dumps(name)}"
        )
        with pytest.raises(netspec.SpecError):
            netspec.loads_spec(text)
    for block in ['"a\\"b"', '"__import__(1)"', '"a b"']:
        with pytest.raises(netspec.SpecError):
            netspec.loads_spec(TINY.format(description="d", block=block, param="w"))


@pytest.mark.parametrize(
    ("block", "param"),
    [
        ("blk", "w"),
        ("None", "nn"),
        ("F", "torch"),
        ("build_model", "self"),
        ("Tensor", "__import__"),
        ("bl\u00f6ck", "x"),
    ],
)
def test_hostile_text_and_names_make_safe_files(block, param, worker, workdir):
    """Descriptions (quotes, triple quotes, backslashes, newlines, code, non-ASCII) go into docstrings
    escaped; names that would shadow Python or torch get other class and argument names."""
    spec = netspec.loads_spec(
        TINY.format(description=json.dumps(PAYLOAD), block=json.dumps(block), param=param)
    )
    source = export_source(spec)
    assert source.isascii()
    tree = assert_safe(source)
    # all of it, as text: quotes, backslashes and template syntax ({{ 7 * 7 }} stays as written)
    assert "".join(PAYLOAD.split()) in "".join(ast.get_docstring(tree).split())
    block_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name not in ("Tiny",))
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", block_class.name)
    assert "".join(PAYLOAD.split()) in "".join(ast.get_docstring(block_class).split())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and isinstance(n.body[0], ast.Expr)
    }
    for node in ast.walk(tree):  # the payload is text in docstrings, nowhere else
        if isinstance(node, ast.Constant) and "pwned" in str(node.value):
            assert id(node) in docstrings
    assert_equivalent(spec, source, worker, workdir, "hostile_" + re.sub(r"\W", "_", block + param))
    result = subprocess.run(
        [str(RUFF), "check", *RUFF_CONFIG, "--stdin-filename", "m.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_plugin_layer_kind_is_read_back_from_its_torch_module(monkeypatch, worker, workdir):
    """A layer kind this exporter has no code for (a plug-in) that builds a torch.nn module: its
    constructor call is read back from the module's attributes, and checked to rebuild the same."""
    from netspec.layers import KINDS
    from netspec.layers.misc import Identity

    class Elu(Identity):
        name = "elu"
        prefix = "elu"

        def build(self, p, x, y):
            return torch.nn.ELU(alpha=0.5)

    monkeypatch.setitem(KINDS, "elu", Elu())
    spec = netspec.loads_spec("name: plugin\ninput: {channels: 3, size: 8}\nstem: [conv: 4, elu, conv: 2]\n")
    source = export_source(spec)
    assert "self.elu1 = nn.ELU(alpha=0.5)" in source
    assert_equivalent(spec, source, worker, workdir, "plugin")


def test_unknown_layer_kind_is_an_error_not_wrong_code(monkeypatch):
    """A plug-in kind whose torch module cannot be read back is refused (ExportError), never guessed."""
    from netspec.layers import KINDS
    from netspec.layers.misc import Identity

    class Weird(Identity):
        name = "weird"

        def build(self, p, x, y):
            from torch import nn

            class Custom(nn.Module):
                def forward(self, t):
                    return t

            return Custom()

    monkeypatch.setitem(KINDS, "weird", Weird())
    spec = netspec.loads_spec(
        textwrap.dedent(
            """
            name: weird
            input: {channels: 3, size: 8}
            stem: [weird, conv: 4]
            """
        )
    )
    with pytest.raises(ExportError, match="weird"):
        export_source(spec)
