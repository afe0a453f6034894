"""MkDocs hooks: the reference pages, generated from the code at build time so that they cannot drift from it —
the spec reference from the spec's pydantic models, the CLI reference from the click commands, the predictor API
from the OpenAPI document a predictor serves."""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pages() -> dict[str, str]:
    """The generated reference pages: their path under docs/ and their text."""
    for path in (ROOT, ROOT / "shared"):   # here: MkDocs restores sys.path after loading this module
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return {"reference/spec.md": spec_reference(), "reference/cli.md": cli_reference(),
            "reference/predictor-api.md": predictor_reference(), "reference/client.md": client_reference()}


def on_files(files: Any, config: Any) -> Any:
    """The reference pages are in the tree (docs/reference/, written by `make reference`, so that links work in
    the repository too); the build checks they are what the code generates now."""
    for name, text in pages().items():
        committed = ROOT / "docs" / name
        if not committed.exists() or committed.read_text() != text:
            raise SystemExit(f"docs/{name} is not what the code generates: run `make reference` and commit it")
    return files


def main() -> None:
    """`make reference`: write the reference pages into docs/reference/."""
    for name, text in pages().items():
        path = ROOT / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote docs/{name}")


# ---------------------------------------------------------------- the spec

def _type(annotation: Any) -> str:
    from pydantic import BaseModel

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}"
    if origin is typing.Annotated:
        return _type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "**required**"
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    if isinstance(value, BaseModel):
        return "its defaults"
    if value in ((), {}, None, ""):
        return "—" if value is None else "empty"
    return f"`{value}`"


def _section(model: Any, key: str) -> list[str]:
    doc = " ".join(line.strip() for line in (model.__doc__ or "").strip().splitlines())
    lines = [f"## {model.__name__}", "", f"`{key}`" + (f": {doc}" if doc else ""), "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if (field.json_schema_extra or {}).get("hidden"):
            continue
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{field.alias or name}` | {_type(field.annotation)} | {_default(field)} | {meaning} |")
    return lines + [""]


EXAMPLE = """
name: weather
task: regression
target: temp
time_column: time_hour
columns:
  station_id: {type: string, role: id}                  # kept, logged, never a feature
  time_hour: {type: datetime, parts: [month, day_of_week, hour], cyclical: true}
  origin: {type: string, allowed: [EWR, JFK, LGA]}
  carrier_route: {type: string, encoding: target}       # 3,000 values: one number each
  dewp: {type: float, min: -60, max: 130}
  humid: {type: float, min: 0, max: 100}
  temp: {type: float, nullable: false}                  # empty: unlabelled, dropped, counted
features:
  numeric: [dewp, humid]
  categorical: [origin, carrier_route]
  datetime: [time_hour]
policy:
  threshold: 0.9
"""


def spec_reference() -> str:
    from tollgate import spec as specs

    sections = [(specs.DatasetSpec, "the top level"), (specs.Column, "columns.<name>"),
                (specs.Outliers, "columns.<name>.outliers"), (specs.Rule, "rules[]"), (specs.Features, "features"),
                (specs.Model, "model"), (specs.Search, "model.search"), (specs.Range, "model.search.space.<param>"),
                (specs.Training, "training"),
                (specs.Evaluation, "evaluation"), (specs.Policy, "policy"), (specs.Drift, "drift"),
                (specs.Thresholds, "drift.psi, drift.js"), (specs.Deployment, "deployment"),
                (specs.Review, "review"), (specs.Monitoring, "monitoring"), (specs.Tracking, "tracking"),
                (specs.MLflow, "tracking.mlflow")]
    lines = ["# Spec reference", "",
             "Every key a dataset spec may have, generated from the spec's models (`shared/tollgate/spec/`). "
             "A key that is not listed is refused, with the nearest known key suggested; each problem is "
             "reported with its YAML path and line. Check a spec with `tollgate spec check FILE [--data FILE]`, "
             "start one with `tollgate spec infer DATA --target COLUMN`.", "",
             "Beyond each key's own type and range, a spec is checked as a whole: the target and every feature, "
             "slice, `drift.exclude` and `time_column` are declared columns (a feature is not the target); the "
             "primary metric fits the task (" + "; ".join(f"{t}: {', '.join(m)}" for t, m in
                                                          specs.TASK_METRICS.items()) +
             "); a classification target's `allowed` lists at least two classes; `naive_bayes` is for "
             "classification; `training.window: days` needs `time_column`; `monitoring.retention_days` keeps at "
             "least the label window; every rule parses in the rule language over the declared columns.", "",
             "## A table with a timestamp and an identifier", "",
             "A spec for weather observations whose `time_hour` holds ISO-8601 times and whose `station_id` "
             "identifies the row's station (what `tollgate spec infer` finds in such a file): the time is a "
             "`datetime` the model learns "
             "from through its parts (it is also the batch's `time_column`), the identifier is kept and logged "
             "with each prediction but never learned from, a wide category is target-encoded, and rows without a "
             "target are dropped as unlabelled.", "",
             "```yaml", EXAMPLE.strip(), "```", ""]
    for model, key in sections:
        lines += _section(model, key)
    return "\n".join(lines)


# ---------------------------------------------------------------- the CLI

def cli_reference() -> str:
    import click

    from tollgate.cli import main

    lines = ["# CLI reference", "",
             "Every `tollgate` command with its `--help`, generated from the commands themselves. The same "
             "commands run as `python -m tollgate`.", ""]

    def walk(command: click.Command, parent: click.Context | None, name: str) -> None:
        ctx = click.Context(command, info_name=name, parent=parent, terminal_width=100, max_content_width=100)
        if parent is not None:
            lines.extend([f"## {ctx.command_path}", "", "```text", command.get_help(ctx), "```", ""])
        if isinstance(command, click.Group):
            for sub in sorted(command.list_commands(ctx)):
                walk(command.get_command(ctx, sub), ctx, sub)

    walk(main, None, "tollgate")
    return "\n".join(lines)


# ---------------------------------------------------------------- the Python client

def client_reference() -> str:
    import inspect
    import textwrap

    from tollgate import client

    lines = ["# Python client reference", "", "`from tollgate import Client`: every public method, with its signature "
             "and docstring, generated from `shared/tollgate/client.py`.", "",
             "```python", textwrap.dedent(inspect.getdoc(client).split("\n\n", 1)[1].split("\n\nEvery answer")[0]),
             "```", ""]
    for name, member in inspect.getmembers(client.Client, inspect.isfunction):
        if name.startswith("_") or name not in vars(client.Client):
            continue
        signature = str(inspect.signature(member)).replace("(self, ", "(").replace("(self)", "()").replace("'", "")
        lines += [f"## `Client.{name}{signature}`", "", inspect.getdoc(member) or "", ""]
    lines += ["## `ClientError`", "", inspect.getdoc(client.ClientError) or "", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the predictor API

def predictor_reference() -> str:
    from services.predictor import openapi
    from tollgate import spec as specs

    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    document = openapi.document(spec, version=1, max_instances=1000)
    lines = ["# Predictor API reference", "",
             "Every route of a predictor, from the OpenAPI 3.0 document it serves at `GET /openapi.json`, here the "
             "taxi predictor's (each dataset's document names its own features, ranges and classes).", ""]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", operation.get("summary", ""), ""]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines += ["Request body:", "", "```json", json.dumps(body, indent=2), "```", ""]
            lines += ["| answer | meaning |", "|---|---|"]
            lines += [f"| {code} | {answer.get('description', '')} |"
                      for code, answer in operation.get("responses", {}).items()]
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
