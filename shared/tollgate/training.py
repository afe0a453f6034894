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
    mask = holdout_mask(len(newest), spec.evaluation.holdout_fraction, spec.evaluation.seed)
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


EARLY_STOPPING_ROWS = 10_000   # from here boosting holds out a tenth of its rows and stops when they stop improving


def _early_stopping(estimator: str, params: dict[str, Any], rows: int | None) -> dict[str, Any]:
    """Boosting's defaults on a window large enough to hold out a validation tenth: up to 1,000 iterations,
    stopped once 20 (10 for classic boosting) bring no gain, instead of a fixed 100. The spec's own params win."""
    if rows is None or rows < EARLY_STOPPING_ROWS:
        return params
    if estimator == "hist_gradient_boosting" and not {"max_iter", "early_stopping"} & set(params):
        return {"max_iter": 1000, "early_stopping": True, "n_iter_no_change": 20, **params}
    if estimator == "gradient_boosting" and not {"n_estimators", "n_iter_no_change"} & set(params):
        return {"n_estimators": 1000, "n_iter_no_change": 10, "validation_fraction": 0.1, **params}
    return params


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
    default = "codes" if spec.model.estimator == "hist_gradient_boosting" else "one_hot"
    return {name: (spec.columns[name].encoding if spec.columns[name].encoding != "auto" else default)
            for name in spec.feature_lists.categorical}


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


def build_pipeline(spec: DatasetSpec, params: dict[str, Any] | None = None, rows: int | None = None) -> Pipeline:
    """The spec's pipeline; ``params`` (a search candidate) replace the spec's model params; ``rows``: how many it
    will be fitted on (boosting stops early on large windows)."""
    from sklearn.preprocessing import TargetEncoder

    params = _early_stopping(spec.model.estimator, dict(spec.model.params if params is None else params), rows)
    numeric, model = _model(spec.model.estimator, spec.task == "regression", spec.training.seed, params)
    width = spec.model.max_categories
    sparse = spec.model.estimator in SPARSE_FAMILIES
    chosen = encodings(spec)
    by_kind = {kind: [n for n in spec.feature_lists.categorical if chosen[n] == kind] for kind in ("one_hot", "codes",
                                                                                           "target")}
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.feature_lists.numeric:
        transformers.append(("numeric", numeric, list(spec.feature_lists.numeric)))
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
    for name in spec.feature_lists.datetime:
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
    for name in spec.feature_lists.categorical:
        col = df[name] if name in df else pd.Series(np.nan, index=df.index)
        out[name] = col.astype(object).where(col.notna(), np.nan)
    return out


def target(df: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    y = df[spec.target]
    return y.to_numpy(dtype="float64") if spec.task == "regression" else y.astype(str).to_numpy()


def fit(train: pd.DataFrame, spec: DatasetSpec, params: dict[str, Any] | None = None) -> Pipeline:
    pipeline = build_pipeline(spec, params, rows=len(train))
    pipeline.fit(features_frame(train, spec), target(train, spec))
    return pipeline


# primary metric → scikit-learn scorer (all higher-is-better)
SCORERS = {"r2": "r2", "rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error",
           "accuracy": "accuracy", "f1": "f1_macro", "roc_auc": "roc_auc_ovr", "log_loss": "neg_log_loss"}


def candidates(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The grid search's candidates in a fixed order (grid keys sorted), each over the spec's params."""
    if spec.model.search is None or spec.model.search.method != "grid":
        return [dict(spec.model.params)]
    names = [name for name, _ in spec.model.search.sorted_grid]
    return [{**spec.model.params, **dict(zip(names, values))}
            for values in itertools.product(*(values for _, values in spec.model.search.sorted_grid))]


def cross_validate(train: pd.DataFrame, spec: DatasetSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Mean and spread of the primary metric over seeded K folds (a scorer, higher is better)."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    folds = spec.model.search.folds if spec.model.search else 3
    splitter = (StratifiedKFold if spec.task == "classification" else KFold)(
        n_splits=folds, shuffle=True, random_state=spec.training.seed)
    scores = cross_val_score(build_pipeline(spec, params, rows=len(train) * (folds - 1) // folds),
                             features_frame(train, spec), target(train, spec),
                             scoring=SCORERS[spec.primary_metric], cv=splitter)
    return {"params": params, "score": float(np.mean(scores)), "std": float(np.std(scores)),
            "folds": [float(v) for v in scores], "scorer": SCORERS[spec.primary_metric]}


# ---------------------------------------------------------------- search by Optuna

TUNE_ROWS = 10_000      # `model.tune: auto` tunes gradient boosting from this window size on
TUNE_TRIALS = 12


def _space(spec: DatasetSpec) -> dict[str, Any]:
    """The search's space: the spec's, or a space known to matter for the family."""
    from tollgate.spec import Range

    if spec.model.search is not None and spec.model.search.space:
        return dict(spec.model.search.space)
    regression = spec.task == "regression"
    spaces: dict[str, dict[str, Range]] = {
        "hist_gradient_boosting": {"learning_rate": Range(low=0.02, high=0.3, log=True),
                                   "max_leaf_nodes": Range(low=15, high=255, log=True, integer=True),
                                   "min_samples_leaf": Range(low=5, high=200, log=True, integer=True),
                                   "l2_regularization": Range(low=1e-8, high=10.0, log=True),
                                   "max_features": Range(low=0.4, high=1.0)},
        "random_forest": {"min_samples_leaf": Range(low=1, high=30, log=True, integer=True),
                          "max_features": Range(low=0.2, high=1.0)},
        "gradient_boosting": {"learning_rate": Range(low=0.02, high=0.3, log=True),
                              "max_depth": Range(low=2, high=8, integer=True), "subsample": Range(low=0.5, high=1.0)},
        "decision_tree": {"max_depth": Range(low=2, high=24, integer=True),
                          "min_samples_leaf": Range(low=1, high=100, log=True, integer=True)},
        "linear": ({"alpha": Range(low=1e-4, high=100.0, log=True)} if regression
                   else {"C": Range(low=1e-3, high=100.0, log=True)}),
        "svm": {"C": Range(low=0.01, high=100.0, log=True)},
        "knn": {"n_neighbors": Range(low=3, high=64, log=True, integer=True),
                "weights": Range(choices=("uniform", "distance"))},
        "naive_bayes": {"var_smoothing": Range(low=1e-12, high=1e-3, log=True)},
    }
    return spaces[spec.model.estimator]


def tuning(spec: DatasetSpec, rows: int) -> DatasetSpec:
    """The spec with the search it trains with: its own, or (``model.tune: auto``, gradient boosting, a window of
    at least ``TUNE_ROWS``) a small Optuna search that pays for itself on data that large; else unchanged."""
    from tollgate import spec as specs

    if spec.model.search is not None or spec.model.tune != "auto" or spec.model.estimator != "hist_gradient_boosting" \
            or rows < TUNE_ROWS:
        return spec
    return specs.replace(spec, model__search={"method": "optuna", "trials": TUNE_TRIALS, "folds": 3})


def optuna_search(train: pd.DataFrame, spec: DatasetSpec, task: int = 0, tasks: int = 1) -> list[dict[str, Any]]:
    """This task's share of an Optuna search: ``trials`` spread over ``tasks``, each task its own TPE sampler
    (seeded by the training seed and the task), each trial cross-validated fold by fold and pruned when its running
    score trails the median of earlier trials at the same fold. Deterministic: the same data, spec and seed give
    the same trials, scores and best parameters."""
    import optuna
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import KFold, StratifiedKFold

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.model.search
    mine = search.trials // tasks + (1 if task < search.trials % tasks else 0)
    if mine == 0:
        return []
    space = _space(spec)
    X, y = features_frame(train, spec), target(train, spec)
    splitter = (StratifiedKFold if spec.task == "classification" else KFold)(
        n_splits=search.folds, shuffle=True, random_state=spec.training.seed)
    folds = list(splitter.split(X, y))
    scorer = get_scorer(SCORERS[spec.primary_metric])
    rows = len(train) * (search.folds - 1) // search.folds

    def objective(trial: Any) -> float:
        params = {**spec.model.params, **{name: _suggest(trial, name, r) for name, r in space.items()}}
        scores = []
        for step, (fit_rows, test_rows) in enumerate(folds):
            model = build_pipeline(spec, params, rows=rows).fit(X.iloc[fit_rows], y[fit_rows])
            scores.append(float(scorer(model, X.iloc[test_rows], y[test_rows])))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("folds", scores)
        trial.set_user_attr("params", params)
        return float(np.mean(scores))

    sampler = optuna.samplers.TPESampler(seed=spec.training.seed * 1000 + task, n_startup_trials=min(5, mine))
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    study.optimize(objective, n_trials=mine)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [{"candidate": task * 1000 + t.number, "params": t.user_attrs["params"], "score": float(t.value),
             "std": float(np.std(t.user_attrs["folds"])), "folds": t.user_attrs["folds"],
             "scorer": SCORERS[spec.primary_metric]} for t in done]


def _suggest(trial: Any, name: str, space: Any) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(name, list(space.choices))
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)
