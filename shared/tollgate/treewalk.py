"""The compiled loop of the prepared path: every tree of a boosted ensemble, for every row, in one call.

Compiled by numba on first use and cached beside this file (the container image compiles it at
build time). Same comparisons as scikit-learn's own predictor (missing → the node's side,
``x <= threshold`` → left) and the leaves added in the same order, without fast-math, so raw
scores are bit for bit those of ``HistGradientBoosting*._raw_predict``.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def walk(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray, left: np.ndarray,
         right: np.ndarray, value: np.ndarray, roots: np.ndarray, baseline: np.ndarray,
         out: np.ndarray) -> None:   # pragma: no cover - compiled
    k = out.shape[1]
    for i in range(x.shape[0]):
        for c in range(k):
            out[i, c] = baseline[c]
    # one tree at a time over all rows: its few nodes stay in L1 while the rows go through it;
    # each row still receives the trees' leaves in the trees' order
    for t in range(roots.shape[0]):
        c = t % k
        for i in range(x.shape[0]):
            node = roots[t]
            while feature[node] >= 0:
                v = x[i, feature[node]]
                if np.isnan(v):
                    node = left[node] if missing_left[node] else right[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            out[i, c] += value[node]


def warm() -> None:
    """Compile (or load from the cache) the loop for the dtypes the prepared path passes: a container
    image calls this at build time so that no instance compiles at start-up."""
    x = np.zeros((1, 1))
    tree = dict(feature=np.array([0, -1, -1], np.int32), threshold=np.zeros(3), missing_left=np.ones(3, np.uint8),
                left=np.array([1, 0, 0], np.int32), right=np.array([2, 0, 0], np.int32),
                value=np.array([0.0, 1.0, 2.0]))
    out = np.empty((1, 1))
    walk(x, tree["feature"], tree["threshold"], tree["missing_left"], tree["left"], tree["right"], tree["value"],
         np.zeros(1, np.int32), np.zeros(1), out)
    assert out[0, 0] == 1.0
