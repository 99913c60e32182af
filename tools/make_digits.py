"""Write netspec/data/digits.npz: scikit-learn's 1,797 handwritten 8x8 digits (UCI optdigits test set),
so the default training data needs no optional package. Run once; tests/test_packaging.py checks the
file against `sklearn.datasets.load_digits()` wherever scikit-learn is installed.

    .venv/bin/python tools/make_digits.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "netspec" / "data" / "digits.npz"


def main() -> None:
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # grey levels 0..16, exact in uint8
    labels = bunch.target.astype(np.uint8)
    assert (images == bunch.images).all() and (labels == bunch.target).all()
    np.savez_compressed(OUT, images=images, labels=labels)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): images {images.shape}, labels {labels.shape}")


if __name__ == "__main__":
    main()
