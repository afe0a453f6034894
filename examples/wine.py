"""Write a wine cultivar dataset as CSV: a three-class classification with integer labels (0, 1, 2), the kind of
CSV a new user brings. Made from scikit-learn's bundled wine measurements (178 rows, UCI), resampled with a
little noise, with one categorical column, so that any number of rows exists offline.

    python examples/wine.py FILE [--rows 700] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def wine_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` wines: 13 measurements, a `vineyard` and the `cultivar` (0, 1 or 2) to predict."""
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    base = data.data.rename(columns=lambda c: c.replace("/", "_"))
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(base), rows)
    frame = base.iloc[picked].reset_index(drop=True)
    frame += rng.normal(scale=0.25, size=frame.shape) * base.std().to_numpy()
    frame = frame.clip(lower=0).round(4)
    frame["magnesium"] = frame["magnesium"].round().astype(int)
    frame["vineyard"] = rng.choice(["north", "south", "east"], rows)
    frame["cultivar"] = data.target.to_numpy()[picked]
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wine_frame(args.rows, args.seed).to_csv(args.path, index=False)
    print(f"{args.rows} wines written to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
