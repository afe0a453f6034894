"""Reading a spec: from YAML text or a mapping, refusing what it does not know with each problem's path and line,
and a loaded spec with some values changed."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from tollgate import yamlload
from tollgate.spec import checks
from tollgate.spec.dataset import DatasetSpec
from tollgate.spec.errors import Problem, SpecError, where, yaml_lines
from tollgate.spec.names import DATASET_NAME


def replace(spec: DatasetSpec, **changes: Any) -> DatasetSpec:
    """``spec`` with some values changed, named by their path with ``__`` (``training__max_rows=3000``); checked
    like a loaded spec."""
    raw = _plain(spec.raw)
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return from_dict(raw)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_ALIASES = {"features": "feature_lists"}   # YAML key → field


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model a YAML path leads into, or None."""
    current: Any = DatasetSpec
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            name = _ALIASES.get(part, part) if current is DatasetSpec else part
            field = current.model_fields.get(name) if isinstance(name, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, tuple, list):
            args = typing.get_args(current)
            current = args[-1] if args else None
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()
            if not (field.json_schema_extra or {}).get("hidden")]


def _message(error: dict[str, Any], path: tuple[Any, ...]) -> str:
    kind, key = error["type"], path[-1] if path else ""
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        known = _keys(model) if model else []
        close = difflib.get_close_matches(str(key), known, n=1)
        return f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else
                                          f"; known here: {', '.join(known)}" if known else "")
    if kind == "missing":
        return f"{key!r} is required"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    return error["msg"] + ("" if isinstance(shown, (dict, list)) else f" (got {shown!r})")






def _raise(problems: list[Problem], lines: dict[tuple[Any, ...], int], name: Any) -> None:
    listed = [f"{where(path, lines)}: {message}" for path, message in problems]
    head = f"spec {name}" if isinstance(name, str) and DATASET_NAME.fullmatch(name) else "spec"
    summary = listed[0] if len(listed) == 1 else f"{len(listed)} problems:\n  " + "\n  ".join(listed)
    raise SpecError(f"{head}: {summary}", listed)


def from_dict(raw: Any, lines: dict[tuple[Any, ...], int] | None = None) -> DatasetSpec:
    """The spec of a YAML mapping; a :class:`SpecError` listing every problem otherwise."""
    lines = lines or {}
    if not isinstance(raw, dict):
        raise SpecError("a dataset spec is a YAML mapping of keys such as name, task, target, columns, "
                        "features and policy")
    name = raw.get("name")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path = tuple("features" if p == "feature_lists" else p for p in error["loc"])
            problems.append((path, _message(error, path)))
        _raise(problems, lines, name)
    problems, parsed = checks.check(spec)
    if problems:
        _raise(problems, lines, name)
    spec._raw = raw
    spec._rules = parsed
    return spec


def loads(text: str) -> DatasetSpec:
    try:
        raw, root = yamlload.load(text)
    except yamlload.YamlError as exc:
        raise SpecError(f"the dataset spec is {exc}" if str(exc).startswith("not valid YAML")
                        else f"the dataset spec cannot be read: {exc}") from None
    return from_dict(raw, yaml_lines(root))


def load(path: Path | str) -> DatasetSpec:
    return loads(Path(path).read_text())
