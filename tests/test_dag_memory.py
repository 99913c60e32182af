"""Peak activation memory (netspec/memory.py `peak_activations`) against a measurement: torch's own
dispatcher reports every tensor each op returns (a TorchDispatchMode), and weakref finalizers report
when the last tensor on a storage dies, so the count of live float32 activation bytes during a forward
pass of the built module (batch 1, eval mode, torch.no_grad()) is what torch holds, not what netspec
thinks it holds. Parameters and buffers are not activations; int64 pooling indices that an op drops
before returning are not float32 activations either.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import netspec
from netspec.ir import layers
from netspec.layers.base import numel
from netspec.lower import lower
from netspec.memory import peak_activations

from .conftest import SPECS
from .test_dag import GRAPH_RESIDUAL, RESNET18_GRAPH, TINY, spec_of

pytestmark = pytest.mark.usefixtures("one_thread_module")

SIZE = 64  # small inputs keep the forwards fast; the liveness does not depend on the size


class LiveFloatBytes(TorchDispatchMode):
    """The bytes of float32 storages alive, at their most, while the mode is active."""

    def __init__(self, model: torch.nn.Module, *held: torch.Tensor) -> None:
        super().__init__()
        self.weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.owners: dict[int, int] = {}  # storage -> live tensors on it
        self.size: dict[int, int] = {}
        self.live = self.peak = 0
        for t in held:
            self.track(t)

    def free(self, key: int) -> None:
        self.owners[key] -= 1
        if not self.owners[key]:
            del self.owners[key]
            self.live -= self.size.pop(key)

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if t.dtype != torch.float32 or not storage.nbytes() or key in self.weights:
            return
        if key not in self.owners:
            self.owners[key] = 0
            self.size[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.owners[key] += 1
        weakref.finalize(t, self.free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def measured_peak(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    x = torch.randn(1, *shape)
    with torch.no_grad():
        mode = LiveFloatBytes(model, x)
        with mode:
            out = model(x)
        del out
    return mode.peak


# a sum of three: the fx graph adds two, frees them (their last reader), then adds the third
CHAINED_ADD = """\
name: chained_add
input: {channels: 4, size: 8}
outputs: [m]
stem:
  - conv: {out: 4, kernel: 1, name: x}
  - conv: {out: 4, kernel: 1, name: y, from: input}
  - conv: {out: 4, kernel: 1, name: z, from: input}
  - add: {from: [x, y, z], name: m}
"""
# norms whose ops return statistics beside their output; a sum that reads one input twice
NORM_STATISTICS = """\
name: norm_statistics
input: {channels: 4, size: 8}
outputs: [m, x]
stem:
  - conv: {out: 4, kernel: 1, name: x}
  - conv: {out: 4, kernel: 1, name: y, from: input}
  - groupnorm: {groups: 2, name: g}
  - layernorm2d: {name: l}
  - add: {from: [x, y, l, x], name: m}
"""

# a Parallel block's sum of three branches: its list of branch outputs is held through the sum
PARALLEL_SUM = """\
name: parallel_sum
input: {channels: 4, size: 8}
classes: 4
stem:
  - parallel:
      merge: add
      branches:
        - [{conv: {out: 4, kernel: 1}}]
        - [{conv: {out: 4, kernel: 3}}]
        - [{conv: {out: 4, kernel: 1}}, relu]
      after: [relu]
head: [{avgpool: global}, flatten]
"""


def spec_named(name: str) -> netspec.Spec:
    texts = {
        "tiny_graph": TINY,
        "resnet18_graph": RESNET18_GRAPH,
        "graph_residual": GRAPH_RESIDUAL,
        "chained_add": CHAINED_ADD,
        "norm_statistics": NORM_STATISTICS,
        "parallel_sum": PARALLEL_SUM,
    }
    return spec_of(texts[name]) if name in texts else netspec.load_spec(SPECS / f"{name}.yaml")


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",  # residual blocks hold their input (and a projection's output) to the end
        "googlenet",  # parallel branches held until their concat
        "densenet121",  # concat merges with the block input
        "mobilenet_v3_large",  # squeeze-and-excitation gates (mul)
        "shufflenet_v2_x1_0",  # views (channel_split) keep their input alive
        "vgg11",  # flatten and dropout: views, no copies
        "tiny_graph",  # a graph list: values freed after their last reader, several outputs
        "resnet18_graph",  # graph blocks (GraphNetwork) inside stages
        "graph_residual",  # a merged block whose body reads names: an explicit merge node
        "chained_add",  # a merge of three: op by op, inputs freed after their last reader
        "norm_statistics",  # group/layer norm statistics; an input read twice by one merge
        "parallel_sum",  # a tree block's sum of three branches, all held
        "dla34",  # timm's DLA: trees of graph blocks
        "resnet50_fpn",  # frozen batch norm temporaries, an FPN's top-down graph
    ],
)
def test_peak_activation_memory_equals_the_live_tensors_torch_holds(name):
    spec = spec_named(name)
    root = lower(spec, (SIZE, SIZE))
    model = netspec.build(spec, input_size=SIZE, seed=0)
    assert 4 * peak_activations(root) == measured_peak(model, root.in_shape)


def test_the_report_carries_the_peak_beside_the_training_sum():
    analysis = netspec.analyze(spec_named("resnet18"), SIZE)
    total = analysis.to_json()["total"]
    assert total["peak_activation_bytes"] == 4 * total["peak_activations"] == analysis.peak_activation_bytes
    # inference frees what training keeps: the peak is a fraction of the sum of every output
    assert total["peak_activations"] < total["activations"] / 3


def test_the_measurement_sees_a_block_that_holds_its_input():
    """The naive figure (each layer's input and output, nothing else) is wrong for a residual network,
    and the measurement says so: the block's input stays alive while its body runs."""
    spec = spec_named("resnet18")
    root = lower(spec, (SIZE, SIZE))
    naive = 4 * max(numel(layer.in_shape) + numel(layer.out_shape) for layer in layers(root))
    assert naive < measured_peak(netspec.build(spec, input_size=SIZE, seed=0), root.in_shape)
