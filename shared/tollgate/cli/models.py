"""`tollgate models | model show | model download | history`: the registry and the decision ledger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from tollgate import views
from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, json_option
from tollgate.cli.target import Target


@main.command("models")
@click.argument("dataset")
@json_option
@click.pass_obj
def models_cmd(obj: Target, dataset: str, as_json: bool) -> None:
    """List a dataset's model versions: role, held-out and cross-validated metric, lineage summary."""
    rows = obj.models(dataset)
    if as_json:
        dump(rows)
        return
    render.models(dataset, rows)


@main.group("model")
def model_group() -> None:
    """One model version."""


@model_group.command("show")
@click.argument("dataset")
@click.argument("version", default="champion")
@click.pass_obj
def model_show(obj: Target, dataset: str, version: str) -> None:
    """The whole registry record of a version (a number, `champion`, `latest` or an alias; lineage, params,
    libraries, artifact, hash and tags), as JSON."""
    dump(obj.model(dataset, version))


@model_group.command("download")
@click.argument("dataset")
@click.argument("version", default="champion")
@click.option("-o", "--output", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to write DATASET-vN/.")
@click.pass_obj
def model_download(obj: Target, dataset: str, version: str, directory: Path) -> None:
    """Write a version's artifact (model.skops, checked against its registered sha256 and the artifact
    allow-list), its registry record and its training profile into DIR/DATASET-vN/.

    Load it as the services do: `tollgate.artifacts.loads(open(path, "rb").read(), record["sha256"])`."""
    written = obj.download(dataset, version, directory)
    for kind, path in written.items():
        console.print(f"{kind}: {path}")


@model_group.command("tag")
@click.argument("dataset")
@click.argument("version")
@click.argument("tags", nargs=-1, required=True)
@click.pass_obj
def model_tag(obj: Target, dataset: str, version: str, tags: tuple[str, ...]) -> None:
    """Label a version: `KEY=VALUE` sets a tag, `KEY=` removes it (`tollgate model tag taxi 7 ticket=ML-12`)."""
    pairs = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: write KEY=VALUE (or KEY= to remove)")
        pairs[key] = value or None
    current = obj.tag(dataset, version, pairs)
    console.print(f"{dataset} v{version}: " + (", ".join(f"{k}={v}" for k, v in sorted(current.items())) or
                                                "no tags"))


@model_group.command("alias")
@click.argument("dataset")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--remove", is_flag=True, help="Remove the alias.")
@click.pass_obj
def model_alias(obj: Target, dataset: str, name: str, version: str | None, remove: bool) -> None:
    """Point an alias people choose (`staging`, `audit-2026`) at a version, or remove it; `model show`, `model
    download` and the client take it wherever they take a version. `champion` and `canary` follow what serves."""
    if remove == (version is not None):
        raise click.UsageError("give a VERSION to point the alias at, or --remove")
    aliases = obj.alias(dataset, name, None if remove else version)
    console.print(f"{dataset} aliases: " + (", ".join(f"{a} → v{v}" for a, v in sorted(aliases.items())) or "none"))


def parse_time(value: str) -> dt.datetime:
    try:
        return views.parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("history")
@click.argument("dataset")
@click.option("--at", "at_time", help="Answer what served at this time (ISO 8601, UTC unless a zone is given) "
                                      "and why; the ledger is shown up to then.")
@json_option
@click.pass_obj
def history_cmd(obj: Target, dataset: str, at_time: str | None, as_json: bool) -> None:
    """The decision ledger of a dataset, oldest first: every decision, review outcome, canary move and
    rollback, with its actor, what served after it, and why."""
    at = parse_time(at_time) if at_time else None
    answer = obj.history(dataset, at)
    if as_json:
        dump(answer)
        return
    rows = answer["entries"] if at is not None else answer
    if not rows and not obj.state.get_dataset(dataset):
        raise click.ClickException(f"dataset {dataset!r} has no decisions; `tollgate status` lists datasets")
    render.history(dataset, rows, at, answer["serving"] if at is not None else None)
