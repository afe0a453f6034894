"""Structure checks of a model artifact: what the allow-list cannot see.

The allow-list (``tollgate.artifacts``) says which *types* a skops file may build; it cannot say whether their
*contents* are safe. scikit-learn's compiled predictors index their arrays without bounds checks — a tree's child
and feature indices, a gradient-boosting ensemble's shape, a support-vector model's counts — so an artifact made
only of allowed types, with its correct sha256, can still crash the process (an index past the node array), hang
it (a node that is its own child) or make it answer NaN. That is why skops itself declines to trust
``sklearn.tree._tree.Tree`` and the gradient-boosting ``TreePredictor``: trusting them means validating them.

Three stages, each refusing with :class:`~tollgate.artifacts.ArtifactError` naming the check:

1. :func:`check_archive`, before skops builds anything: the archive's declared sizes, and every ``Tree`` node's
   constructor arguments and state, since ``Tree(...)`` and ``Tree.__setstate__`` already read them in C (a
   ``node_count`` beyond the node array is read past its end by the first ``predict``);
2. :func:`check_model`, on the built objects: every tree of every family (node count, child indices in range and
   strictly increasing — so acyclic —, one parent per node, feature indices below the model's input width,
   thresholds that are numbers, finite leaf values of the right shape), ensembles' shapes, support-vector and
   nearest-neighbour internals;
3. :func:`probe`, with the dataset spec: the whole pipeline predicts a sample built from the spec and its own
   statistics, and every output must be finite (probabilities in [0, 1], summing to 1).

Pure: bytes and objects in, nothing out but an exception.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from tollgate.errors import ArtifactError

MAX_UNCOMPRESSED = 2 * 2**30    # what a skops archive may declare it unpacks to
MAX_ENTRIES = 100_000
MAX_TREE_NODES = 50_000_000     # of one tree
MAX_OUTPUTS = 1_000
MAX_CLASSES = 100_000
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")
KNN_METRICS = ("minkowski", "euclidean", "manhattan", "l1", "l2", "cityblock", "chebyshev")


def _error(message: str) -> Exception:
    return ArtifactError(f"the model's structure fails a check: {message}; refusing to load it")


# ---------------------------------------------------------------- 1. the archive, before anything is built

def check_archive(archive: zipfile.ZipFile, schema: Any) -> None:
    """Sizes the archive declares, and every ``Tree`` node's arguments and state as the file gives them."""
    entries = archive.infolist()
    if len(entries) > MAX_ENTRIES:
        raise _error(f"{len(entries)} entries in the archive, more than {MAX_ENTRIES}")
    declared = sum(e.file_size for e in entries)
    if declared > MAX_UNCOMPRESSED:
        raise _error(f"the archive unpacks to {declared / 2**30:.1f} GiB, more than {MAX_UNCOMPRESSED / 2**30:.0f}")
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__loader__") == "TreeNode":
                _tree_state(archive, node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _json_int(node: Any, what: str, low: int, high: int) -> int:
    if not (isinstance(node, dict) and node.get("__loader__") == "JsonNode" and node.get("is_json")):
        raise _error(f"{what} is not a plain number")
    try:
        value = json.loads(node["content"])
    except (KeyError, TypeError, ValueError):
        raise _error(f"{what} is not a plain number") from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _error(f"{what} is {value!r}, not an integer in [{low}, {high}]")
    return value


def _npy(archive: zipfile.ZipFile, node: Any, what: str) -> np.ndarray:
    if not (isinstance(node, dict) and node.get("__loader__") == "NdArrayNode" and node.get("type") == "numpy"
            and isinstance(node.get("file"), str)):
        raise _error(f"{what} is not a stored array")
    try:
        with archive.open(node["file"]) as fh:
            return np.load(io.BytesIO(fh.read()), allow_pickle=False)
    except Exception as exc:   # numpy's header parser raises many kinds (tokenize errors among them)
        raise _error(f"{what} cannot be read ({type(exc).__name__})") from None


def _tree_state(archive: zipfile.ZipFile, node: dict[str, Any]) -> None:
    """A ``sklearn.tree._tree.Tree`` exactly as skops would build it: ``Tree(n_features, n_classes, n_outputs)``
    then ``__setstate__({max_depth, node_count, nodes, values})``."""
    try:
        args = node["__reduce__"]["args"]["content"]
        state = node["content"]["content"]
    except (KeyError, TypeError):
        raise _error("a decision tree is not stored as scikit-learn stores one") from None
    if not isinstance(args, list) or len(args) != 3 or not isinstance(state, dict):
        raise _error("a decision tree is not stored as scikit-learn stores one")
    if set(state) != {"max_depth", "node_count", "nodes", "values"}:
        raise _error(f"a decision tree's state holds {sorted(state)}")
    n_features = _json_int(args[0], "a tree's n_features", 1, 10**7)
    n_outputs = _json_int(args[2], "a tree's n_outputs", 1, MAX_OUTPUTS)
    n_classes = _npy(archive, args[1], "a tree's n_classes")
    if n_classes.dtype.kind not in "iu" or n_classes.shape != (n_outputs,) \
            or np.any(n_classes < 1) or np.any(n_classes > MAX_CLASSES):
        raise _error(f"a tree's n_classes ({n_classes.dtype}, shape {n_classes.shape}) does not give one positive "
                     f"count per output ({n_outputs})")
    _json_int(state["max_depth"], "a tree's max_depth", 0, MAX_TREE_NODES)
    node_count = _json_int(state["node_count"], "a tree's node_count", 1, MAX_TREE_NODES)
    nodes = _npy(archive, state["nodes"], "a tree's nodes")
    values = _npy(archive, state["values"], "a tree's values")
    from sklearn.tree._tree import NODE_DTYPE

    if nodes.ndim != 1 or nodes.dtype.names != NODE_DTYPE.names:
        raise _error(f"a tree's node array has fields {nodes.dtype.names}, not {NODE_DTYPE.names}")
    if node_count != len(nodes):
        raise _error(f"a tree declares {node_count} nodes and holds {len(nodes)}")
    expected = (len(nodes), n_outputs, int(n_classes.max()))
    if values.shape != expected or values.dtype.kind != "f":
        raise _error(f"a tree's values are {values.dtype} {values.shape}, not float {expected}")
    _tree_nodes(nodes["left_child"], nodes["right_child"], nodes["feature"], nodes["threshold"],
                leaf=nodes["left_child"] == -1, n_features=n_features, what="a decision tree")
    if not np.all(np.isfinite(values)):
        raise _error("a decision tree holds values that are not finite")


def _tree_nodes(left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray, leaf: np.ndarray,
                n_features: int, what: str, allow_inf: bool = False) -> None:
    """One tree's node arrays: root 0, every split's children after it and inside the array (so the walk from
    the root ends), each node but the root the child of exactly one split, features below ``n_features``."""
    n = len(left)
    if n == 0:
        raise _error(f"{what} has no nodes")
    index = np.arange(n)
    split = ~leaf
    left, right = left.astype(np.int64), right.astype(np.int64)
    if split.any():
        l, r, i = left[split], right[split], index[split]
        if np.any(l <= i) or np.any(r <= i) or np.any(l >= n) or np.any(r >= n) or np.any(l == r):
            raise _error(f"{what} has a split whose children are not later nodes of the tree (a cycle or an index "
                         f"past its {n} nodes)")
        parents = np.bincount(np.concatenate([l, r]), minlength=n)
        if parents[0] != 0 or np.any(parents[1:] != 1):
            raise _error(f"{what} has nodes that are not each the child of exactly one split")
        f = feature[split].astype(np.int64)
        if np.any(f < 0) or np.any(f >= n_features):
            raise _error(f"{what} splits on feature {int(f.max() if np.any(f >= n_features) else f.min())}, "
                         f"outside the model's {n_features} inputs")
        t = threshold[split]
        if np.any(np.isnan(t)) or (not allow_inf and not np.all(np.isfinite(t))):
            raise _error(f"{what} has split thresholds that are not finite numbers")
    elif n != 1:
        raise _error(f"{what} has {n} nodes but no split")


# ---------------------------------------------------------------- 2. the built model

def check_model(model: Any) -> None:
    """Every estimator reachable from ``model`` (pipelines, column transformers, ensembles, calibration)."""
    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
            continue
        check = _CHECKS.get(type(obj).__name__)
        if check is not None and _fitted(obj):   # an unfitted template (a meta-estimator's `estimator`) never
            check(obj)                           # predicts: scikit-learn refuses it as not fitted
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            stack.extend(attributes.values())


def _fitted(estimator: Any) -> bool:
    return any(name.endswith("_") and not name.startswith("__") for name in vars(estimator))


def _width(estimator: Any) -> int:
    width = getattr(estimator, "n_features_in_", None)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 1 <= int(width) <= 10**7:
        raise _error(f"{type(estimator).__name__}.n_features_in_ is {width!r}")
    return int(width)


def _sklearn_tree(estimator: Any, n_features: int) -> None:
    """A fitted DecisionTree*'s ``tree_`` (built: its arrays are read only once node_count is known to fit)."""
    from sklearn.tree._tree import Tree

    tree = getattr(estimator, "tree_", None)
    if not isinstance(tree, Tree):
        raise _error(f"a {type(estimator).__name__} has no fitted tree")
    if not 1 <= tree.node_count <= tree.capacity:
        raise _error(f"a tree declares {tree.node_count} nodes in room for {tree.capacity}")
    if tree.n_features != n_features:
        raise _error(f"a tree takes {tree.n_features} inputs, its model {n_features}")
    nodes = tree.__getstate__()["nodes"]
    _tree_nodes(nodes["left_child"], nodes["right_child"], nodes["feature"], nodes["threshold"],
                leaf=nodes["left_child"] == -1, n_features=n_features, what="a decision tree")


def _decision_tree(estimator: Any) -> None:
    if getattr(estimator, "n_features_in_", None) is None:   # a member of an ensemble, which checks it
        return
    _sklearn_tree(estimator, _width(estimator))


def _forest(forest: Any) -> None:
    width = _width(forest)
    trees = getattr(forest, "estimators_", None)
    if not isinstance(trees, list) or not trees:
        raise _error("a random forest has no trees")
    for tree in trees:
        if type(tree).__name__ not in ("DecisionTreeRegressor", "DecisionTreeClassifier"):
            raise _error("a random forest holds something other than decision trees")
        _sklearn_tree(tree, width)


def _gradient_boosting(model: Any) -> None:
    """scikit-learn's compiled ``predict_stages`` writes column k of the raw scores for tree (i, k) without a
    bounds check: the ensemble must have exactly one tree per iteration and score column."""
    width = _width(model)
    trees = getattr(model, "estimators_", None)
    k = getattr(model, "n_trees_per_iteration_", None)
    if not isinstance(trees, np.ndarray) or trees.ndim != 2 or trees.dtype != object or trees.size == 0:
        raise _error("a gradient-boosting model's trees are not a 2-D array of trees")
    if not isinstance(k, (int, np.integer)) or trees.shape[1] != k:
        raise _error(f"a gradient-boosting model holds {trees.shape[1]} trees per iteration, expects {k!r}")
    classes = getattr(model, "classes_", None)
    if classes is not None and k != (1 if len(classes) == 2 else len(classes)):
        raise _error(f"a gradient-boosting classifier of {len(classes)} classes has {k} trees per iteration")
    for tree in trees.ravel():
        if type(tree).__name__ != "DecisionTreeRegressor":
            raise _error("a gradient-boosting model holds something other than regression trees")
        _sklearn_tree(tree, width)
    try:
        raw = model._raw_predict_init(np.zeros((2, width), dtype=np.float32))
    except Exception as exc:   # numpy only: a malformed initial estimate raises, it cannot crash
        raise _error(f"a gradient-boosting model's initial estimate fails ({type(exc).__name__})") from None
    if not isinstance(raw, np.ndarray) or raw.shape != (2, trees.shape[1]) or raw.dtype != np.float64:
        raise _error("a gradient-boosting model's initial estimate does not give one score per tree of an iteration")


def _hist_gradient_boosting(model: Any) -> None:
    """Every TreePredictor of a HistGradientBoosting model: the compiled walk (and Tollgate's prepared one) index
    node and input arrays without bounds checks; categorical splits (bitsets) are never trained by Tollgate."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    width = _width(model)
    k = getattr(model, "n_trees_per_iteration_", None)
    predictors = getattr(model, "_predictors", None)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_CLASSES:
        raise _error(f"a gradient-boosting model has {k!r} trees per iteration")
    classes = getattr(model, "classes_", None)
    if classes is not None and k != (1 if len(classes) == 2 else len(classes)):
        raise _error(f"a gradient-boosting classifier of {len(classes)} classes has {k} trees per iteration")
    if not isinstance(predictors, list) or not predictors:
        raise _error("a gradient-boosting model has no trees")
    baseline = np.asarray(getattr(model, "_baseline_prediction", None))
    if baseline.dtype.kind != "f" or baseline.size != k or not np.all(np.isfinite(baseline)):
        raise _error("a gradient-boosting model's baseline prediction does not give one finite score per tree")
    for name in ("is_categorical_",):
        flags = getattr(model, name, None)
        if flags is not None and np.any(flags):
            raise _error("a gradient-boosting model uses native categorical splits, which Tollgate never trains")
    mapper = getattr(model, "_bin_mapper", None)
    if mapper is None or (getattr(mapper, "is_categorical_", None) is not None and np.any(mapper.is_categorical_)):
        raise _error("a gradient-boosting model's bin mapper is missing or declares categorical features")
    for iteration in predictors:
        if not isinstance(iteration, list) or len(iteration) != k:
            raise _error(f"a gradient-boosting iteration does not hold {k} tree(s)")
        for predictor in iteration:
            nodes = getattr(predictor, "nodes", None)
            if type(predictor).__name__ != "TreePredictor" or not isinstance(nodes, np.ndarray) \
                    or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1 or not nodes.flags.c_contiguous:
                raise _error("a gradient-boosting tree's nodes are not scikit-learn's node records")
            if len(nodes) > MAX_TREE_NODES:
                raise _error(f"a gradient-boosting tree has {len(nodes)} nodes")
            if np.any(nodes["is_categorical"] != 0):
                raise _error("a gradient-boosting tree has categorical splits, which Tollgate never trains")
            leaf = nodes["is_leaf"] != 0
            _tree_nodes(nodes["left"], nodes["right"], nodes["feature_idx"], nodes["num_threshold"], leaf=leaf,
                        n_features=width, what="a gradient-boosting tree", allow_inf=True)
            if not np.all(np.isfinite(nodes["value"][leaf])):
                raise _error("a gradient-boosting tree has leaf values that are not finite")


def _svm(model: Any) -> None:
    """libsvm reads support vectors, coefficients and intercepts by the counts it is given, unchecked. (Inside a
    calibrated classifier the SVC has no ``n_features_in_``; its training shape gives the width.)"""
    shape = getattr(model, "shape_fit_", None)
    if getattr(model, "n_features_in_", None) is None and isinstance(shape, tuple) and len(shape) == 2:
        width = int(shape[1])
    else:
        width = _width(model)
    if model.kernel not in SVM_KERNELS:
        raise _error(f"a support-vector model's kernel is {model.kernel!r}")
    vectors = model.support_vectors_
    if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float64 and vectors.ndim == 2
            and vectors.shape[1] == width and vectors.flags.c_contiguous):
        raise _error("a support-vector model's support vectors are not a float64 matrix of its width")
    count = vectors.shape[0]
    classification = hasattr(model, "classes_")
    classes = len(model.classes_) if classification else 2
    pairs = classes * (classes - 1) // 2
    n_support = model._n_support
    expected = {
        "_n_support": (n_support, np.int32, (classes,)),
        "support_": (model.support_, np.int32, (count,)),
        "_dual_coef_": (model._dual_coef_, np.float64, (classes - 1, count)),
        "_intercept_": (model._intercept_, np.float64, (pairs if classification else 1,)),
    }
    for name, (array, dtype, shape) in expected.items():
        if not (isinstance(array, np.ndarray) and array.dtype == dtype and array.shape == shape
                and array.flags.c_contiguous):
            raise _error(f"a support-vector model's {name} is not {np.dtype(dtype)} of shape {shape}")
    if classification and (np.any(n_support < 0) or int(n_support.sum()) != count):
        raise _error("a support-vector model's support counts do not add up to its support vectors")
    for name in ("_probA", "_probB"):
        array = getattr(model, name)
        if not (isinstance(array, np.ndarray) and array.dtype == np.float64 and array.shape in ((0,), (pairs,))):
            raise _error(f"a support-vector model's {name} has the wrong shape")
    weights = getattr(model, "class_weight_", None)
    if classification and not (isinstance(weights, np.ndarray) and weights.shape == (classes,)
                               and weights.dtype == np.float64):
        raise _error("a support-vector model's class weights do not give one per class")
    numbers = [model._gamma, model.coef0, model.degree]
    finite = all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in numbers)
    if not finite or not 0 <= model.degree <= 20:
        raise _error("a support-vector model's kernel parameters are not finite numbers")
    for array in (vectors, model._dual_coef_, model._intercept_):
        if not np.all(np.isfinite(array)):
            raise _error("a support-vector model holds values that are not finite")


def _knn(model: Any) -> None:
    width = _width(model)
    if getattr(model, "_fit_method", None) != "brute" or model.effective_metric_ not in KNN_METRICS:
        raise _error("a nearest-neighbours model is not the brute-force search of a standard metric Tollgate trains")
    fitted = model._fit_X
    if not (isinstance(fitted, np.ndarray) and fitted.ndim == 2 and fitted.shape[1] == width
            and fitted.dtype == np.float64 and np.all(np.isfinite(fitted))):
        raise _error("a nearest-neighbours model's training rows are not a finite float64 matrix of its width")
    y = np.asarray(model._y)
    if y.shape[:1] != fitted.shape[:1] or not 1 <= int(model.n_neighbors) <= fitted.shape[0]:
        raise _error("a nearest-neighbours model's targets or neighbour count do not fit its training rows")
    if hasattr(model, "classes_") and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= len(model.classes_)):
        raise _error("a nearest-neighbours classifier's targets are not indices of its classes")


_CHECKS = {
    "DecisionTreeRegressor": _decision_tree, "DecisionTreeClassifier": _decision_tree,
    "RandomForestRegressor": _forest, "RandomForestClassifier": _forest,
    "GradientBoostingRegressor": _gradient_boosting, "GradientBoostingClassifier": _gradient_boosting,
    "HistGradientBoostingRegressor": _hist_gradient_boosting, "HistGradientBoostingClassifier": _hist_gradient_boosting,
    "SVC": _svm, "SVR": _svm,
    "KNeighborsRegressor": _knn, "KNeighborsClassifier": _knn,
}


# ---------------------------------------------------------------- 3. a probe through the whole pipeline

def probe(model: Any, spec: Any, rows: int = 512) -> None:
    """The pipeline predicts a sample built from the spec (and its own encoders' categories): every prediction
    must come back, finite, one per row; probabilities finite, in [0, 1], each row summing to 1."""
    from tollgate import prepared

    try:
        columns = prepared.sample(spec, model, rows=rows)   # the rows prepared.prepare checks with
        outputs = prepared.plain(model, spec)(columns)
    except Exception as exc:   # any failure of a built model on valid input is the model's
        raise _error(f"it fails on a sample of valid input ({type(exc).__name__}: {str(exc)[:200]})") from None
    predictions = np.asarray(outputs.predictions)
    if predictions.shape != (rows,):
        raise _error(f"it answers {predictions.shape} predictions for {rows} rows")
    if spec.task == "regression":
        if not np.all(np.isfinite(predictions.astype("float64"))):
            raise _error("it predicts values that are not finite")
        return
    proba = np.asarray(outputs.probabilities, dtype="float64")
    classes = list(getattr(model, "classes_", []))
    if proba.shape != (rows, len(classes)) or not np.all(np.isfinite(proba)) or np.any(proba < -1e-9) \
            or np.any(proba > 1 + 1e-9) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        raise _error("its class probabilities are not finite, between 0 and 1, one per class, summing to 1")
    if not set(predictions.tolist()) <= set(classes):
        raise _error("it predicts labels that are not among its classes")
