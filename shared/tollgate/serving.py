"""What serves a dataset, and how each action moves it. Pure: the Firestore transactions in
cloud/state.py apply these moves; Cloud Run traffic follows ``traffic()``.

A dataset's serving pointers (its document in ``datasets/``)::

    champion_version   the champion: serves all traffic, or all but the canary's share
    previous_version   the champion before it (what `rollback` returns to by default)
    canary             {version, percent, run_id, since} while a promoted version is on trial

A version's role follows from the pointers: champion, canary, previous, challenger (its run
is still being judged), in review, or archived.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

PROMOTE, CANARY_PROMOTE, CANARY_ABORT, ROLLBACK = "promote", "canary-promote", "canary-abort", "rollback"


class MoveError(ValueError):
    """The action makes no sense for the current pointers; the message says what would."""


def traffic(ds: dict[str, Any]) -> list[tuple[int, int]]:
    """(version, percent) pairs for the predictor service; empty when nothing serves yet."""
    champion = ds.get("champion_version")
    canary = ds.get("canary")
    if champion is None:
        return []
    if canary:
        return [(int(champion), 100 - int(canary["percent"])), (int(canary["version"]), int(canary["percent"]))]
    return [(int(champion), 100)]


def serving_summary(ds: dict[str, Any]) -> dict[str, Any]:
    """The serving state as it goes into ledger entries and events."""
    canary = ds.get("canary")
    return {"version": ds.get("champion_version"),
            "canary": {"version": canary["version"], "percent": canary["percent"]} if canary else None}


def move(ds: dict[str, Any], action: str, *, version: int | None = None, percent: int = 0,
         run_id: str | None = None, at: Any = None, actor: str = "auto") -> dict[str, Any]:
    """The dataset fields an action sets (merged into the dataset document)."""
    champion = ds.get("champion_version")
    canary = ds.get("canary")
    since = {"since": at, "run_id": run_id, "actor": actor, "by": action}
    if action == PROMOTE:
        if version is None:
            raise MoveError("promote needs the version to promote")
        if percent and champion is not None:
            # On trial: the champion keeps serving the rest. A newer promotion replaces a running canary.
            return {"canary": {"version": version, "percent": percent, **since}}
        return {"champion_version": version, "previous_version": champion, "canary": None,
                "serving": {"version": version, **since}}
    if action in (CANARY_PROMOTE, CANARY_ABORT):
        if not canary:
            raise MoveError(f"no canary is running (serving: v{champion})" if champion else "nothing serves yet")
        if action == CANARY_ABORT:
            return {"canary": None}
        return {"champion_version": canary["version"], "previous_version": champion, "canary": None,
                "serving": {"version": canary["version"], **since, "run_id": canary.get("run_id")}}
    if action == ROLLBACK:
        if version is None:
            raise MoveError("rollback needs a target version")
        if champion is None:
            raise MoveError("nothing serves yet; there is nothing to roll back")
        if version == champion and not canary:
            return {}
        return {"champion_version": version,
                "previous_version": champion if version != champion else ds.get("previous_version"),
                "canary": None, "serving": {"version": version, **since}}
    raise MoveError(f"unknown action {action!r}")


def rollback_target(ds: dict[str, Any], to: int | None) -> int:
    """The version `rollback` serves: ``to``, or the previous champion.

    Safe to repeat: right after a rollback, a plain `rollback` again targets the same version
    (it finishes a deployment left half-done) instead of flipping back.
    """
    if to is not None:
        return to
    serving = ds.get("serving") or {}
    if serving.get("by") == ROLLBACK and ds.get("champion_version") is not None:
        return int(ds["champion_version"])
    previous = ds.get("previous_version")
    if previous is None:
        raise MoveError("there is no previous version to roll back to; name one with --to VERSION")
    return int(previous)


def role_of(version: int, ds: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """A version's role, derived from the dataset's pointers and its run (version records stay immutable):
    champion, canary, previous, challenger, in review or archived."""
    if version == ds.get("champion_version"):
        return "champion"
    if (ds.get("canary") or {}).get("version") == version:
        return "canary"
    if version == ds.get("previous_version"):
        return "previous"
    if run is not None and run.get("status") in ("trained", "evaluating", "evaluated"):
        return "challenger"
    if run is not None and run.get("decision") == "review" and (run.get("review") or {}).get("status") == "pending":
        return "in review"
    return "archived"


def serving_at(ledger: list[dict[str, Any]], at: dt.datetime) -> dict[str, Any] | None:
    """What served at ``at`` and the ledger entry that put it there (None: nothing served yet)."""
    before = [e for e in ledger if e["at"] <= at and e.get("serving_after")]
    if not before:
        return None
    serving = before[-1]["serving_after"]
    if serving.get("version") is None:
        return None
    version = serving["version"]
    since = next((e for e in reversed(before)
                  if e.get("champion_after") == version and e.get("champion_before") != version), None)
    canary = serving.get("canary")
    canary_since = next((e for e in reversed(before) if canary and e["serving_after"].get("canary")
                         and e["serving_after"]["canary"]["version"] == canary["version"]
                         and e.get("event") in ("promote", "approved")), None) if canary else None
    return {"at": at, "serving": serving, "since": since, "canary_since": canary_since,
            "last_entry": before[-1]}


def training_batches(version: dict[str, Any]) -> int:
    """How many curated batches a registered version trained on (its window manifest's count; versions
    registered before manifests kept the list itself)."""
    window = version.get("training_window")
    return len(window) if isinstance(window, list) else int((window or {}).get("batches") or 0)
