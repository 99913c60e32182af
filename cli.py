"""Run netspec from a checkout without installing: `python cli.py report specs/resnet50.yaml`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netspec.cli import main

if __name__ == "__main__":
    main()
