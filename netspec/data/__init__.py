"""Files shipped inside the package: `digits.npz` (scikit-learn's 1,797 8x8 digits, the default
training data; written by tools/make_digits.py) and `netspec.schema.json` (the JSON Schema of spec
files, `netspec schema`; what `netspec new` points editors at)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
SCHEMA_FILE = DATA_DIR / "netspec.schema.json"
