"""Data profiles and drift: how a batch compares with the data the champion was trained on.

A *profile* (format ``tollgate.profile/v2``, JSON) summarises a table column by column:

- numeric: ``count`` (present values), ``nulls``, ``mean``, ``std``, ``min``, ``max``,
  ``quantiles`` (p1 … p99), ``edges`` (inner cut points of the reference's decile bins) and
  ``counts`` (values per bin, ``len(edges) + 1`` bins, values outside the reference range fall in
  the end bins), and ``sample``: a seeded uniform sample of values for two-sample tests.
- categorical: ``count``, ``nulls`` and ``counts`` per category (the most frequent ones; the rest
  are summed under ``OTHER``).

The trainer stores the profile of its training data beside the model; the validator profiles
each batch *on the reference's bins*, streaming, in bounded memory, and ``compare`` turns the
two into per-feature scores and one verdict. Pure: no cloud client, no files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tollgate.spec import DatasetSpec, Drift

FORMAT = "tollgate.profile/v2"   # v1 (before drift detection) had no samples
OTHER = "(other)"
MISSING = "(missing)"
BINS = 10
REFERENCE_SAMPLE = 2_000
MAX_CATEGORIES = 50
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_EPS = 1e-4
VERDICTS = ("none", "warn", "severe")


def profiled_columns(spec: DatasetSpec) -> dict[str, str]:
    """Column → kind ("numeric" | "categorical") for every column a profile covers: features and target."""
    kinds = {name: "numeric" for name in spec.feature_lists.numeric}
    kinds.update({name: "categorical" for name in spec.feature_lists.categorical})
    kinds[spec.target] = "numeric" if spec.task == "regression" else "categorical"
    return kinds


class _RowSample:
    """A seeded uniform sample of at most ``size`` rows over a stream of chunks (bottom-k by random key)."""

    def __init__(self, size: int, seed: int, width: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows = np.empty((0, width))

    def candidates(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, positions) of the rows of a chunk of ``n`` that may enter the sample."""
        keys = self.rng.random(n)
        if n <= self.size:
            return keys, np.arange(n)
        positions = np.argpartition(keys, self.size)[: self.size]
        return keys[positions], positions

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        keys, rows = np.concatenate([self.keys, keys]), np.vstack([self.rows, rows])
        if keys.size > self.size:
            keep = np.argpartition(keys, self.size)[: self.size]
            keys, rows = keys[keep], rows[keep]
        self.keys, self.rows = keys, rows


class ProfileBuilder:
    """Profiles a table chunk by chunk, in memory bounded by ``sample_size`` rows.

    Counts, nulls, sums, minima and maxima are exact; quantiles, histograms and the two-sample test
    use one seeded uniform sample of rows (exact for tables up to ``sample_size`` rows). With
    ``reference``, numeric bins are the reference's, so the two histograms line up; without, they
    are the deciles of this table's own sample.
    """

    def __init__(self, columns: dict[str, str], reference: dict[str, Any] | None = None,
                 sample_size: int = 20_000, seed: int = 0) -> None:
        self.columns = columns
        self.reference = (reference or {}).get("columns", {})
        self.rows = 0
        self.numeric = [name for name, kind in columns.items() if kind == "numeric"]
        n = len(self.numeric)
        self._sample = _RowSample(sample_size, seed, n)
        self._count = np.zeros(n, dtype=np.int64)
        self._sum = np.zeros(n)
        self._sumsq = np.zeros(n)
        self._min = np.full(n, np.inf)
        self._max = np.full(n, -np.inf)
        self._cat: dict[str, pd.Series] = {name: pd.Series(dtype="int64")
                                           for name, kind in columns.items() if kind == "categorical"}

    def add(self, df: pd.DataFrame, keep: np.ndarray | None = None) -> None:
        """Profile the rows of ``df`` (those where ``keep`` is True, if given)."""
        rows = np.arange(len(df)) if keep is None else np.flatnonzero(keep)
        self.rows += rows.size
        keys, chosen = self._sample.candidates(rows.size)
        chosen = rows[chosen]
        sampled = np.empty((chosen.size, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            if name not in df:
                sampled[:, j] = np.nan
                continue
            values = df[name].to_numpy(dtype="float64", na_value=np.nan)
            sampled[:, j] = values[chosen]
            present = ~np.isnan(values)
            if keep is not None:
                present &= keep
            count = int(np.count_nonzero(present))
            if not count:
                continue
            self._count[j] += count
            self._sum[j] += np.sum(values, where=present)
            self._sumsq[j] += np.sum(np.square(values), where=present)
            self._min[j] = min(self._min[j], np.min(values, where=present, initial=np.inf))
            self._max[j] = max(self._max[j], np.max(values, where=present, initial=-np.inf))
        self._sample.add(keys, sampled)
        for name in self._cat:
            col = df[name] if name in df else pd.Series(np.nan, index=df.index)
            if keep is not None:
                col = col[keep]
            counts = col.value_counts(dropna=False)
            counts.index = [MISSING if pd.isna(k) else str(k) for k in counts.index]
            self._cat[name] = self._cat[name].add(counts.groupby(level=0).sum(), fill_value=0).astype("int64")

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "rows": int(self.rows), "columns": {}}
        for j, name in enumerate(self.numeric):
            count = int(self._count[j])
            entry: dict[str, Any] = {"kind": "numeric", "count": count, "nulls": int(self.rows - count)}
            sample = np.sort(self._sample.rows[:, j][~np.isnan(self._sample.rows[:, j])])
            if count and sample.size:
                edges = self.reference.get(name, {}).get("edges")
                edges = (np.asarray(edges, dtype=float) if edges is not None
                         else np.unique(np.quantile(sample, np.linspace(0, 1, BINS + 1))[1:-1]))
                counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=edges.size + 1)
                mean = self._sum[j] / count
                entry.update(
                    mean=float(mean), std=float(np.sqrt(max(self._sumsq[j] / count - mean * mean, 0.0))),
                    min=float(self._min[j]), max=float(self._max[j]),
                    quantiles={f"p{round(q * 100)}": float(v)
                               for q, v in zip(_QUANTILES, np.quantile(sample, _QUANTILES))},
                    edges=[float(e) for e in edges],
                    counts=[int(c) for c in np.round(counts * count / sample.size)],
                    sample=[float(v) for v in sample])
            out["columns"][name] = entry
        for name, counts in self._cat.items():
            nulls = int(counts.get(MISSING, 0))
            counts = counts.drop(MISSING, errors="ignore").sort_values(ascending=False, kind="stable")
            top = counts.iloc[:MAX_CATEGORIES]
            rest = int(counts.iloc[MAX_CATEGORIES:].sum())
            entry = {"kind": "categorical", "count": int(counts.sum()), "nulls": nulls,
                     "counts": {str(k): int(v) for k, v in top.items()}}
            if rest:
                entry["counts"][OTHER] = rest
            out["columns"][name] = entry
        return out


def profile(df: pd.DataFrame, spec: DatasetSpec, sample_size: int = REFERENCE_SAMPLE, seed: int = 0) -> dict[str, Any]:
    """The reference profile of a training table (in memory): decile bins of the full data."""
    columns = profiled_columns(spec)
    edges: dict[str, Any] = {}
    for name, kind in columns.items():
        if kind == "numeric" and name in df:
            present = pd.to_numeric(df[name], errors="coerce").dropna().to_numpy(dtype="float64")
            if present.size:
                edges[name] = {"edges": np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1))[1:-1]).tolist()}
    builder = ProfileBuilder(columns, {"columns": edges}, sample_size=sample_size, seed=seed)
    builder.add(df)
    result = builder.result()
    for name, entry in result["columns"].items():   # in memory: the reference's histogram is exact
        if entry["kind"] == "numeric" and entry.get("edges") is not None:
            present = pd.to_numeric(df[name], errors="coerce").dropna().to_numpy(dtype="float64")
            entry["counts"] = np.bincount(np.searchsorted(entry["edges"], present, side="right"),
                                          minlength=len(entry["edges"]) + 1).tolist()
    return result


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p = np.maximum(ref / max(ref.sum(), 1), _EPS)
    q = np.maximum(cur / max(cur.sum(), 1), _EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    from scipy import stats  # imported where used: jobs that only profile (the trainer) start ~1 s sooner

    ref_bins = np.asarray(ref["counts"] + [ref["nulls"]], dtype=float)
    cur_bins = np.asarray(cur["counts"] + [cur["nulls"]], dtype=float)
    ks = stats.ks_2samp(ref["sample"], cur["sample"])
    scale = (ref["quantiles"]["p75"] - ref["quantiles"]["p25"]) or ref.get("std") or 1.0
    return {"kind": "numeric", "test": "ks", "statistic": float(ks.statistic), "p_value": float(ks.pvalue),
            "distance": "psi", "score": _psi(ref_bins, cur_bins),
            "wasserstein": float(stats.wasserstein_distance(ref["sample"], cur["sample"]) / scale),
            "reference_mean": ref["mean"], "batch_mean": cur["mean"],
            "reference_null_rate": ref["nulls"] / max(ref["count"] + ref["nulls"], 1),
            "batch_null_rate": cur["nulls"] / max(cur["count"] + cur["nulls"], 1)}


def _categorical(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    ref_counts = {**ref["counts"], MISSING: ref["nulls"]}
    cur_counts = {**cur["counts"], MISSING: cur["nulls"]}
    if OTHER in ref_counts:   # the reference only knows its top categories; fold the batch's rest likewise
        folded = {k: v for k, v in cur_counts.items() if k in ref_counts}
        folded[OTHER] = folded.get(OTHER, 0) + sum(v for k, v in cur_counts.items() if k not in ref_counts)
        new: list[str] = []
    else:
        folded = cur_counts
        new = sorted(k for k, v in cur_counts.items() if k not in ref_counts and v)
    keys = sorted(set(ref_counts) | set(folded))
    table = np.array([[ref_counts.get(k, 0) for k in keys], [folded.get(k, 0) for k in keys]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        chi2, p_value = 0.0, 1.0
    else:
        res = stats.chi2_contingency(table, correction=False)
        chi2, p_value = float(res.statistic), float(res.pvalue)
    return {"kind": "categorical", "test": "chi2", "statistic": chi2, "p_value": p_value,
            "distance": "js", "score": float(jensenshannon(table[0], table[1], base=2)),
            "new_categories": new[:20], "new_category_rows": int(sum(cur_counts[k] for k in new))}


def compare(reference: dict[str, Any] | None, batch: dict[str, Any], settings: Drift) -> dict[str, Any]:
    """Every raw score per feature, Benjamini–Hochberg-adjusted p-values, and one verdict.

    A feature is ``warn`` when its adjusted p-value is at most ``settings.fdr`` and its distance
    reaches the warn threshold, ``severe`` when the distance reaches the severe threshold too; the
    batch's verdict is its worst feature's.
    """
    if not reference:
        return {"verdict": "none", "reason": "no_reference",
                "message": "no champion yet, so nothing to compare with", "features": []}
    if reference.get("format") != FORMAT:
        return {"verdict": "none", "reason": "unsupported_reference",
                "message": f"the reference profile has format {reference.get('format')!r}, not {FORMAT}",
                "features": []}
    rows = int(batch.get("rows") or 0)
    if rows < settings.min_rows:   # a handful of requests says nothing: no verdict, never an alert or a retraining
        return {"verdict": "none", "reason": "not_enough_data",
                "message": f"not enough data: {rows} row(s), fewer than the {settings.min_rows} drift needs for a "
                           "verdict (drift.min_rows)", "features": [], "batch_rows": rows,
                "min_rows": settings.min_rows}
    features: list[dict[str, Any]] = []
    too_few: list[str] = []
    for name, cur in batch["columns"].items():
        ref = reference["columns"].get(name)
        if (name in settings.exclude or not ref or not ref.get("count") or not cur.get("count")
                or ref["kind"] != cur["kind"]):
            continue
        if cur["count"] < settings.min_rows:   # mostly empty in this batch: too few values to judge it on
            too_few.append(name)
            continue
        scores = _numeric(ref, cur) if cur["kind"] == "numeric" else _categorical(ref, cur)
        features.append({"feature": name, **scores})
    if features:
        from scipy import stats

        adjusted = stats.false_discovery_control([f["p_value"] for f in features], method="bh")
        for f, q in zip(features, adjusted):
            warn, severe = ((settings.psi.warn, settings.psi.severe) if f["distance"] == "psi"
                            else (settings.js.warn, settings.js.severe))
            f["q_value"] = float(q)
            significant = q <= settings.fdr
            f["status"] = ("severe" if significant and f["score"] >= severe
                           else "warn" if significant and f["score"] >= warn else "none")
    verdict = max((f["status"] for f in features), key=VERDICTS.index, default="none")
    drifted = [f["feature"] for f in features if f["status"] != "none"]
    message = (f"{len(drifted)} of {len(features)} features drifted: {', '.join(drifted)}" if drifted
               else f"no drift in {len(features)} features")
    if too_few:
        message += f"; not judged (fewer than {settings.min_rows} values): {', '.join(too_few)}"
    return {"verdict": verdict, "reason": None, "message": message, "fdr": settings.fdr,
            "thresholds": {"psi": [settings.psi.warn, settings.psi.severe],
                           "js": [settings.js.warn, settings.js.severe]},
            "excluded": list(settings.exclude), "too_few_values": too_few, "reference_rows": reference.get("rows"),
            "batch_rows": batch.get("rows"), "features": features}


def summary(drift: dict[str, Any]) -> dict[str, Any]:
    """The verdict and the per-feature scores without samples: what the run record carries."""
    keep = ("feature", "kind", "test", "statistic", "p_value", "q_value", "distance", "score", "status",
            "new_categories", "new_category_rows")
    return {**{k: v for k, v in drift.items() if k != "features"},
            "features": [{k: f[k] for k in keep if k in f} for f in drift.get("features", [])]}
