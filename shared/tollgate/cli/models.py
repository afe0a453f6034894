"""`tollgate models | model show | history`: the registry and the decision ledger."""

from __future__ import annotations

import datetime as dt

import click

from tollgate.cli import render, views
from tollgate.cli.app import main
from tollgate.cli.output import dump, json_option
from tollgate.cli.target import Target


@main.command("models")
@click.argument("dataset")
@json_option
@click.pass_obj
def models_cmd(obj: Target, dataset: str, as_json: bool) -> None:
    """List a dataset's model versions: role, held-out and cross-validated metric, lineage summary."""
    versions = obj.state.list_versions(dataset)
    if not versions:
        raise click.ClickException(f"dataset {dataset!r} has no registered models")
    rows = views.model_rows(obj.state.get_dataset(dataset), versions,
                            obj.state.get_runs([v["run_id"] for v in versions]))
    if as_json:
        dump(rows)
        return
    render.models(dataset, rows)


@main.group("model")
def model_group() -> None:
    """One model version."""


@model_group.command("show")
@click.argument("dataset")
@click.argument("version", type=int)
@click.pass_obj
def model_show(obj: Target, dataset: str, version: int) -> None:
    """The whole registry record of a version (lineage, params, libraries, artifact and hash), as JSON."""
    from tollgate import serving

    record = obj.state.get_version(dataset, version)
    if record is None:
        raise click.ClickException(f"{dataset} has no version {version}; list them with `tollgate models {dataset}`")
    role = serving.role_of(version, obj.state.get_dataset(dataset), obj.state.get_run(record["run_id"]))
    dump(views.model_record(record, role))


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
    from tollgate import serving

    at = parse_time(at_time) if at_time else None
    entries = obj.state.ledger(dataset)
    if at is not None:
        entries = [e for e in entries if e["at"] <= at]
    rows = views.history_rows(entries)
    answer = serving.serving_at(entries, at) if at is not None else None
    if as_json:
        dump({"at": at, "serving": answer, "entries": rows} if at is not None else rows)
        return
    if not rows and not obj.state.get_dataset(dataset):
        raise click.ClickException(f"dataset {dataset!r} has no decisions; `tollgate status` lists datasets")
    render.history(dataset, rows, at, answer)
