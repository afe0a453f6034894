"""Model artifacts: skops bytes, sha256-checked, and loaded only if every node is on an exact allow-list.

A skops file is a zip: ``schema.json`` describes a tree of nodes, each naming a type (module and class) and
the skops loader that rebuilds it, and ``.npy`` files hold the arrays (read without pickle). skops builds
only the types it is told to trust, but it trusts some families wholesale (every scikit-learn estimator,
numpy ufuncs), and a caller that trusts "whatever the file asks for" runs whatever the file names. So a
Tollgate loader trusts exactly the nodes its trainer produces — :data:`ALLOWED_NODES`, each a (type,
loader) pair — and refuses any other before skops builds anything: no function, method or partial
references (so no ``FunctionTransformer(func=eval)``), no type known only by its prefix.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tollgate.errors import ArtifactError

_PLAIN = {("builtins." + t, "JsonNode") for t in ("str", "int", "float", "bool", "NoneType")}
_CONTAINERS = {("builtins.dict", "DictNode"), ("builtins.list", "ListNode"), ("builtins.tuple", "TupleNode"),
               ("builtins.slice", "SliceNode")}
_NUMBERS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
            "uint64", "bool")
_NUMPY = ({("numpy.ndarray", "NdArrayNode"), ("numpy.dtype", "DTypeNode"),
           ("numpy.random._generator.Generator", "RandomGeneratorNode")}
          | {(f"numpy.{t}", "NdArrayNode") for t in _NUMBERS}
          | {(f"numpy.{t}", "TypeNode") for t in _NUMBERS}
          | {("builtins.str", "TypeNode"), ("builtins.int", "TypeNode")})   # a dict's key types (plain data)
# The pipeline around every estimator (training.build_pipeline).
_PIPELINE = {(f"sklearn.{t}", "ObjectNode") for t in (
    "pipeline.Pipeline", "compose._column_transformer.ColumnTransformer", "impute._base.SimpleImputer",
    "preprocessing._encoders.OneHotEncoder", "preprocessing._encoders.OrdinalEncoder",
    "preprocessing._data.StandardScaler",
    "preprocessing._label.LabelEncoder",
    "preprocessing._target_encoder.TargetEncoder",
    # ColumnTransformer keeps "passthrough" columns as a FunctionTransformer without a function; a function in
    # it would be a FunctionNode, which is refused
    "preprocessing._function_transformer.FunctionTransformer")}
_PIPELINE |= {("tollgate.transformers.DatetimeParts", "ObjectNode")}   # datetime features' parts (plain data)
# Each supported estimator family (spec.ESTIMATORS), for regression and classification.
_ESTIMATORS = {(f"sklearn.{t}", "ObjectNode") for t in (
    "ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "ensemble._hist_gradient_boosting.binning._BinMapper", "ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "ensemble._forest.RandomForestRegressor", "ensemble._forest.RandomForestClassifier",
    "tree._classes.DecisionTreeRegressor", "tree._classes.DecisionTreeClassifier",
    "linear_model._ridge.Ridge", "linear_model._logistic.LogisticRegression",
    "ensemble._gb.GradientBoostingRegressor", "ensemble._gb.GradientBoostingClassifier",
    "dummy.DummyRegressor", "dummy.DummyClassifier",    # gradient boosting's initial estimate
    "svm._classes.SVR", "svm._classes.SVC", "calibration.CalibratedClassifierCV",
    "calibration._CalibratedClassifier", "calibration._SigmoidCalibration",
    "neighbors._regression.KNeighborsRegressor", "neighbors._classification.KNeighborsClassifier",
    "naive_bayes.GaussianNB")}
_ESTIMATORS |= {("sklearn.tree._tree.Tree", "TreeNode"),
                ("numpy.random.mtrand.RandomState", "RandomStateNode")}   # gradient boosting's fitted random_state
# The losses and links gradient boosting keeps, for every `loss` its params may choose.
_LOSSES = ({(f"sklearn._loss.loss.{t}", "ObjectNode") for t in (
    "HalfSquaredError", "AbsoluteError", "HalfPoissonLoss", "HalfGammaLoss", "PinballLoss", "HalfBinomialLoss",
    "HalfMultinomialLoss")}
    | {(f"sklearn._loss._loss.Cy{t}", "LossNode") for t in (
        "HalfSquaredError", "AbsoluteError", "HalfPoissonLoss", "HalfGammaLoss", "PinballLoss", "HalfBinomialLoss",
        "HalfMultinomialLoss")}
    | {(f"sklearn._loss.link.{t}", "ObjectNode") for t in (
        "Interval", "IdentityLink", "LogLink", "LogitLink", "MultinomialLogit")})

# Every node a Tollgate model may hold: (fully qualified type, skops loader). What the trainer produces for
# each supported estimator family and task, pinned by tests/test_artifacts.py. A new estimator family
# adds its types here, on purpose.
ALLOWED_NODES: frozenset[tuple[str, str]] = frozenset(_PLAIN | _CONTAINERS | _NUMPY | _PIPELINE | _ESTIMATORS
                                                      | _LOSSES)
# Of those, the types skops does not trust by default and must be told to (the test checks that what skops
# reports as untrusted for every trained model is a subset of these).
TRUSTED_TYPES: frozenset[str] = frozenset({
    "numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "sklearn.tree._tree.Tree",
    "tollgate.transformers.DatetimeParts", "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"})


def artifact_object(dataset: str, version: int) -> str:
    """Where a version's model lives; the only object any loader reads for it."""
    return f"models/{dataset}/{int(version)}/model.skops"


def window_object(dataset: str, version: int) -> str:
    """Where a version's training window manifest lives; the only object read for it."""
    return f"models/{dataset}/{int(version)}/window.json"


def read_verified(cloud: Any, record: dict[str, Any]) -> bytes:
    """A registered version's artifact bytes (``record`` is its registry record), only if they hash to the
    sha256 it was registered with."""
    blob = cloud.read_bytes(artifact_object(record["dataset"], record["version"]))
    if sha256(blob) != record["sha256"]:
        raise ArtifactError(f"the artifact of {record['dataset']} v{record['version']} does not hash to its "
                            "registered sha256: it was altered after registration")
    return blob


def record_spec(record: dict[str, Any]) -> Any:
    """The dataset spec a version was trained with (its registry record carries it): what its loaders probe it
    with."""
    from tollgate import spec as specs

    try:
        return specs.from_dict(record["spec"])
    except (KeyError, specs.SpecError) as exc:
        raise ArtifactError(f"the registry record of {record.get('dataset')} v{record.get('version')} carries no "
                            f"spec this code can read ({type(exc).__name__})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def dumps(model: Any) -> bytes:
    import skops.io as sio  # here, not at the top: hashing must not pay for importing scikit-learn

    return sio.dumps(model)


def _archive(data: bytes) -> tuple[zipfile.ZipFile, Any]:
    """The skops file as a zip archive and its parsed ``schema.json``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError, OSError, EOFError) as exc:
        raise ArtifactError(f"not a skops model file: {type(exc).__name__}: {exc}"[:300]) from None
    return archive, schema


def _schema_nodes(schema: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add((f"{node.get('__module__')}.{node.get('__class__')}", str(node["__loader__"])))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def nodes(data: bytes) -> set[tuple[str, str]]:
    """Every (type, loader) the skops file's schema names, wherever it sits in the tree."""
    archive, schema = _archive(data)
    with archive:
        return _schema_nodes(schema)


def check(data: bytes) -> list[str]:
    """The types skops must be told to trust, if every node of the file is allowed and the arrays its trees are
    built from are sound (``tollgate.modelcheck``); else ArtifactError."""
    from tollgate import modelcheck

    archive, schema = _archive(data)
    with archive:
        refused = sorted(_schema_nodes(schema) - ALLOWED_NODES)
        if refused:
            raise ArtifactError("the model holds nodes outside Tollgate's allow-list: "
                                + ", ".join(f"{t} ({loader})" for t, loader in refused[:20])
                                + (f" and {len(refused) - 20} more" if len(refused) > 20 else "")
                                + "; refusing to load it")
        modelcheck.check_archive(archive, schema)   # before skops builds a Tree, which reads them in C
    import skops.io as sio

    try:
        untrusted = sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:   # skops could not walk the schema: malformed
        raise ArtifactError(f"not a skops model file skops can read ({type(exc).__name__})") from None
    beyond = [t for t in untrusted if t not in TRUSTED_TYPES]
    if beyond:   # every node is allowed, yet skops distrusts a name we do not: refuse rather than guess
        raise ArtifactError(f"skops does not trust {', '.join(beyond)}, which Tollgate's allow-list does not "
                            "name; refusing to load the model")
    return untrusted


def loads(data: bytes, expected_sha256: str, spec: Any = None) -> Any:
    """Load a model only if its bytes hash to what the registry recorded, every node is allowed and its structure
    is sound (``tollgate.modelcheck``); with the dataset ``spec``, also only if it predicts finite values on a
    sample of valid input. Whatever is wrong with the file is an ArtifactError, never a crash."""
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(f"model bytes hash to {actual}, but the registry recorded {expected_sha256}: "
                            "the artifact was altered after registration; refusing to load it")
    trusted = check(data)
    import skops.io as sio

    from tollgate import modelcheck

    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:   # the schema is allowed but does not build: a malformed file
        raise ArtifactError(f"the model file does not build ({type(exc).__name__}: {str(exc)[:200]}); "
                            "refusing to load it") from None
    modelcheck.check_model(model)
    if spec is not None:
        modelcheck.probe(model, spec)
    return model
