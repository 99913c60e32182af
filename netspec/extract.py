"""A network's chosen intermediate outputs as a module of their own (`netspec.build(spec, features=...)`).

The module is the network traced with torch.fx (as torchvision's `create_feature_extractor` does),
each chosen module kept whole as one call, the graph ending in the list of their outputs and cut
after the last: what follows (the head, later stages) is not computed and not held. It keeps the
network's module names, so its state_dict is the classifier's without the head (a classifier's
checkpoint loads with `strict=False`, the head's keys unexpected); it is plain generated code, so
TorchScript, torch.export and torch.compile take it.

It returns a list (timm's `features_only`), in the order asked; `feature_info.module_name()` names
each entry, for a dict: `dict(zip(m.feature_info.module_name(), m(x)))`.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from torch import fx, nn

from .errors import Problem, SpecError
from .features import FeatureInfo


class FeatureExtractor(fx.GraphModule):
    """Returns `[output of module for module in feature_info.module_name()]`; `feature_info`
    (a FeatureInfo) is set on each instance and is plain data to TorchScript."""

    __jit_ignored_attributes__ = ["feature_info"]
    feature_info: FeatureInfo

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureExtractor:
        # GraphModule's copy rebuilds the module from its code and drops plain attributes; an EMA
        # copy (timm's ModelEmaV3) must keep the levels
        copied = cast(FeatureExtractor, super().__deepcopy__(memo))
        copied.feature_info = copy.deepcopy(self.feature_info, memo)
        return copied


class _TapTracer(fx.Tracer):
    """Keeps each chosen module as one call (a leaf), so its output is one node of the graph."""

    def __init__(self, taps: set[str]) -> None:
        super().__init__()
        self.taps = taps

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.taps or super().is_leaf_module(m, module_qualified_name)


def _keep_unchanged(node: fx.Node, model: nn.Module) -> None:
    """A returned output must stay what its module computed: a later step that would overwrite it in
    place (an in-place ReLU after the batch norm asked for, `out += shortcut` after a block's last
    layer) computes out of place instead."""
    for user in list(node.users):
        if user.op == "call_module":
            module = model.get_submodule(str(user.target))
            if getattr(module, "inplace", False) is True:
                module.inplace = False  # type: ignore[assignment]  # a bool that nn.ReLU & co. read in forward
        elif user.op == "call_method" and str(user.target).endswith("_") and user.args[0] is node:
            user.target = str(user.target)[:-1]  # add_ -> add
        elif user.kwargs.get("inplace") is True:
            user.kwargs = {**user.kwargs, "inplace": False}


def extract_features(model: nn.Module, info: FeatureInfo) -> FeatureExtractor:
    """The module returning the outputs of `info`'s modules of `model` (traced in eval mode, so
    training-only side heads are left out). `model` is consumed: the extractor shares its modules."""
    names = list(info.module_name())
    training = model.training
    model.eval()
    try:
        graph = _TapTracer(set(names)).trace(model)
    finally:
        model.train(training)
    calls = {str(n.target): n for n in graph.nodes if n.op == "call_module"}
    absent = [name for name in names if name not in calls]
    if absent:
        raise SpecError(
            [
                Problem(
                    f"module '{name}' does not run in eval mode (an auxiliary head?): it has no output",
                    ("features",),
                )
                for name in absent
            ]
        )
    for name in dict.fromkeys(names):
        _keep_unchanged(calls[name], model)
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = ([calls[name] for name in names],)
    extractor = FeatureExtractor(model, graph, class_name=type(model).__name__ + "Features")
    extractor.graph.eliminate_dead_code()
    extractor.delete_all_unused_submodules()
    extractor.recompile()
    extractor.train(training)
    extractor.feature_info = info
    return extractor


__all__ = ["FeatureExtractor", "extract_features"]
