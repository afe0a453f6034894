"""Training: the dataset spec's scikit-learn pipeline and a deterministic holdout.

Pure: DataFrames and a spec in, a fitted estimator out. Same inputs, same seed → same model.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from tollgate.spec import DatasetSpec


def holdout_mask(n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """Rows of the newest batch held out for evaluation: a seeded, deterministic choice.

    The trainer never trains on these rows and the evaluator scores both models on exactly them.
    """
    k = int(round(n_rows * fraction))
    order = np.random.default_rng(seed).permutation(n_rows)
    mask = np.zeros(n_rows, dtype=bool)
    mask[order[:k]] = True
    return mask


def sample_mask(n_rows: int, fraction: float, seed: int, batch: str) -> np.ndarray:
    """The rows of one curated batch kept when a training window is sampled down to ``fraction``: a
    seeded choice per batch (its sha256), so the same window and seed always train on the same rows."""
    if fraction >= 1:
        return np.ones(n_rows, dtype=bool)
    return np.random.default_rng([seed, int(batch[:16], 16)]).random(n_rows) < fraction


def split_newest(newest: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training part, evaluation part) of the newest batch."""
    mask = holdout_mask(len(newest), spec.holdout_fraction, spec.evaluation_seed)
    return newest.loc[~mask].reset_index(drop=True), newest.loc[mask].reset_index(drop=True)


def _categorical_encoder(max_categories: int, sparse: bool = False) -> OneHotEncoder:
    """One-hot with a bounded width: the ``max_categories`` most frequent values of each feature (values seen
    fewer than 5 times, and unknown ones, share the infrequent column); sparse for the families that take it."""
    return OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=max_categories,
                         sparse_output=sparse)


def _category_codes(max_categories: int) -> OrdinalEncoder:
    """Categories as one column of codes per feature for gradient boosting, whose trees split on the codes
    like on any number, instead of a dense one-hot block (the taxi companies' one-hot was most of the trainer's
    memory). Categories seen fewer than 5 times share one code; unknown and missing values become NaN, which
    the trees send to each split's missing side. (Not the trees' native categorical splits: their fitted
    model carries a function reference, which the artifact allow-list refuses.)"""
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan,
                          min_frequency=5, max_categories=max_categories)


def _scaled() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


def _model(estimator: str, regression: bool, seed: int, params: dict[str, Any]) -> tuple[Any, Any]:
    """(the numeric columns' preprocessing, the final estimator) of one family. Scale-sensitive families (linear,
    SVM, k-nearest neighbours, naive Bayes) see standardised numbers; trees see them as they are."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if estimator == "hist_gradient_boosting":   # handles missing values itself
        cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        return "passthrough", cls(random_state=seed, **params)
    if estimator == "random_forest":
        cls = RandomForestRegressor if regression else RandomForestClassifier
        return SimpleImputer(strategy="median"), cls(**{"n_estimators": 100, "n_jobs": 1, "random_state": seed,
                                                        **params})
    if estimator == "gradient_boosting":
        cls = GradientBoostingRegressor if regression else GradientBoostingClassifier
        return SimpleImputer(strategy="median"), cls(**{"random_state": seed, **params})
    if estimator == "decision_tree":
        cls = DecisionTreeRegressor if regression else DecisionTreeClassifier
        return SimpleImputer(strategy="median"), cls(**{"random_state": seed, **params})
    if estimator == "svm":   # probabilities by Platt scaling, for ROC AUC, log loss and the predictor's answers
        if regression:
            return _scaled(), SVR(**params)
        return _scaled(), CalibratedClassifierCV(SVC(**{"random_state": seed, **params}), ensemble=False)
    if estimator == "knn":   # brute force: the artifact holds the training rows and no search tree
        cls = KNeighborsRegressor if regression else KNeighborsClassifier
        return _scaled(), cls(**{"algorithm": "brute", **params})
    if estimator == "naive_bayes":
        return _scaled(), GaussianNB(**params)
    return _scaled(), Ridge(**params) if regression else LogisticRegression(**{"max_iter": 1000,
                                                                               "random_state": seed, **params})


SPARSE_FAMILIES = ("linear",)   # take a sparse one-hot block as it is (the others would densify it)


def encodings(spec: DatasetSpec) -> dict[str, str]:
    """Each categorical feature's encoding: ``codes`` (gradient boosting's default), ``one_hot`` (the others'),
    or ``target``, as the spec says (``columns.<name>.encoding``)."""
    default = "codes" if spec.estimator == "hist_gradient_boosting" else "one_hot"
    return {name: (spec.columns[name].encoding if spec.columns[name].encoding != "auto" else default)
            for name in spec.categorical_features}


def _datetime_block(spec: DatasetSpec, name: str, numeric: Any) -> Any:
    """A datetime feature's parts (tollgate.transformers.DatetimeParts), then what the family does to numbers
    (imputed, scaled), except for gradient boosting, which routes missing parts itself."""
    from tollgate.transformers import DatetimeParts

    column = spec.columns[name]
    parts = DatetimeParts(parts=tuple(column.parts), cyclical=column.cyclical)
    if numeric == "passthrough":
        return parts
    steps = [("parts", parts)] + (list(numeric.steps) if isinstance(numeric, Pipeline) else [("impute", numeric)])
    from sklearn.base import clone

    return Pipeline([(name, clone(step) if name != "parts" else step) for name, step in steps])


def build_pipeline(spec: DatasetSpec, params: dict[str, Any] | None = None) -> Pipeline:
    """The spec's pipeline; ``params`` (a search candidate) replace the spec's model params."""
    from sklearn.preprocessing import TargetEncoder

    params = dict(spec.model_params if params is None else params)
    numeric, model = _model(spec.estimator, spec.task == "regression", spec.training_seed, params)
    width = spec.model.max_categories
    sparse = spec.estimator in SPARSE_FAMILIES
    chosen = encodings(spec)
    by_kind = {kind: [n for n in spec.categorical_features if chosen[n] == kind] for kind in ("one_hot", "codes",
                                                                                           "target")}
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric_features:
        transformers.append(("numeric", numeric, list(spec.numeric_features)))
    if by_kind["codes"]:
        transformers.append(("categorical", _category_codes(width), by_kind["codes"]))
    if by_kind["one_hot"]:
        transformers.append(("categorical" if not by_kind["codes"] else "onehot",
                             Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                                       ("onehot", _categorical_encoder(width, sparse))]), by_kind["one_hot"]))
    if by_kind["target"]:
        encoder = TargetEncoder(target_type="continuous" if spec.task == "regression" else "auto",
                                cv=5)
        transformers.append(("target", Pipeline([("impute", SimpleImputer(strategy="constant",
                                                                          fill_value="(missing)")),
                                                 ("encode", encoder)]), by_kind["target"]))
    for name in spec.datetime_features:
        transformers.append((f"datetime_{name}", _datetime_block(spec, name, numeric), [name]))
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False,
                            sparse_threshold=0.3 if sparse else 0.0)
    return Pipeline([("preprocess", pre), ("model", model)])


def features_frame(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's input columns with stable dtypes (float for numeric and datetime — Unix seconds, as curated —,
    object for categorical)."""
    out = pd.DataFrame(index=df.index)
    for name in spec.input_numeric:
        out[name] = pd.to_numeric(df[name], errors="coerce").astype("float64") if name in df else np.nan
    for name in spec.categorical_features:
        col = df[name] if name in df else pd.Series(np.nan, index=df.index)
        out[name] = col.astype(object).where(col.notna(), np.nan)
    return out


def target(df: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    y = df[spec.target]
    return y.to_numpy(dtype="float64") if spec.task == "regression" else y.astype(str).to_numpy()


def fit(train: pd.DataFrame, spec: DatasetSpec, params: dict[str, Any] | None = None) -> Pipeline:
    pipeline = build_pipeline(spec, params)
    pipeline.fit(features_frame(train, spec), target(train, spec))
    return pipeline


# primary metric → scikit-learn scorer (all higher-is-better)
SCORERS = {"r2": "r2", "rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error",
           "accuracy": "accuracy", "f1": "f1_macro", "roc_auc": "roc_auc_ovr", "log_loss": "neg_log_loss"}


def candidates(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The search's candidates in a fixed order (grid keys sorted), each over the spec's params."""
    if spec.search is None:
        return [dict(spec.model_params)]
    names = [name for name, _ in spec.search.sorted_grid]
    return [{**spec.model_params, **dict(zip(names, values))}
            for values in itertools.product(*(values for _, values in spec.search.sorted_grid))]


def cross_validate(train: pd.DataFrame, spec: DatasetSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Mean and spread of the primary metric over seeded K folds (a scorer, higher is better)."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    folds = spec.search.folds if spec.search else 3
    splitter = (StratifiedKFold if spec.task == "classification" else KFold)(
        n_splits=folds, shuffle=True, random_state=spec.training_seed)
    scores = cross_val_score(build_pipeline(spec, params), features_frame(train, spec), target(train, spec),
                             scoring=SCORERS[spec.primary_metric], cv=splitter)
    return {"params": params, "score": float(np.mean(scores)), "std": float(np.std(scores)),
            "folds": [float(v) for v in scores], "scorer": SCORERS[spec.primary_metric]}
