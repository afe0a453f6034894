"""Write scikit-learn's bundled breast cancer data (569 cases) as CSV batches for `datasets/breast_cancer.yaml`.

    python examples/breast_cancer.py DIR [--batches 2]

The rows are shuffled with a fixed seed and cut into equal batches; column names are the
scikit-learn feature names with underscores, and `diagnosis` is `malignant` or `benign`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def cancer_frame(seed: int = 7) -> "pd.DataFrame":
    """The 569 cases, shuffled with ``seed``: `diagnosis` (`malignant` or `benign`) and the 30 measurements."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame.insert(0, "diagnosis", np.asarray(data.target_names)[data.target])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def make_batches(folder: Path, batches: int = 2, seed: int = 7) -> list[Path]:
    frame = cancer_frame(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(frame)), batches), start=1):
        path = folder / f"breast-cancer-{i}.csv"
        frame.iloc[part].to_csv(path, index=False)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batches", type=int, default=2)
    args = parser.parse_args()
    for path in make_batches(args.folder, args.batches):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
