"""`tollgate drop | runs | run show | report`: dropping data and following its runs."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from tollgate import lifecycle, tracing, views
from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, json_option, out
from tollgate.cli.target import Target


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="The dataset the file belongs to (its spec's name).")
@click.option("--name", help="Object name under incoming/DATASET/ (default: the file's name).")
@click.option("--wait", is_flag=True, help="Follow the run until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def drop(obj: Target, path: Path, dataset: str, name: str | None, wait: bool, as_json: bool, timeout: int) -> None:
    """Upload a data file to gs://BUCKET/incoming/DATASET/, which starts a run.

    With --wait, exits 0 once a model serves the decision (a promotion deployed, or the champion kept), 2 when
    the run waits for a person (the review to decide is named) and 1 when it was rejected or failed (or its
    promotion could not be deployed).
    """
    dropped = obj.drop(path, dataset, wait=False, name=name)
    console.print(f"dropped {path} → gs://{obj.cloud.settings.bucket}/{dropped['object']} (generation "
                  f"{dropped['generation']}); run {dropped['run_id']}")
    if not wait:
        if as_json:
            dump(dropped)
        return
    run = wait_for_run(obj, dropped["run_id"], timeout)
    if as_json:
        dump(views.run_summary(run))
    else:
        render.run(run)
    sys.exit(outcome(obj, run))


def outcome(obj: Target, run: dict[str, Any]) -> int:
    """The exit code of a wait: 0 a model serves the decision (or the rows were there already: a duplicate), 2 a
    person must decide (and how), 1 otherwise."""
    if run.get("status") == lifecycle.DUPLICATE:
        return 0
    if run.get("status") != lifecycle.DECIDED or (run.get("deployment") or {}).get("status") == "failed":
        return 1
    review = obj.state.get_review(run["run_id"]) if run.get("decision") == "review" else None
    if review is not None and review.get("status") == "pending":
        serving = (obj.state.get_dataset(run["dataset"]) or {}).get("champion_version")
        console.print(f"[yellow]run {run['run_id']} waits for a person[/]: "
                      + (f"v{serving} keeps serving meanwhile; " if serving is not None else
                         f"{run['dataset']} has no model serving until then; ")
                      + f"see the evidence with `tollgate review show {run['run_id']}`, then `tollgate review "
                        f"approve {run['run_id']} --reason ...` (or reject)", highlight=False)
        return 2
    return 0


def wait_for_run(obj: Target, run_id: str, timeout: float) -> dict[str, Any]:
    """Follow the run until it ends (``Client.follow``), showing its progress: each step, a killed execution
    (said once: the reconciler relaunches it, so the wait goes on), a run superseded by a later one (followed)."""
    with console.status("waiting for the notification…") as status:
        for event, run, detail in obj.follow(run_id, timeout):
            now = f"[dim]{dt.datetime.now():%H:%M:%S}[/]"
            if event == "status":
                status.update(f"run {run['run_id']}: {detail}")
                console.print(f"{now} {detail}", highlight=False)
            elif event == "superseded":
                console.print(f"{now} run {run['run_id']} is superseded: run {detail} trains on its batch; "
                              "following that run", highlight=False)
            elif event == "killed":
                console.print(f"[yellow]the execution {str(detail).rsplit('/', 1)[-1]} of this step failed without "
                              "marking the run (killed?): the reconciler relaunches the step on its next pass "
                              "(every 5 minutes), or now with `tollgate reconcile`[/]", highlight=False)
            else:
                return run
    raise AssertionError("follow() ends with the run or raises")   # pragma: no cover


@main.group("runs", invoke_without_command=True)
@click.option("--dataset", help="Only this dataset's runs.")
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
def runs_cmd(ctx: click.Context, dataset: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first (`tollgate runs compare A B` puts two side by side)."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Target = ctx.obj
    if as_json:
        dump(obj.runs(dataset, limit))
        return
    render.runs(obj.state.list_runs(limit=limit, dataset=dataset))


@main.group("run")
def run_group() -> None:
    """One run."""


@runs_cmd.command("compare")
@click.argument("a")
@click.argument("b")
@json_option
@click.pass_obj
def run_compare(obj: Target, a: str, b: str, as_json: bool) -> None:
    """Two runs side by side: decision, data, model and params, held-out metrics; the fields that differ in bold."""
    compared = obj.compare(a, b)
    if as_json:
        dump(compared)
        return
    render.comparison(compared)


@run_group.command("show")
@click.argument("run_id")
@json_option
@click.option("--wait", is_flag=True, help="Follow the run until it ends first (exit 1 if it was rejected or failed, "
                                          "2 if it waits for a review).")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def run_show(obj: Target, run_id: str, as_json: bool, wait: bool, timeout: int) -> None:
    """Show a run: status, decision, metrics, failed checks, recoveries."""
    run = obj.existing_run(run_id)
    if wait:
        run = wait_for_run(obj, run_id, timeout)
    if as_json:
        dump({**views.run_detail(run), "trace_id": tracing.trace_id(run["run_id"])})
    else:
        render.run(run)
        out.print(f"trace {tracing.trace_id(run['run_id'])}: its spans across functions and jobs with "
                  f"`tollgate trace {run['run_id']}`", highlight=False)
    if wait:
        sys.exit(outcome(obj, run))


@main.command("trace")
@click.argument("run_id")
@json_option
@click.pass_obj
def trace_cmd(obj: Target, run_id: str, as_json: bool) -> None:
    """A run's OpenTelemetry trace: each function and job that worked on it, as a tree of spans with their
    timings (locally), or its Cloud Trace link (on Google Cloud)."""
    found = obj.trace(run_id)
    if as_json:
        dump(found)
    else:
        render.trace(found)


@main.command("report")
@click.argument("run_id")
@click.option("--kind", type=click.Choice(["validation", "evaluation"]), default="validation",
              show_default=True, help="Which of the run's reports.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML (default: ./<run_id>-<kind>.html).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
@click.pass_obj
def report_cmd(obj: Target, run_id: str, kind: str, output: Path | None, open_browser: bool) -> None:
    """Write a run's HTML report (reports/<run_id>/<kind>.html in the bucket) to a local file."""
    from tollgate.errors import NotFound

    obj.existing_run(run_id)
    name = f"reports/{run_id}/{kind}.html"
    try:
        html = obj.cloud.read_bytes(name)
    except NotFound:
        raise click.ClickException(f"gs://{obj.cloud.settings.bucket}/{name} does not exist (yet): the run has not "
                                   f"reached that step; check it with `tollgate run show {run_id}`") from None
    output = output or Path(f"{run_id}-{kind}.html")
    output.write_bytes(html)
    out.print(f"wrote {output} ({len(html) / 1024:.0f} KiB) from gs://{obj.cloud.settings.bucket}/{name}")
    if open_browser:
        import webbrowser

        webbrowser.open(output.resolve().as_uri())
