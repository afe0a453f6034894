"""Exact path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent individualized feature attribution for
tree ensembles", 2018, algorithm 2) over the flat node arrays of the prepared forest.

For each row, each tree's output is split among the features on the paths the row could take, weighting the
branches it does not take by the training rows that went down them (each node's ``count``): the attributions of a
row sum to its raw score minus the ensemble's expected raw score, exactly (to float rounding), which is what makes
them Shapley values of the trees' conditional expectations. Compiled by numba and cached on disk (the container
images warm the cache, ``warm``), so no process compiles at its first explanation; ``expected_value`` and
``brute_force`` (every coalition, for a handful of features) are the checks.
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


@numba.njit(cache=True, nogil=True)
def _tree(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray, left: np.ndarray,
          right: np.ndarray, value: np.ndarray, count: np.ndarray, phi: np.ndarray, root: int,
          d: np.ndarray, z: np.ndarray, o: np.ndarray, w: np.ndarray, stack: np.ndarray,
          fractions: np.ndarray) -> None:   # pragma: no cover - compiled
    """One tree, depth first from ``root`` with an explicit stack (numba caches no self-recursive function, and a
    cold process would compile this at its first explanation). Each node copies the path so far (``depth + 1``
    elements of its parent's segment of the buffers) into its own segment after the parent's, extends it by the
    split that led here, then hands the hot and the cold child the same segment: the hot child's whole subtree is
    walked before the cold child (pushed first) is popped, and it writes only past that segment."""
    top = 0
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = root, 0, 0, -1   # node, parent's offset, depth, pi
    fractions[0, 0], fractions[0, 1] = 1.0, 1.0                              # pz, po
    while top >= 0:
        node, parent, depth, pi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        pz, po = fractions[top, 0], fractions[top, 1]
        top -= 1
        start = parent + depth + 1
        for k in range(depth + 1):
            d[start + k], z[start + k], o[start + k], w[start + k] = d[parent + k], z[parent + k], o[parent + k], \
                w[parent + k]
        pd, pz_, po_, pw = d[start:], z[start:], o[start:], w[start:]
        _extend(pd, pz_, po_, pw, depth, pz, po, pi)
        if feature[node] < 0:
            for i in range(1, depth + 1):
                phi[pd[i]] += _unwound_sum(pz_, po_, pw, depth, i) * (po_[i] - pz_[i]) * value[node]
            continue
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
        for child, share, one in ((cold, count[cold], 0.0), (hot, count[hot], io)):   # hot on top: walked first
            top += 1
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = child, start, depth + 1, f
            fractions[top, 0], fractions[top, 1] = iz * share / total, one


@numba.njit(cache=True, nogil=True)
def shap_values(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
                left: np.ndarray, right: np.ndarray, value: np.ndarray, count: np.ndarray, roots: np.ndarray,
                k: int, max_depth: int, out: np.ndarray) -> None:   # pragma: no cover - compiled
    """``out[i, c, f]`` += the attribution of feature f to output c (a class's raw score) of row i, every tree."""
    size = (max_depth + 3) * (max_depth + 4) // 2 + 2
    d = np.zeros(size, np.int64)
    z = np.zeros(size)
    o = np.zeros(size)
    w = np.zeros(size)
    stack = np.zeros((max_depth + 2, 4), np.int64)   # depth first: at most one pending sibling per level
    fractions = np.zeros((max_depth + 2, 2))
    for i in range(x.shape[0]):
        for t in range(roots.shape[0]):
            _tree(x[i], feature, threshold, missing_left, left, right, value, count, out[i, t % k], roots[t],
                  d, z, o, w, stack, fractions)


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


def warm() -> None:
    """Compile (or load from the cache) TreeSHAP for the dtypes the explainer passes (``prepared.Forest``'s
    arrays): the container images call this at build time, beside ``treewalk.warm``, so no instance compiles."""
    feature, left, right = np.array([0, -1, -1], np.int32), np.array([1, 0, 0], np.int32), np.array([2, 0, 0], np.int32)
    value, count, roots = np.array([0.0, 1.0, 3.0]), np.array([4.0, 3.0, 1.0]), np.zeros(1, np.int32)
    out = np.zeros((1, 1, 1))
    shap_values(np.zeros((1, 1)), feature, np.zeros(3), np.ones(3, np.uint8), left, right, value, count, roots, 1,
                max_depth(feature, left, right, roots), out)
    assert out[0, 0, 0] == 1.0 - expected_value(feature, left, right, value, count, roots, 1)[0]
