"""Importing pretrained weights (torchvision, timm, or any state_dict) into a spec's module.

- `checkpoint`: reading a file into a flat state_dict, safely (never unpickling code).
- `matching`: pairing its tensors with the model's, by name, then by structure, never by a guess.
- `reference`: checking the result against torchvision or timm (`verify=`, `--verify`).
- `importer`: `import_weights` and its `ImportReport`.
"""

from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint, safe_torch_load
from .importer import ImportReport, import_weights
from .matching import Ambiguity, Pairing, match_state_dicts, parallel_branches
from .reference import Verification, VerificationError, build_reference

__all__ = [
    "Ambiguity",
    "Checkpoint",
    "ImportReport",
    "Pairing",
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
