"""Exact path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent individualized feature attribution for
tree ensembles", 2018, algorithm 2) over the flat node arrays of the prepared forest.

For each row, each tree's output is split among the features on the paths the row could take, weighting the
branches it does not take by the training rows that went down them (each node's ``count``): the attributions of a
row sum to its raw score minus the ensemble's expected raw score, exactly (to float rounding), which is what makes
them Shapley values of the trees' conditional expectations. Compiled by numba at the first explanation of a
process (numba cannot cache a recursive function); ``expected_value`` and ``brute_force`` (every coalition, for a
handful of features) are the checks.
"""

from __future__ import annotations

import itertools
import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _extend(d: np.ndarray, z: np.ndarray, o: np.ndarray, w: np.ndarray, length: int, pz: float, po: float,
            pi: int) -> None:   # pragma: no cover - compiled
    d[length], z[length], o[length] = pi, pz, po
    w[length] = 1.0 if length == 0 else 0.0
    for i in range(length - 1, -1, -1):
        w[i + 1] += po * w[i] * (i + 1) / (length + 1)
        w[i] = pz * w[i] * (length - i) / (length + 1)


@numba.njit(cache=True, nogil=True)
def _unwind(d: np.ndarray, z: np.ndarray, o: np.ndarray, w: np.ndarray, length: int,
            i: int) -> None:   # pragma: no cover - compiled
    """Remove element ``i`` from the path of ``length + 1`` elements (in place)."""
    n = w[length]
    zi, oi = z[i], o[i]
    for j in range(length - 1, -1, -1):
        if oi != 0:
            t = w[j]
            w[j] = n * (length + 1) / ((j + 1) * oi)
            n = t - w[j] * zi * (length - j) / (length + 1)
        else:
            w[j] = w[j] * (length + 1) / (zi * (length - j))
    for j in range(i, length):
        d[j], z[j], o[j] = d[j + 1], z[j + 1], o[j + 1]


@numba.njit(cache=True, nogil=True)
def _unwound_sum(z: np.ndarray, o: np.ndarray, w: np.ndarray, length: int, i: int) -> float:  # pragma: no cover
    """The sum of the weights the path would have without element ``i``, leaving it unchanged."""
    n = w[length]
    zi, oi = z[i], o[i]
    total = 0.0
    for j in range(length - 1, -1, -1):
        if oi != 0:
            t = n * (length + 1) / ((j + 1) * oi)
            total += t
            n = w[j] - t * zi * (length - j) / (length + 1)
        else:
            total += w[j] * (length + 1) / (zi * (length - j))
    return total


@numba.njit(nogil=True)   # not cached: numba's cache of a self-recursive function crashes when it is loaded
def _recurse(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray, left: np.ndarray,
             right: np.ndarray, value: np.ndarray, count: np.ndarray, phi: np.ndarray, node: int,
             d: np.ndarray, z: np.ndarray, o: np.ndarray, w: np.ndarray, parent: int, depth: int,
             pz: float, po: float, pi: int) -> None:   # pragma: no cover - compiled
    """One node: the path so far (``depth + 1`` elements from ``parent`` in the buffers) copied after the
    parent's, extended by the split that led here, then split between the hot and the cold child."""
    start = parent + depth + 1
    for k in range(depth + 1):
        d[start + k], z[start + k], o[start + k], w[start + k] = d[parent + k], z[parent + k], o[parent + k], \
            w[parent + k]
    pd, pz_, po_, pw = d[start:], z[start:], o[start:], w[start:]
    _extend(pd, pz_, po_, pw, depth, pz, po, pi)
    if feature[node] < 0:
        for i in range(1, depth + 1):
            phi[pd[i]] += _unwound_sum(pz_, po_, pw, depth, i) * (po_[i] - pz_[i]) * value[node]
        return
    f = feature[node]
    v = x[f]
    goes_left = missing_left[node] == 1 if np.isnan(v) else v <= threshold[node]
    hot = left[node] if goes_left else right[node]
    cold = right[node] if goes_left else left[node]
    iz, io = 1.0, 1.0
    for k in range(1, depth + 1):   # split on this feature before: undone here, redone below
        if pd[k] == f:
            iz, io = pz_[k], po_[k]
            _unwind(pd, pz_, po_, pw, depth, k)
            depth -= 1
            break
    total = float(count[node])
    _recurse(x, feature, threshold, missing_left, left, right, value, count, phi, hot, d, z, o, w, start,
             depth + 1, iz * count[hot] / total, io, f)
    _recurse(x, feature, threshold, missing_left, left, right, value, count, phi, cold, d, z, o, w, start,
             depth + 1, iz * count[cold] / total, 0.0, f)


@numba.njit(nogil=True)   # not cached, as it calls _recurse: compiled at the first explanation (a few seconds)
def shap_values(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
                left: np.ndarray, right: np.ndarray, value: np.ndarray, count: np.ndarray, roots: np.ndarray,
                k: int, max_depth: int, out: np.ndarray) -> None:   # pragma: no cover - compiled
    """``out[i, c, f]`` += the attribution of feature f to output c (a class's raw score) of row i, every tree."""
    size = (max_depth + 3) * (max_depth + 4) // 2 + 2
    d = np.zeros(size, np.int64)
    z = np.zeros(size)
    o = np.zeros(size)
    w = np.zeros(size)
    for i in range(x.shape[0]):
        for t in range(roots.shape[0]):
            _recurse(x[i], feature, threshold, missing_left, left, right, value, count, out[i, t % k], roots[t],
                     d, z, o, w, 0, 0, 1.0, 1.0, -1)


def max_depth(feature: np.ndarray, left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """The deepest leaf of any tree (the root is depth 0), walked from the roots."""
    deepest = 0
    for root in roots:
        stack = [(int(root), 0)]
        while stack:
            node, depth = stack.pop()
            if feature[node] < 0:
                deepest = max(deepest, depth)
            else:
                stack += [(int(left[node]), depth + 1), (int(right[node]), depth + 1)]
    return deepest


def expected_value(feature: np.ndarray, left: np.ndarray, right: np.ndarray, value: np.ndarray, count: np.ndarray,
                   roots: np.ndarray, k: int) -> np.ndarray:
    """Each output's expected raw score over the training rows (without the baseline): each tree's leaves
    weighted by the rows that reached them."""
    out = np.zeros(k)
    for t, root in enumerate(roots):
        stack, total = [int(root)], 0.0
        while stack:
            node = stack.pop()
            if feature[node] < 0:
                total += value[node] * count[node] / count[root]
            else:
                stack += [int(left[node]), int(right[node])]
        out[t % k] += total
    return out


def brute_force(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
                left: np.ndarray, right: np.ndarray, value: np.ndarray, count: np.ndarray, roots: np.ndarray,
                k: int, n_features: int) -> np.ndarray:
    """The same attributions from their definition, every coalition of features (for tests, a few features)."""

    def conditional(row: np.ndarray, known: set[int]) -> np.ndarray:
        out = np.zeros(k)
        for t, root in enumerate(roots):
            def expect(node: int) -> float:
                if feature[node] < 0:
                    return float(value[node])
                f = int(feature[node])
                if f in known:
                    v = row[f]
                    go = bool(missing_left[node]) if np.isnan(v) else v <= threshold[node]
                    return expect(int(left[node]) if go else int(right[node]))
                a, b = int(left[node]), int(right[node])
                return (count[a] * expect(a) + count[b] * expect(b)) / count[node]
            out[t % k] += expect(int(root))
        return out

    phi = np.zeros((x.shape[0], k, n_features))
    for i, row in enumerate(x):
        for f in range(n_features):
            others = [g for g in range(n_features) if g != f]
            for size in range(len(others) + 1):
                for subset in itertools.combinations(others, size):
                    weight = math.factorial(size) * math.factorial(n_features - size - 1) / math.factorial(n_features)
                    phi[i, :, f] += weight * (conditional(row, set(subset) | {f}) - conditional(row, set(subset)))
    return phi
