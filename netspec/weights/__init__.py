"""Importing pretrained weights (torchvision, timm, or any state_dict) into a spec's module.

- `checkpoint`: reading a file into a flat state_dict, safely (never unpickling code).
- `matching`: pairing its tensors with the model's, by name, then by structure, never by a guess.
- `layouts`: named rules for tensors stored in another layout (a Linear weight as a 1x1 conv's).
- `reference`: checking the result against torchvision or timm (`verify=`, `--verify`).
- `importer`: `import_weights` and its `ImportReport`.
"""

from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint, safe_torch_load
from .importer import ImportReport, import_weights
from .layouts import RULES, LayoutRule
from .matching import Ambiguity, Pairing, match_state_dicts, parallel_branches
from .reference import Verification, VerificationError, build_reference

__all__ = [
    "Ambiguity",
    "Checkpoint",
    "ImportReport",
    "LayoutRule",
    "Pairing",
    "RULES",
    "Verification",
    "VerificationError",
    "build_reference",
    "import_weights",
    "load_checkpoint",
    "match_state_dicts",
    "parallel_branches",
    "read_checkpoint",
    "safe_torch_load",
]
