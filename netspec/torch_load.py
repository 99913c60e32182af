"""Why torch.load refused a file, in words a user can act on.

The one place that turns torch's load errors into a reason: torch's advice to retry with
`weights_only=False` (which would run whatever code the file holds), to allowlist globals or to file
an issue is never repeated, since netspec never does any of that and none of it fixes a bad file.
"""

from __future__ import annotations

import re

from .errors import printable

# Sentences of torch's load errors that are advice, not a reason.
_ADVICE = re.compile(
    r"[^.\n]*(weights_only|safe_globals|file an issue|internal miniz error|high likelihood|"
    r"transferred incorrectly|trusted source|documentation of torch\.load|In PyTorch 2\.6)[^.\n]*\.?",
    re.IGNORECASE,
)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# the unpickler's own reason, before torch's pointer to its documentation
_UNPICKLER = re.compile(r"WeightsUnpickler error: *(.+?)(?: *Check the documentation.*)?$")


def pickled_object(exc: BaseException) -> str | None:
    """The Python object a weights-only load refused to unpickle (`argparse.Namespace`), if that is why."""
    found = _GLOBAL.search(str(exc))
    return printable(found.group(1), 200) if found else None


def torch_reason(exc: BaseException) -> str:
    """Why a loader failed, in one line, without torch's advice."""
    for line in str(exc).splitlines():
        reason = " ".join(_ADVICE.sub("", line).split()).strip(" .:(")
        if reason:
            return printable(f"{type(exc).__name__}: {reason}", 300)
    return f"{type(exc).__name__}: empty, truncated or not a checkpoint"


def load_failure(exc: BaseException) -> str:
    """Why `torch.load(weights_only=True)` refused a file: a pickled object, invalid pickle data, or
    whatever else torch said, without its advice."""
    found = pickled_object(exc)
    if found:
        return f"it holds a pickled Python object ({found}), which netspec never unpickles"
    unpickler = _UNPICKLER.search(str(exc).replace("\n", " "))
    if unpickler:
        detail = _ADVICE.sub("", " ".join(unpickler.group(1).split())).strip(" .")
        stopped = "the weights-only unpickler stopped: invalid pickle data"
        return f"{stopped} ({printable(detail, 200)})" if detail else stopped
    return torch_reason(exc)
