"""Bad input never eats memory: the whole bad-spec corpus (alias bombs, 1000-deep nesting, huge
depths and widths, multi-MB inputs) is validated in one process whose address space is capped at
1 GiB by the kernel (RLIMIT_AS); each file still gets its one-screen error and exit code 2."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from .conftest import ROOT

BAD = sorted((ROOT / "tests" / "bad_specs").glob("*.yaml"))
LIMIT = 1 << 30


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS (Linux)")
def test_whole_corpus_is_rejected_within_one_gib_of_address_space(tmp_path):
    huge = tmp_path / "huge.yaml"  # a multi-MB file on top of the corpus
    huge.write_text("name: big\nvars:\n" + "".join(f"  v{i}: {i}\n" for i in range(300_000)))
    files = [str(p) for p in BAD] + [str(huge)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", *files],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_cap_memory,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    for path in files:  # every file got its own error line(s)
        assert path in proc.stderr, path
