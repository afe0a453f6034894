"""Values as JSON and Firestore take them: times in RFC 3339 UTC, numpy arrays and scalars as plain numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson


def iso(value: Any) -> Any:
    """A datetime (Firestore's too) as ``2026-11-22T14:30:00Z``; anything else as it is."""
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def default(value: Any) -> Any:
    """orjson's ``default``: what its numpy support leaves out (object arrays such as class labels, numpy
    scalars), datetimes, and anything else as text."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime):
        return iso(value)
    return str(value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=default)


def plain(value: Any) -> Any:
    """``value`` made of plain JSON types only (Firestore takes no numpy scalars; NaN becomes null)."""
    return orjson.loads(dumps(value))
