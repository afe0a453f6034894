"""Why a served model predicts what it predicts for one instance: exact attributions per declared feature.

- Gradient boosting (``hist_gradient_boosting``): path-dependent TreeSHAP (``tollgate.treeshap``) on the prepared
  trees, in the model's raw output (the value for regression; a class's log-odds for classification, the positive
  class's when there are two, else the predicted class's). The baseline is the expected raw output over the
  training rows; the attributions sum to the instance's output minus it.
- Linear models (``linear``): each input column's weight times its distance from a reference — the training mean
  for numbers (they are standardised, so the mean is 0 in the model's inputs) and no category for a one-hot block;
  the baseline is the output at that reference, so the attributions sum to the output minus it, exactly.

A datetime's parts, a category's one-hot columns or code: their attributions add up to the declared feature's (the
additivity of Shapley values), so each answer names the spec's features only. Other families, and pipelines without
a prepared path, have no exact method here: ``Unexplainable`` says so, and the predictor answers 400.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tollgate import prepared
from tollgate.spec import DatasetSpec

TOLERANCE = 1e-6   # attributions sum to output − baseline within this, checked when the explainer is built


class Unexplainable(Exception):
    """The model has no exact attribution method here; the message says why."""


class Explainer:
    """Built once per loaded model; ``explain`` takes validated columns (``prepared.Columns``)."""

    def __init__(self, pipeline: Any, spec: DatasetSpec) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.linear_model import LogisticRegression, Ridge

        self.spec = spec
        try:
            self.width, self.transform, owners = prepared.preprocessor(pipeline[0], spec)
        except prepared.Unsupported as exc:
            raise Unexplainable(f"no exact attributions for this pipeline ({exc})") from exc
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:   # a scikit-learn internal moved
            raise Unexplainable(f"no exact attributions for this pipeline ({type(exc).__name__}: {exc})") from exc
        model = pipeline[-1]
        self.classes = [str(c) for c in getattr(model, "classes_", [])]
        self.features = list(spec.features)
        self.owner = np.array([self.features.index(o) for o in owners], dtype=np.intp)
        if isinstance(model, (HistGradientBoostingRegressor, HistGradientBoostingClassifier)):
            self.method = "tree_shap"
            try:
                self._forest = prepared.Forest(model)
            except prepared.Unsupported as exc:
                raise Unexplainable(f"no exact attributions for these trees ({exc})") from exc
            from tollgate import treeshap

            f = self._forest
            # sized from the trees as they are, never from their stored `depth` field: the compiled walk writes a
            # buffer this deep
            self._depth = treeshap.max_depth(f.feature, f.left, f.right, f.roots)
            self._expected = treeshap.expected_value(f.feature, f.left, f.right, f.value, f.count, f.roots,
                                                     f.k) + f.baseline
        elif isinstance(model, (Ridge, LogisticRegression)):
            self.method = "linear"
            self._weights = np.atleast_2d(np.asarray(model.coef_, dtype="float64"))
            self._intercept = np.atleast_1d(np.asarray(model.intercept_, dtype="float64"))
            # the reference is 0 in the model's inputs: standardised numbers at their training mean, no category
        else:
            raise Unexplainable(f"{spec.model.estimator} has no exact attribution method here; exact "
                                "explanations are for hist_gradient_boosting (TreeSHAP) and linear models")

    def _outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(attributions per input column (rows, width), baseline, output, which output) for each row: the raw
        output explained is the only one (regression), the positive class's (two classes) or the predicted
        class's."""
        rows = x.shape[0]
        if self.method == "tree_shap":
            from tollgate import treeshap

            f = self._forest
            phi = np.zeros((rows, f.k, self.width))
            treeshap.shap_values(np.ascontiguousarray(x, dtype="float64"), f.feature, f.threshold, f.missing_left,
                                 f.left, f.right, f.value, f.count, f.roots, f.k, self._depth, phi)
            raw = f.raw(x)
            pick = np.zeros(rows, dtype=np.intp) if f.k == 1 else np.argmax(raw, axis=1)
            index = np.arange(rows)
            return phi[index, pick], self._expected[pick], raw[index, pick], pick
        scores = x @ self._weights.T + self._intercept
        pick = np.zeros(rows, dtype=np.intp) if scores.shape[1] == 1 else np.argmax(scores, axis=1)
        return self._weights[pick] * x, self._intercept[pick], scores[np.arange(rows), pick], pick

    def _grouped(self, columns: prepared.Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                           np.ndarray]:
        """(attributions per declared feature (rows, features), baseline, output, which output, additivity gap)."""
        x = self.transform(columns)
        phi, base, out, pick = self._outputs(x)
        grouped = np.zeros((x.shape[0], len(self.features)))
        np.add.at(grouped, (slice(None), self.owner), phi)
        gap = np.abs(grouped.sum(axis=1) - (out - base))
        if np.any(gap > TOLERANCE * np.maximum(1.0, np.abs(out))):   # never an answer that does not add up
            raise Unexplainable(f"attributions do not add up to the output (off by {float(gap.max()):.3g})")
        return grouped, base, out, pick, gap

    def attributions(self, columns: prepared.Columns) -> np.ndarray:
        """The attributions alone, (rows, declared features) in ``self.features`` order."""
        return self._grouped(columns)[0]

    def explain(self, columns: prepared.Columns) -> list[dict[str, Any]]:
        """Per instance, Vertex AI's attribution shape: ``featureAttributions`` per declared feature,
        ``baselineOutputValue``, ``instanceOutputValue``, and which output was explained."""
        grouped, base, out, pick, gap = self._grouped(columns)
        answers = []
        for i in range(grouped.shape[0]):
            answer: dict[str, Any] = {
                "featureAttributions": {name: float(v) for name, v in zip(self.features, grouped[i])},
                "baselineOutputValue": float(base[i]), "instanceOutputValue": float(out[i]),
                "approximationError": float(gap[i]), "method": self.method}
            if self.classes:
                answer["outputDisplayName"] = self.classes[1 if len(self.classes) == 2 else int(pick[i])]
                answer["outputSpace"] = "log-odds" if len(self.classes) == 2 else "logit"
            answers.append(answer)
        return answers


def summarise(pipeline: Any, spec: DatasetSpec, frame: Any, rows: int, seed: int = 0) -> dict[str, Any]:
    """Mean |attribution| per declared feature over a seeded sample of at most ``rows`` rows of ``frame`` (the
    trainer's training rows: the version's reference, stored in its profile; the monitor's live sample of a
    window): what the model relies on, on those rows. Without an exact method: the reason, and no figures."""
    if not len(frame):
        return {"method": None, "rows": 0, "reason": "no rows to explain"}
    try:
        explainer = Explainer(pipeline, spec)
        if len(frame) > rows:
            frame = frame.sample(rows, random_state=seed)
        values = explainer.attributions(prepared.Columns.from_frame(frame, spec))
    except Unexplainable as exc:
        return {"method": None, "rows": 0, "reason": str(exc)}
    except Exception as exc:   # a summary is evidence beside a model, never a reason to lose one
        return {"method": None, "rows": 0, "reason": f"not explained: {type(exc).__name__}: {exc}"[:300]}
    return {"method": explainer.method, "rows": int(values.shape[0]),
            "mean_abs": {name: float(v) for name, v in zip(explainer.features, np.abs(values).mean(axis=0))}}
