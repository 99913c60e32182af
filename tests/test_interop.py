"""netspec models in other people's code: feature levels, create_model, timm, torch.hub, torchvision.

Every claim is checked against timm's or torchvision's own models (weights=None / pretrained=False):
the levels' shapes, channels and reductions against timm's `features_only`, intermediate outputs and
logits against torchvision's modules loaded with the same weights.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

import netspec
from netspec import SpecError
from netspec.features import feature_info
from netspec.zoo import zoo_specs

from .conftest import ROOT, SPECS

timm = pytest.importorskip("timm")
import netspec.timm  # noqa: E402  (registers the zoo with timm: needs timm)

LEVELS = ["layer1", "layer2", "layer3", "layer4"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def spec(name: str, *overrides: str):
    return netspec.load_spec(SPECS / f"{name}.yaml", list(overrides))


def zoo_names() -> list[str]:
    return [p.stem for p in zoo_specs() if not p.stem.startswith("_")]


@pytest.fixture(scope="module")
def r18_weights(tmp_path_factory):
    """A torchvision resnet18 with random weights (nothing downloaded), saved as a state_dict file."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.fixture(scope="module")
def timm_resnet50d_features():
    """timm's own resnet50d, features_only, at 224: (output shapes, channels, reductions). Run on
    the meta device: timm's code computes the shapes, no weights are made."""
    with torch.device("meta"):
        model = timm.create_model("resnet50d", pretrained=False, features_only=True).eval()
        shapes = [tuple(y.shape) for y in model(torch.randn(1, 3, 224, 224))]
    return shapes, model.feature_info.channels(), model.feature_info.reduction()


# ---- feature levels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("resnet18", "resnet18"),
        ("resnet34", "resnet34"),
        ("resnet50", "resnet50"),
        ("resnet50_d", "resnet50d"),
        ("resnext50_32x4d", "resnext50_32x4d"),
        ("wide_resnet50_2", "wide_resnet50_2"),
        ("resnet101", "resnet101"),
        ("densenet121", "densenet121"),
        ("vgg16", "vgg16"),  # inside torchvision's `features` wrapper; timm's last level is its MLP head
        ("regnet_y_400mf", "regnety_004"),  # squeeze-excitation: the grid strides on past a global gate
    ],
)
def test_default_levels_have_timms_channels_and_reductions(ours, theirs):
    levels = feature_info(spec(ours))  # static: nothing built
    with torch.device("meta"):
        reference = timm.create_model(theirs, pretrained=False)
    n = 5  # stem (or first stage) and four more reductions
    assert levels.channels()[:n] == [f["num_chs"] for f in reference.feature_info][:n]
    assert levels.reduction()[:n] == [f["reduction"] for f in reference.feature_info][:n]
    assert len(levels) == len(reference.feature_info)


def test_build_features_equal_timm_resnet50d_features_only_at_224(timm_resnet50d_features):
    shapes, channels, reductions = timm_resnet50d_features
    model = netspec.build(spec("resnet50_d"), features=True).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 224, 224))
    assert isinstance(outputs, list)
    assert [tuple(y.shape) for y in outputs] == shapes
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == reductions
    assert model.feature_info.module_name() == ["relu3", *LEVELS]
    assert [(1, *s) for s in model.feature_info.shapes()] == shapes  # the analysis' shapes, ran


def test_features_by_name_equal_torchvision_intermediate_outputs(r18_weights):
    """Names at any depth; a returned output is what its module computed, even where the network
    goes on in place (bn1 is followed by an in-place ReLU, layer1.0.bn2 by `out += identity`)."""
    reference, path = r18_weights
    names = ["bn1", "layer1.0.bn2", "layer2", "layer4.1"]
    captured = {}
    for name in names:
        reference.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: captured.__setitem__(name, o.clone())
        )
    model = netspec.build(spec("resnet18"), features=names)
    model.load_state_dict(torch.load(path, weights_only=True), strict=False)  # the head is not in it
    assert set(model.state_dict()) < set(reference.state_dict())
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference(x)
        outputs = model(x)
    for name, y in zip(names, outputs, strict=True):
        torch.testing.assert_close(y, captured[name], rtol=0, atol=1e-6)


def test_features_module_scripts_exports_and_copies():
    model = netspec.build(spec("resnet20_cifar"), features=[0, "layer2.1", -1], seed=0).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = model(x)
        scripted = torch.jit.script(model)(x)
        exported = torch.export.export(model, (x,)).module()(x)
        copied = copy.deepcopy(model)  # as an EMA of the model makes it (timm's ModelEmaV3)
        copies = copied(x)
    for a, b, c, d in zip(eager, scripted, exported, copies, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, d)
        torch.testing.assert_close(a, c)
    assert copied.feature_info == model.feature_info


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (["layer5"], "has no module 'layer5'"),
        ([7], "level 7 is out of range"),
        ([], "non-empty list"),
        ([1.5], "module name or a level index"),
    ],
)
def test_bad_feature_choices_are_spec_errors(features, message):
    with pytest.raises(SpecError, match=message) as err:
        netspec.build(spec("resnet18"), features=features)
    if features == ["layer5"]:
        assert "did you mean 'layer4'?" in str(err.value)


def test_a_training_only_head_has_no_feature_to_return():
    with pytest.raises(SpecError, match="does not run in eval mode"):
        netspec.build(spec("googlenet"), features=["aux1"])


# ---- create_model ---------------------------------------------------------------------------------


def test_create_model_loads_torchvision_weights_and_gives_its_logits(r18_weights):
    reference, path = r18_weights
    model = netspec.create_model("resnet18", pretrained=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_create_model_num_classes_reinitialises_only_the_head(r18_weights):
    reference, path = r18_weights
    model = netspec.create_model("resnet18", num_classes=10, pretrained=path).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    expected = reference.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 10
        else:
            assert torch.equal(value, expected[key]), key


def test_create_model_refuses_weights_that_do_not_fit_outside_the_head(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(SpecError, match="outside its classifier head"):
        netspec.create_model("resnet18", num_classes=10, pretrained=path)
    with pytest.raises(SpecError, match="does not load"):
        netspec.create_model("resnet18", pretrained=path)
    with pytest.raises(SpecError, match="ships no weights"):
        netspec.create_model("resnet18", pretrained=True)


def test_create_model_overrides_are_set_overrides():
    """`stages.0.depth=1` is torchvision's ResNet with blocks [1, 2, 2, 2]; input_size sets the size."""
    model = netspec.create_model("resnet18", input_size=160, **{"stages.0.depth": 1})
    reference = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 2, 2, 2])
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    extractor = create_feature_extractor(reference.eval(), {f"layer{i}": str(i) for i in range(1, 5)})
    with torch.no_grad():
        shapes = [tuple(y.shape[1:]) for y in extractor(torch.randn(1, 3, 160, 160)).values()]
    assert model.feature_info.shapes()[1:] == shapes
    with pytest.raises(SpecError, match="unknown field"):
        netspec.create_model("resnet18", drop_rate=0.2)


def test_create_model_vars_mapping_sets_key_by_key():
    """`vars={"width": 0.5}` is torchvision's mobilenet_v2(width_mult=0.5), tensor for tensor."""
    model = netspec.create_model("mobilenet_v2", vars={"width": 0.5}, input_size=160)
    reference = torchvision.models.mobilenet_v2(width_mult=0.5)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    with torch.no_grad():
        assert model.feature_info.shapes()[-1] == tuple(
            reference.features(torch.randn(1, 3, 160, 160)).shape[1:]
        )


def test_create_model_features_only_with_out_indices_as_timm(r18_weights):
    _, path = r18_weights
    ours = netspec.create_model("resnet18", features_only=True, out_indices=(1, 3), pretrained=path)
    theirs = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 3))
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    last_two = netspec.create_model("resnet18", features_only=True, out_indices=2)
    assert last_two.feature_info.module_name() == ["layer3", "layer4"]


# ---- timm ------------------------------------------------------------------------------------------


def test_timm_knows_every_zoo_spec_with_its_input_config():
    assert {f"netspec_{n}" for n in zoo_names()} <= set(timm.list_models("netspec_*"))
    for name in zoo_names():
        s = spec(name)
        size = (s.input.size,) * 2 if isinstance(s.input.size, int) else tuple(s.input.size)
        cfg = timm.models.get_pretrained_cfg(f"netspec_{name}")
        assert cfg.input_size == (s.input.channels, *size)
        assert cfg.num_classes == (s.classes or 0)
        assert len(cfg.mean) == len(cfg.std) == s.input.channels


def test_timm_create_model_netspec_resnet50_d_features_only(timm_resnet50d_features):
    shapes, channels, reductions = timm_resnet50d_features
    model = timm.create_model("netspec_resnet50_d", num_classes=10, features_only=True).eval()
    with torch.no_grad():
        assert [tuple(y.shape) for y in model(torch.randn(1, 3, 224, 224))] == shapes
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == reductions


def test_timm_create_model_classifier_with_timms_data_config(r18_weights):
    reference, path = r18_weights
    model = timm.create_model("netspec_resnet18", num_classes=10, dtype=torch.float64).eval()
    assert model(torch.randn(2, 3, 64, 64, dtype=torch.float64)).shape == (2, 10)
    config = timm.data.resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 224, 224)
    assert model.pretrained_cfg["num_classes"] == 10
    timm.data.create_transform(**config)  # timm builds its eval transform from it
    loaded = timm.create_model(
        "netspec_resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(path)}
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), reference(x), rtol=0, atol=1e-5)
    with pytest.raises(SpecError, match="ships no weights"):
        timm.create_model("netspec_resnet18", pretrained=True)


def test_timms_feature_list_net_wraps_a_netspec_classifier():
    """`feature_info` on a built classifier is what timm's own FeatureListNet needs."""
    wrapped = timm.models.FeatureListNet(netspec.build(spec("resnet18"), seed=0), out_indices=(0, 1, 2, 3, 4))
    ours = netspec.build(spec("resnet18"), seed=0, features=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(wrapped.eval()(x), ours.eval()(x), strict=True):
            assert torch.equal(a, b)
    assert wrapped.feature_info.channels() == ours.feature_info.channels()


# ---- torch.hub and torchvision ----------------------------------------------------------------------


def test_hubconf_has_one_entry_per_zoo_spec():
    loader = importlib.util.spec_from_file_location("netspec_hubconf", ROOT / "hubconf.py")
    assert loader is not None and loader.loader is not None
    hubconf = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(hubconf)
    # torch.hub.list's rule: every public callable of hubconf.py is an entry point
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert entries == set(zoo_names())
    for dependency in hubconf.dependencies:
        assert importlib.util.find_spec(dependency) is not None


def test_torch_hub_load_local(r18_weights):
    reference, path = r18_weights
    model = torch.hub.load(str(ROOT), "resnet50_d", source="local", num_classes=10, verbose=False)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    loaded = torch.hub.load(str(ROOT), "resnet18", source="local", pretrained=path, verbose=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), reference(x), rtol=0, atol=1e-5)
    levels = torch.hub.load(str(ROOT), "resnet18", source="local", features_only=True, verbose=False)
    assert levels.feature_info.channels() == [64, 64, 128, 256, 512]


def test_torchvision_create_feature_extractor_on_a_built_module():
    """resnet50_b is torchvision's resnet50 layout (the paper's resnet50 has the same shapes)."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    model = netspec.build(spec("resnet50_b"))
    model.load_state_dict(reference.state_dict())
    nodes = {name: name for name in LEVELS}
    ours = create_feature_extractor(model.eval(), nodes)
    theirs = create_feature_extractor(reference, nodes)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert list(a) == LEVELS
    for name in LEVELS:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-5)
    paper = create_feature_extractor(netspec.build(spec("resnet50")).eval(), nodes)
    with torch.no_grad():
        assert {k: v.shape for k, v in paper(x).items()} == {k: v.shape for k, v in b.items()}
