"""`tollgate status | reconcile`: what serves where, and repairing what a crash left in flight."""

from __future__ import annotations

import datetime as dt
import os
import sys

import click

from tollgate import views
from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, json_option
from tollgate.cli.target import Target


@main.command()
@json_option
@click.pass_obj
def status(obj: Target, as_json: bool) -> None:
    """What serves where: every dataset with a spec, its champion and predictor URL, pending reviews, recent runs."""
    datasets = obj.dataset_statuses()
    payload = views.status(obj.cloud.settings.project, obj.cloud.settings.bucket, datasets,
                           obj.state.list_runs(limit=10), os.environ.get("TOLLGATE_CONSOLE_URL"),
                           # the local cloud's own server only: a deployment's URL may carry credentials
                           os.environ.get("TOLLGATE_MLFLOW_URI") if obj.local else None)
    if as_json:
        dump(payload)
        return
    render.status(payload)


@main.command("console")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
@click.pass_obj
def console_cmd(obj: Target, open_browser: bool) -> None:
    """Print the URL of the web console (and open it): every dataset, run, review and monitoring window in a
    browser, with reviews and serving moves decided there. Locally it is part of `tollgate up`; on Google Cloud
    set TOLLGATE_CONSOLE_URL (behind Identity-Aware Proxy)."""
    obj.settings()   # the local cloud's env names the console
    url = os.environ.get("TOLLGATE_CONSOLE_URL")
    if not url:
        raise click.ClickException("the console's URL is unknown: start the local cloud with `make up`, or set "
                                   "TOLLGATE_CONSOLE_URL to the console's address on Google Cloud")
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@main.command("reconcile")
@click.option("--grace", type=float, default=None, show_default="300, as scheduled",
              help="Seconds a run may wait, or a deployment stay pending, before it counts as stranded.")
@json_option
@click.pass_obj
def reconcile_cmd(obj: Target, grace: float | None, as_json: bool) -> None:
    """One reconciler pass now (what the scheduled `reconcile-tick` runs every 5 minutes): publish outbox events,
    relaunch or fail runs whose job execution failed, vanished or outlived its timeout (at once when it was stopped
    over its memory limit), re-deliver lost events, finish deployments left pending, and sync the MLflow mirrors a
    failure left owed."""
    from tollgate import log, reconciler

    log.configure(stream=sys.stderr, min_severity="ERROR")   # what it repaired is printed below, once
    with console.status("comparing what Firestore says is in flight with what Cloud Run runs"):
        report = reconciler.run(obj.cloud, obj.state, grace=reconciler.GRACE if grace is None
                                else dt.timedelta(seconds=grace))
    if as_json:
        dump(report)
        return
    render.reconciled(report)
