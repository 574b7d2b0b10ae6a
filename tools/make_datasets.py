"""Maintainer script: write src/loopgrad/data/builtin.npz from the data sets scikit-learn ships.

loopgrad then loads them without importing scikit-learn (about 1 s of a short run's start-up).
The values are those of scikit-learn's loaders, unchanged (digits stored as uint8, exactly).
Run: python tools/make_datasets.py
"""
import pathlib

import numpy as np
from sklearn import datasets as skd

OUT = pathlib.Path(__file__).resolve().parents[1] / "src" / "loopgrad" / "data" / "builtin.npz"


def main():
    arrays = {}
    for name, loader in {"digits": skd.load_digits, "iris": skd.load_iris, "breast_cancer": skd.load_breast_cancer,
                         "wine": skd.load_wine, "diabetes": skd.load_diabetes}.items():
        X, y = loader(return_X_y=True)
        if name == "digits":
            assert (X == X.astype(np.uint8)).all()
            X = X.astype(np.uint8)
        arrays[f"{name}_X"] = X
        arrays[f"{name}_y"] = y
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
