"""`tollgate monitor DATASET | monitor run | alerts`: live traffic, judged by the monitor job."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, json_option, out
from tollgate.cli.target import Target


@main.command("monitor")
@click.argument("target", metavar="DATASET|run")
@click.option("--dataset", "only", multiple=True, help="With `run`: only these datasets (default: all that serve).")
@json_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With DATASET: write its monitoring report (HTML, plots over time) to this file.")
@click.pass_obj
def monitor_cmd(obj: Target, target: str, only: tuple[str, ...], as_json: bool, report_path: Path | None) -> None:
    """`tollgate monitor DATASET`: the latest window of live traffic per version and the trend.
    `tollgate monitor run`: one monitoring tick now (what each scheduled `monitor-tick` runs)."""
    if target == "run":
        from tollgate import log
        from tollgate.jobs import monitor

        log.configure(stream=sys.stderr, min_severity="ERROR")   # the alerts are printed below, once
        with console.status("draining the prediction log and judging each serving dataset"):
            result = monitor.run(obj.cloud, obj.state, list(only) or None)
        if as_json:
            dump(result)
            return
        render.monitor_tick(result, obj.cloud.settings.bucket)
        return
    windows = obj.state.windows(target)
    if not windows:
        raise click.ClickException(f"no monitoring windows for {target!r} yet: the monitor runs on each "
                                   "monitor-tick, or now with `tollgate monitor run`")
    if report_path is not None:
        from tollgate.errors import NotFound

        name = f"reports/monitoring/{target}/latest.html"
        try:
            report_path.write_bytes(obj.cloud.read_bytes(name))
        except NotFound:
            raise click.ClickException(f"no report at gs://{obj.cloud.settings.bucket}/{name}; the monitor "
                                       "logs why it could not draw one") from None
        out.print(f"wrote {report_path} (from gs://{obj.cloud.settings.bucket}/{name})")
        return
    if as_json:
        dump({"dataset": target, "latest": windows[-1], "windows": windows})
        return
    render.windows(target, windows)


@main.command("alerts")
@click.option("--dataset", help="Only this dataset's alerts.")
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_obj
def alerts_cmd(obj: Target, dataset: str | None, limit: int, as_json: bool) -> None:
    """Recent monitoring alerts (SLO breach, severe drift, decay), newest first."""
    alerts = obj.state.alerts(dataset, limit)
    if as_json:
        dump(alerts)
        return
    render.alerts(alerts)
