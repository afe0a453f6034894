"""Model artifacts: skops bytes (no code runs on load), sha256-addressed, refused on mismatch."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any



class ArtifactError(Exception):
    """An artifact cannot be trusted: hash mismatch or types outside the allow-list."""


# Types a Tollgate model may contain beyond skops' defaults; anything else is refused on load.
ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def dumps(model: Any) -> bytes:
    import skops.io as sio   # here, not at the top: hashing must not pay for importing scikit-learn

    return sio.dumps(model)


def loads(data: bytes, expected_sha256: str) -> Any:
    """Load a model only if its bytes hash to what the registry recorded and every type is allowed."""
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(f"model bytes hash to {actual}, but the registry recorded {expected_sha256}: "
                            "the artifact was altered after registration; refusing to load it")
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(ALLOWED_PREFIXES)]
    if refused:
        raise ArtifactError(f"model contains types outside the allow-list: {', '.join(refused)}")
    return sio.loads(data, trusted=untrusted)
