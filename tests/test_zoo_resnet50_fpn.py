"""`specs/resnet50_fpn.yaml` equals torchvision's `resnet_fpn_backbone(backbone_name="resnet50",
weights=None)` (Lin et al. 2017, "Feature Pyramid Networks for Object Detection"): the same parameter
count, fvcore's MAC count of the reference in eval mode, the same module names (`body.layer1.0.conv1`,
`fpn.inner_blocks.3.0`, FrozenBatchNorm2d buffers), so the reference's state_dict loads strictly, and
the same five outputs "0", "1", "2", "3", "pool". Their strides are the paper's 4, 8, 16, 32, 64, and
their receptive fields are measured on the reference by the support of an output pixel's gradient.

The top-down pathway reads outputs of earlier stages (`from: body.layer3`) and merges two maps
(`add`), which only a graph spec (named references, several `outputs`) can write."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import netspec

from .conftest import SPECS, fvcore_macs, n_params

SPEC = SPECS / "resnet50_fpn.yaml"
LEVELS = ["0", "1", "2", "3", "pool"]
# the module whose output each level is (the spec's `outputs:`)
LEVEL_MODULES = dict(zip(LEVELS, [*(f"fpn.layer_blocks.{i}.0" for i in range(4)), "pool"], strict=True))
OTHER_DEPTHS = {"resnet101": "[3, 4, 23, 3]", "resnet152": "[3, 8, 36, 3]"}  # torchvision's resnet.py
STRIDES = dict(zip(LEVELS, [4, 8, 16, 32, 64], strict=True))  # P2..P6, Lin et al. 2017, Sec. 3 and 4.1

pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def reference() -> torch.nn.Module:
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    return resnet_fpn_backbone(backbone_name="resnet50", weights=None).eval()


@functools.cache
def compiled():
    spec = netspec.load_spec(SPEC)
    return spec, netspec.analyze(spec)


def rows():
    return {r.path: r for r in compiled()[1].rows}


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Frozen batch norms with statistics and affine terms as a trained backbone has them (fresh ones
    are the identity, under which a misplaced norm would go unnoticed)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)
            m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def test_params_equal_torchvision():
    _, analysis = compiled()
    assert analysis.params == n_params(reference()) == 26_799_296


def test_macs_equal_fvcore_count_of_torchvision_in_eval_mode():
    # fvcore counts the convolutions and 1 per output element of each nearest upsampling
    _, analysis = compiled()
    assert analysis.macs == fvcore_macs(reference(), (3, 224, 224))


def test_torchvision_state_dict_loads_strictly_and_every_level_agrees():
    spec, analysis = compiled()
    model = netspec.build(spec).eval()
    ref = trained_like(reference())
    model.load_state_dict(ref.state_dict())  # strict: the same keys and shapes, buffers included
    assert list(model.state_dict()) == list(ref.state_dict())  # in torchvision's order
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert list(ours) == list(theirs) == LEVELS
    assert analysis.outputs == {level: tuple(y.shape[1:]) for level, y in theirs.items()}
    for level in LEVELS:
        torch.testing.assert_close(ours[level], theirs[level], msg=level)


@pytest.mark.parametrize("backbone", list(OTHER_DEPTHS))
def test_other_depths_by_vars_equal_torchvisions_fpn_backbones(backbone):
    # the same state_dict keys and shapes (both built on the meta device: no weights are made)
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    spec = netspec.load_spec(SPEC, [f"vars.depths={OTHER_DEPTHS[backbone]}"])
    with torch.device("meta"):
        ref = resnet_fpn_backbone(backbone_name=backbone, weights=None)
        ours = netspec.build(spec)
    assert netspec.analyze(spec).params == n_params(ref)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in ref.state_dict().items()
    ]


def test_level_strides_are_the_papers_and_torchvisions():
    # the reference's output sizes at a 256x256 input (shapes only: PyTorch's meta device) give each
    # level's stride; netspec's static jump must be the same, the paper's 4, 8, 16, 32, 64
    with torch.device("meta"):
        out = copy.deepcopy(reference()).to("meta")(torch.empty(1, 3, 256, 256))
    static = rows()
    for level, stride in STRIDES.items():
        assert tuple(out[level].shape[-2:]) == (256 // stride, 256 // stride), level
        assert static[LEVEL_MODULES[level]].jump == (stride, stride), level


@functools.cache
def probe() -> torch.nn.Module:
    """The reference, made to show its receptive fields in its gradients: every conv averages its
    window with positive weights (no cancellation), the frozen norms are identities, and the stem's
    max pool is an average pool of the same window geometry (max pooling passes a gradient to one
    position of its window; the theoretical field counts them all)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = copy.deepcopy(reference())
    model.body.maxpool = torch.nn.AvgPool2d(3, stride=2, padding=1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, FrozenBatchNorm2d):
                for buffer, value in (
                    ("weight", 1.0),
                    ("bias", 0.0),
                    ("running_mean", 0.0),
                    ("running_var", 1.0),
                ):
                    getattr(m, buffer).fill_(value)
                m.eps = 0.0
    return model


def measured_fields(width: int = 768) -> dict[str, list[int]]:
    """Per level, the width of the input columns that the gradient of one output column reaches, for
    a full period of positions around the middle (a level whose top-down input was upsampled by s
    from a coarser map has fields that repeat every s pixels). A 32-pixel-high input keeps it cheap:
    the fields are measured along the width, far wider than any field here."""
    x = torch.ones(1, 3, 32, width, requires_grad=True)
    out = probe()(x)
    fields: dict[str, list[int]] = {}
    for level, stride in STRIDES.items():
        y = out[level]
        middle = y.shape[-1] // 2
        period = max(1, 32 // stride)  # the coarsest map feeding the level (layer4) has stride 32
        seeds = torch.zeros(period, *y.shape)  # one backward per column, batched
        for i in range(period):
            seeds[i, 0, :, 0, middle + i] = 1.0
        (g,) = torch.autograd.grad(y, x, seeds, retain_graph=True, is_grads_batched=True)
        fields[level] = []
        for i in range(period):
            reached = (g[i, 0].sum((0, 1)) > 0).nonzero().flatten()
            assert reached[0] > 0 and reached[-1] < width - 1, "the field reaches the border"
            fields[level].append(int(reached[-1] - reached[0] + 1))
    return fields


def test_receptive_fields_of_the_levels_match_the_measured_gradient_support():
    fields = measured_fields()
    static = rows()
    for level in LEVELS:
        rf = static[LEVEL_MODULES[level]].receptive_field
        assert rf is not None and rf[0] == rf[1], level
        low, high = min(fields[level]), max(fields[level])
        if low == high:  # every pixel of the level has one field: netspec's must be it
            assert rf[0] == low, (level, fields[level])
        else:  # the field depends on the pixel's place on the upsampled grid: one of them, or between
            assert low <= rf[0] <= high, (level, fields[level])


ANY_SIZE = (200, 264)  # not multiples of 32: layer1..layer4 are 50x66, 25x33, 13x17, 7x9


def test_any_input_size_equals_torchvision_where_maps_do_not_halve_exactly():
    # torchvision upsamples each top-down map to its lateral's size; so does the spec (`size: like`):
    # a factor of 2 would give 14x18 against 13x17 here
    spec = netspec.load_spec(SPEC, [f"input.size=[{ANY_SIZE[0]}, {ANY_SIZE[1]}]"])
    analysis = netspec.analyze(spec)
    model = netspec.build(spec).eval()
    ref = trained_like(reference())
    model.load_state_dict(ref.state_dict())
    torch.manual_seed(1)
    x = torch.randn(1, 3, *ANY_SIZE)
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert analysis.outputs == {level: tuple(y.shape[1:]) for level, y in theirs.items()}
    assert analysis.outputs["2"] == (256, 13, 17)
    for level in LEVELS:
        torch.testing.assert_close(ours[level], theirs[level], msg=level)
    assert analysis.macs == fvcore_macs(reference(), (3, *ANY_SIZE))


def test_exported_source_and_its_torchscript_equal_torchvision_at_any_size(tmp_path):
    from netspec.export import export_source

    from .test_dag_export import load

    spec = netspec.load_spec(SPEC, [f"input.size=[{ANY_SIZE[0]}, {ANY_SIZE[1]}]"])
    module = load(export_source(spec), "generated_resnet50_fpn", tmp_path)
    ref = trained_like(reference())
    exported = module.build_model().eval()
    exported.load_state_dict(ref.state_dict())
    scripted = torch.jit.script(exported)
    torch.manual_seed(2)
    x = torch.randn(1, 3, *ANY_SIZE)
    with torch.no_grad():
        theirs = ref(x)
        for ours in (exported(x), scripted(x)):
            assert list(ours) == LEVELS
            for level in LEVELS:
                torch.testing.assert_close(ours[level], theirs[level], msg=level)


@pytest.mark.parametrize(("name", "overrides"), [("resnet18", []), ("resnet50", ["tricks=[resnet_b]"])])
def test_conv_norm_sets_the_projection_norm_as_torchvisions_norm_layer(name, overrides):
    # the backbone's mechanism, on the zoo's ResNets: `defaults: conv: {norm: frozen_batchnorm}` is
    # torchvision's `resnet*(norm_layer=FrozenBatchNorm2d)`, whose downsample takes the same norm
    from torchvision import models
    from torchvision.ops.misc import FrozenBatchNorm2d

    spec = netspec.load_spec(SPECS / f"{name}.yaml", ["defaults.conv.norm=frozen_batchnorm", *overrides])
    model = netspec.build(spec).eval()
    ref = trained_like(getattr(models, name)(weights=None, norm_layer=FrozenBatchNorm2d).eval())
    model.load_state_dict(ref.state_dict())  # strict: the downsample's norm has buffers, no parameters
    assert list(model.state_dict()) == list(ref.state_dict())
    norm = model.layer2[0].downsample[1]
    assert type(norm).__name__ == FrozenBatchNorm2d.__name__ and not list(norm.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
