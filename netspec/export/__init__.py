"""Source export: a spec becomes one standalone, readable PyTorch file (`netspec export`).

The file reads like torchvision's models/resnet.py: a class per block kind, then the network, whose
stages are loops and whose constructor ends with the weight initialisation, then a factory
`build_model(seed=None, **kwargs)`, the constants `INPUT_SHAPE` and `RECIPE` (the spec's `train:` section:
`netspec train model.py` reads both) and a `__main__` smoke check. It imports torch only; its modules have
the compiled module's names, so `state_dict`s move between the two, and `build_model(seed=s)` gives the
tensors of `netspec.build(spec, seed=s)` bit for bit.

The pipeline, one module each: the spec is lowered once; every layer becomes its kind's constructor call
(calls.py, the description the torch backend instantiates); the block instances are unified into classes
(unify.py, params.py, classes.py) and written (blockcode.py); the network's stages become loops
(network.py); a graph list (items that read each other by name) places its modules at their dotted names
and names every value in its forward (graph.py); the init is written from the kinds' init steps
(init.py); the templates render it all and the file is proved against the compiled module on the meta
device (render.py).

Safety: the templates (top-level `templates/*.j2`) receive only code the exporter wrote itself:
identifiers that match a strict ASCII pattern (module names are validated by netspec; class and
argument names are derived here and checked again), literals rendered from validated Python values
(numbers, booleans, and strings through `ascii()`), and docstrings whose every quote, backslash and
non-ASCII character is escaped. A kind whose module is not torch.nn's brings its class as
`LayerKind.module_source`: trusted code of an installed package (like the plug-in itself), checked with
`ast` (one class definition, no imports) and inserted as is, with no spec value in it.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ..ir import SeqNode
from ..lower import lower
from ..spec import Spec
from .blockcode import class_code
from .calls import LayerCalls
from .calls import class_source as plugin_class_source
from .classes import DOC_WIDTH, build_classes
from .code import lit
from .docstrings import docstring, escape, wrap
from .errors import ExportError
from .graph import is_graph, outputs
from .init import init_code
from .names import camel
from .network import NetworkWriter, designate_classes
from .render import LINE_LENGTH, environment, format_source, prove_file
from .unify import Unifier

__all__ = ["LINE_LENGTH", "ExportError", "export_source", "format_source", "plugin_class_source"]


def export_source(spec: Spec, *, format: bool = True, verify: bool = True) -> str:
    """The spec as one standalone PyTorch source file (a string).

    `format`: run `ruff format` on it when ruff is installed (the file is valid Python either way).
    `verify`: build the file's network on the meta device and check it against the compiled one.
    Raises SpecError for an invalid spec and ExportError for one this exporter cannot write.
    """
    from ..analysis import analyze_ir
    from ..train.recipe import recipe_from_spec

    root = lower(spec)
    analysis = analyze_ir(root, spec.name)
    calls = LayerCalls(root)
    helpers: set[str] = set()  # what the file needs besides classes: `_sequential`, `torch.cat`
    has_classes_arg = designate_classes(root, spec.classes, calls.overrides)
    unifier = Unifier(calls, helpers)
    names = set(calls.sources)  # class names taken (the shipped module classes first)
    classes = build_classes(unifier, root, spec, names)
    blocks = [class_code(cls, helpers) for cls in classes]
    model = NetworkWriter(unifier, helpers).model_code(root)
    weights = init_code(root, calls, unifier.class_of)
    returned = _returned(root, analysis)
    model_name = camel(spec.name, "Model")
    k = 2
    while model_name in names:
        model_name = f"{camel(spec.name, 'Model')}Net{'' if k == 2 else k}"
        k += 1
    shipped = [text for name, text in calls.sources.items() if name in calls.used]
    context = {
        "docstring": docstring(_intro(spec, analysis, returned), ""),
        "uses_functional": any(re.search(r"\bF\.", text) for text in shipped),
        "module_classes": shipped,
        "uses_named_sequential": "_sequential" in helpers,
        "classes": blocks,
        "model": _network_context(
            spec, model_name, model, weights.lines, has_classes_arg, analysis, returned
        ),
        "uses_ordered_dict": model["outputs"] is not None,
        "factory_doc": docstring(
            wrap(
                f"The `{spec.name}` network with the spec's defaults"
                + ("; keyword arguments override them (`num_classes=10`)." if has_classes_arg else ".")
                + " A seed makes its initial weights those of `netspec.build(spec, seed=seed)`.",
                DOC_WIDTH,
            ),
            "    ",
        ),
        "input_shape_literal": lit(tuple(analysis.input_shape)),
        "seed_literal": lit(spec.init.seed),
        # the spec's `train:` section, validated, as the fields it sets (the defaults fill the rest)
        "recipe_literal": lit(recipe_from_spec(spec).model_dump(mode="json", exclude_defaults=True)),
    }
    text = environment().get_template("model.py.j2").render(**context)
    ast.parse(text)  # never hand back a file that does not parse
    if verify:
        prove_file(text, root, weights)
    return format_source(text) if format else text


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _returned(root: SeqNode, analysis: Any) -> str:
    """What the network returns, in words: its output shape, or its named outputs and their shapes."""
    named = outputs(root) if is_graph(root) else None
    if not named:
        return f"output: {_shape_text(analysis.output_shape)}"
    shapes = {c.name: c.out_shape for c in root.children}
    pairs = ", ".join(f"{escape(key)}: {_shape_text(shapes[name])}" for key, name in named.items())
    return f"outputs (an OrderedDict): {pairs}"


def _intro(spec: Spec, analysis: Any, returned: str) -> list[str]:
    name = escape(spec.name)
    intro = [f"{name}: a standalone PyTorch model generated by netspec from the spec `{name}`."]
    if spec.description:
        intro += ["", *wrap(spec.description, LINE_LENGTH - 4)]
    shape = "x".join(map(str, analysis.input_shape))
    dims = " x ".join(map(str, analysis.input_shape))
    return [
        *intro,
        "",
        *wrap(f"Input: {shape} (a batch is N x {dims}); {returned}.", LINE_LENGTH - 4),
        f"Parameters: {analysis.params:,}. MACs: {analysis.macs:,} ({analysis.macs / 1e9:.2f} G; one sample,",
        "eval mode, counted as fvcore counts).",
        "",
        "This file needs only PyTorch: blocks first, then the network, then `build_model`. Its module names",
        "are netspec's, so a state_dict of the compiled spec loads here as is, and `build_model(seed=s)`",
        "starts from the weights of `netspec.build(spec, seed=s)`.",
    ]


def _network_context(
    spec: Spec,
    name: str,
    model: dict[str, Any],
    weights: list[str],
    has_classes_arg: bool,
    analysis: Any,
    returned: str,
) -> dict[str, Any]:
    shape = "x".join(map(str, analysis.input_shape))
    doc = f"The `{spec.name}` network: input {shape}, {returned}."
    if model["aux"]:
        doc += " In training mode it returns (logits, [aux logits])."
    return {
        "name": name,
        "doc": docstring(wrap(doc, DOC_WIDTH), "    "),
        "signature": f"self, num_classes: int = {spec.classes}" if has_classes_arg else "self",
        "init": model["init"],
        "weights": weights,
        "steps": model["steps"],
        "aux": model["aux"],
        "returns": "tuple[Tensor, list[Tensor]] | Tensor"
        if model["aux"]
        else "dict[str, Tensor]"
        if model["outputs"]
        else "Tensor",
        "forward": model["forward"],
    }
