"""`tollgate`: drop data, follow runs and see what serves, on the local cloud or a real project.

The CLI talks to storage, Firestore and Cloud Run through the same clients as the pipeline.
It targets the local cloud when one is running (``.tollgate/state.json``, or ``$TOLLGATE_HOME``),
otherwise (or with ``TOLLGATE_TARGET=gcp``) the project in ``GOOGLE_CLOUD_PROJECT`` with the
bucket in ``TOLLGATE_BUCKET``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from tollgate.settings import Settings, SettingsError

console = Console(stderr=True)
out = Console()

# Progress words per run status, in chain order.
STAGES = {
    "received": "received, starting the validator", "validating": "validating the batch",
    "validated": "valid, starting the trainer", "training": "training a challenger",
    "trained": "trained, starting the evaluator", "evaluating": "scoring challenger and champion",
    "evaluated": "evaluated, deciding", "decided": "decided", "rejected": "rejected", "failed": "failed",
}


def _home() -> Path:
    if os.environ.get("TOLLGATE_HOME"):
        return Path(os.environ["TOLLGATE_HOME"])
    from tollgate.topology import ROOT

    local = Path.cwd() / ".tollgate"
    return local if local.exists() else ROOT / ".tollgate"


def _local_cloud(echo: bool = True):  # type: ignore[no-untyped-def]
    from localcloud.cloud import LocalCloud

    return LocalCloud(_home(), echo=(lambda m: console.print(m)) if echo else (lambda m: None))


class Ctx:
    """Settings and clients for the target: the running local cloud, or the environment's project."""

    def __init__(self) -> None:
        self._cloud = None
        self._state = None

    def settings(self) -> Settings:
        local = _local_cloud(echo=False)
        if os.environ.get("TOLLGATE_TARGET") != "gcp" and local.running():
            local.attach()
            os.environ.update(local.env())
        try:
            return Settings.from_env()
        except SettingsError as exc:
            raise click.ClickException(f"no local cloud is running (start one with `make up`) and {exc}") from exc

    @property
    def cloud(self):  # type: ignore[no-untyped-def]
        if self._cloud is None:
            from tollgate.cloud import Cloud

            self._cloud = Cloud(self.settings())
        return self._cloud

    @property
    def state(self):  # type: ignore[no-untyped-def]
        if self._state is None:
            from tollgate.cloud.state import State

            self._state = State(self.cloud.firestore)
        return self._state


def _dump(payload: Any) -> None:
    """JSON on stdout: highlighted on a terminal, plain (and parseable) when piped."""
    text = orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2).decode()
    if out.is_terminal:
        out.print_json(text)
    else:
        sys.stdout.write(text + "\n")


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def held_out_score(run: dict[str, Any] | None) -> tuple[str | None, float | None]:
    """(primary metric, the challenger's score on its run's held-out rows), as the evaluator recorded them."""
    ev = (run or {}).get("evaluation") or {}
    metric = ev.get("metric")
    return metric, ((ev.get("challenger") or {}).get("metrics") or {}).get(metric)


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run record as `drop --json` and `run show --json` print it."""
    ev = run.get("evaluation") or {}
    metric, challenger_score = held_out_score(run)
    return {
        "run_id": run["run_id"], "dataset": run.get("dataset"), "status": run.get("status"),
        "decision": run.get("decision"), "reason": run.get("reason"), "message": run.get("message"),
        "model_version": run.get("model_version"), "challenger_version": run.get("challenger_version"),
        "champion_version": run.get("evaluated_against"),
        "challenger_metric": challenger_score,
        "champion_metric": (((ev.get("champion") or {}).get("metrics") or {}).get(metric)
                            if ev.get("champion") else None),
        "metric": metric, "difference": ev.get("difference"),
        "rows_in": (run.get("validation") or {}).get("rows_in"),
        "rows_out": (run.get("validation") or {}).get("rows_out"),
        "drift": (run.get("drift") or {}).get("verdict"),
        "source": run.get("source"), "quarantine": run.get("quarantine"), "error": run.get("error"),
        "deployment": run.get("deployment"), "review": run.get("review"), "decided_by": run.get("decided_by"),
        "recoveries": run.get("recoveries") or [],
        "created_at": run.get("created_at"), "updated_at": run.get("updated_at"),
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tollgate: drop data in a bucket, get a better model served, with a record of why."""
    from tollgate import log

    log.configure(stream=sys.stderr, min_severity="WARNING")   # stdout is for the command's own output
    ctx.obj = Ctx()


# -- local cloud -----------------------------------------------------------------------------
@main.command()
def up() -> None:
    """Start the local cloud (idempotent) and print its URLs and settings."""
    from localcloud.cloud import LocalCloudError

    local = _local_cloud()
    try:
        local.up()
    except LocalCloudError as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title="Tollgate local cloud", show_header=False)
    for name, url in local.urls().items():
        table.add_row(name, url)
    table.add_row("bucket", f"gs://{local.bucket}")
    out.print(table)
    out.print("Point Google's client libraries at it:  [bold]eval $(.venv/bin/tollgate env)[/]", highlight=False)
    out.print("Drop a file with Google's own CLI (or: eval $(.venv/bin/tollgate env --gcloud)):", highlight=False)
    settings = " ".join(f"{k}={v}" for k, v in local.gcloud_env().items())
    out.print(f"  {settings} gcloud storage cp FILE gs://{local.bucket}/incoming/DATASET/",
              soft_wrap=True, highlight=False)
    out.print("Stop:  [bold]make down[/]   (data is kept; `make clean` wipes it)")


@main.command()
@click.option("--wipe", is_flag=True, help="Also delete the local cloud's data (.tollgate/).")
def down(wipe: bool) -> None:
    """Stop the local cloud; keeps runs, models and the serving version unless --wipe."""
    local = _local_cloud()
    if not local.state_file.exists():
        console.print("no local cloud state here; nothing to stop")
        return
    local.down(wipe=wipe)
    console.print("local cloud stopped" + (" and wiped" if wipe else "; data kept in " + str(local.home)))


@main.command()
@click.option("--gcloud", "for_gcloud", is_flag=True, help="Settings for Google's gcloud CLI instead.")
def env(for_gcloud: bool) -> None:
    """Print `export` lines that point clients at the running local cloud."""
    local = _local_cloud(echo=False)
    if not local.running():
        raise click.ClickException("no local cloud is running; start it with `make up`")
    local.attach()
    for key, value in (local.gcloud_env() if for_gcloud else local.env()).items():
        out.print(f"export {key}={value}", soft_wrap=True, highlight=False)


# -- specs -----------------------------------------------------------------------------------
@main.group()
def spec() -> None:
    """Dataset specs (uploaded to gs://BUCKET/specs/<name>.yaml)."""


@spec.command("push")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def spec_push(obj: Ctx, path: Path) -> None:
    """Check a dataset spec and upload it; files dropped for its dataset use it from then on."""
    from tollgate import spec as specs

    try:
        parsed = specs.load(path)
    except specs.SpecError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    blob = obj.cloud.bucket.blob(f"specs/{parsed.name}.yaml")
    blob.upload_from_filename(str(path), content_type="application/yaml")
    console.print(f"spec {parsed.name} uploaded to gs://{obj.cloud.settings.bucket}/specs/{parsed.name}.yaml")


# -- drop + runs -----------------------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="The dataset the file belongs to (its spec's name).")
@click.option("--name", help="Object name under incoming/DATASET/ (default: the file's name).")
@click.option("--wait", is_flag=True, help="Follow the run until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def drop(obj: Ctx, path: Path, dataset: str, name: str | None, wait: bool, as_json: bool, timeout: int) -> None:
    """Upload a data file to gs://BUCKET/incoming/DATASET/, which starts a run.

    With --wait, exits 0 when the run reached a decision and 1 when it was rejected or failed
    (or its promotion could not be deployed).
    """
    from tollgate import spec as specs
    from tollgate.events import run_id as derive_run_id

    try:
        specs.check_dataset_name(dataset)
    except specs.SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--dataset") from None
    object_name = f"incoming/{dataset}/{name or path.name}"
    blob = obj.cloud.upload_file(path, object_name)
    run_id = derive_run_id(obj.cloud.settings.bucket, object_name, blob.generation)
    console.print(f"dropped {path} → gs://{obj.cloud.settings.bucket}/{object_name} (generation "
                  f"{blob.generation}); run {run_id}")
    if not wait:
        if as_json:
            _dump({"run_id": run_id, "status": "dropped", "object": object_name, "generation": blob.generation})
        return
    run = wait_for_run(obj, run_id, timeout)
    summary = run_summary(run)
    if as_json:
        _dump(summary)
    else:
        _print_run(run)
    deployed = (run.get("deployment") or {}).get("status") != "failed"
    sys.exit(0 if run.get("status") == "decided" and deployed else 1)


def wait_for_run(obj: Ctx, run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the run until it ends, showing its stage; notices a job whose execution failed."""
    from tollgate.cloud import run as cloudrun
    from tollgate.cloud.state import TERMINAL

    deadline = time.monotonic() + timeout
    last = None
    with console.status("waiting for the notification…") as status:
        while time.monotonic() < deadline:
            run = obj.state.get_run(run_id)
            if run is not None:
                if run["status"] != last:
                    last = run["status"]
                    status.update(f"run {run_id}: {STAGES.get(last, last)}")
                    console.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {STAGES.get(last, last)}", highlight=False)
                if run["status"] in TERMINAL and (run["status"] != "decided" or _deployed(run)):
                    return run
                failed = _failed_execution(obj, run, cloudrun)
                if failed:
                    return {**run, "status": "failed", "error": {"stage": failed, "message":
                            f"the {failed} job's execution failed; see its logs"}}
            time.sleep(0.5)
    raise click.ClickException(f"run {run_id} did not finish within {timeout}s (status: {last}); "
                               f"follow it with `tollgate run show {run_id}`")


def _deployed(run: dict[str, Any]) -> bool:
    return run.get("decision") != "promote" or (run.get("deployment") or {}).get("status") in ("done", "failed")


def _failed_execution(obj: Ctx, run: dict[str, Any], cloudrun: Any) -> str | None:
    """The job of the run's current stage, if its execution ended in failure without updating the run."""
    job = {"validating": "validator", "training": "trainer", "evaluating": "evaluator"}.get(run["status"])
    execution = (run.get("executions") or {}).get(job) if job else None
    if not execution:
        return None
    try:
        state = cloudrun.execution_state(obj.cloud, execution)
    except Exception:  # the execution is unknown (e.g. the local cloud restarted): keep waiting
        return None
    if state == "failed":
        fresh = obj.state.get_run(run["run_id"]) or run
        return job if fresh["status"] == run["status"] else None
    return None


def _print_run(run: dict[str, Any]) -> None:
    s = run_summary(run)
    table = Table(show_header=False, title=f"run {s['run_id']}")
    for key in ("dataset", "status", "decision", "reason", "message", "model_version", "challenger_version",
                "champion_version", "metric", "challenger_metric", "champion_metric", "rows_in", "rows_out",
                "drift", "quarantine"):
        if s.get(key) is not None:
            value = s[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    review = s.get("review") or {}
    if review:
        table.add_row("review", f"{review['status']}" + (f" by {review['reviewer']}: {review.get('reason')}"
                                                         if review.get("reviewer") else
                                                         f" (expires {_when(review.get('expires_at'))} UTC; "
                                                         f"tollgate review show {s['run_id']})"))
    diff = s.get("difference")
    if diff:
        table.add_row("improvement", f"{diff['improvement']:+.4f}  [{diff['low']:+.4f}, {diff['high']:+.4f}] "
                                     f"({diff['confidence']:.0%} paired bootstrap)")
    deployment = s.get("deployment") or {}
    if deployment.get("status") not in (None, "none"):
        traffic = ", ".join(f"v{t['version']} {t['percent']}%" for t in deployment.get("traffic") or [])
        table.add_row("deployment", deployment["status"] + (f" ({traffic})" if traffic else "")
                      + (f": {deployment['error']} (the decider retries it)"
                         if deployment.get("error") and deployment["status"] == "failed" else ""))
    if s.get("error"):
        table.add_row("error", f"{s['error'].get('stage')}: {s['error'].get('message')}"
                      + (f" (execution {s['error']['execution'].rsplit('/', 1)[-1]})"
                         if s["error"].get("execution") else ""))
    for r in s.get("recoveries") or []:
        what = f"the {r['job']} step" if r.get("job") else f"the run waiting in {r.get('waiting')}"
        table.add_row("recovered", f"{_when(r.get('at'))} UTC by the {r.get('by', 'reconciler')}: {r.get('action')} "
                                   f"{what}, because {r.get('why')}")
    source = s.get("source") or {}
    if source.get("kind") == "retrain":
        table.add_row("source", f"retraining requested by the {source.get('requested_by')}: {source.get('reason')}")
    elif source:
        table.add_row("source", f"gs://{source['bucket']}/{source['object']}#{source['generation']}")
    out.print(table)
    validation = run.get("validation") or {}
    if validation.get("checks"):
        failed = Table(title="checks that found something")
        for col in ("check", "action", "rows", "message", "examples"):
            failed.add_column(col, overflow="fold")
        for c in validation["checks"]:
            failed.add_row(c["name"], c["action"], str(c["failed_rows"]), c["message"],
                           "\n".join(_example(e) for e in c.get("examples") or []))
        out.print(failed)
    drift = validation.get("drift") or {}
    if drift.get("features"):
        table = Table(title=f"drift: {drift['verdict']} (FDR {drift.get('fdr')}; {drift.get('message', '')})")
        for col in ("feature", "test", "statistic", "p", "q", "distance", "score", "status"):
            table.add_column(col, justify="right" if col in ("statistic", "p", "q", "score") else "left")
        colour = {"none": "green", "warn": "yellow", "severe": "red"}
        for f in drift["features"]:
            new = f" (+{len(f['new_categories'])} new)" if f.get("new_categories") else ""
            table.add_row(f["feature"], f["test"], f"{f['statistic']:.4g}", f"{f['p_value']:.2g}",
                          f"{f['q_value']:.2g}", f["distance"], f"{f['score']:.4f}",
                          f"[{colour.get(f['status'], 'white')}]{f['status']}[/]{new}")
        out.print(table)
    elif drift.get("message"):
        out.print(f"drift: {drift['verdict']} ({drift['message']})")
    if validation:
        out.print(f"full report: tollgate report {run['run_id']}"
                  + (f"  (evaluation: tollgate report {run['run_id']} --kind evaluation)"
                     if run.get("evaluation") else ""))


def _example(example: dict[str, Any]) -> str:
    """``row=N`` first (Firestore does not keep key order), then the values."""
    return ", ".join(f"{k}={example[k]}" for k in sorted(example, key=lambda k: k != "row"))


@main.command("runs")
@click.option("--dataset", help="Only this dataset's runs.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def runs_cmd(obj: Ctx, dataset: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    runs = obj.state.list_runs(limit=limit, dataset=dataset)
    if as_json:
        _dump([run_summary(r) for r in runs])
        return
    table = Table(title="runs")
    for col in ("run", "dataset", "created", "status", "decision", "challenger", "champion", "serving"):
        table.add_column(col)
    for r in runs:
        s = run_summary(r)
        fmt = (lambda v: f"{v:.4f}" if isinstance(v, float) else "")
        table.add_row(s["run_id"], s["dataset"] or "", _when(s["created_at"]), s["status"] or "",
                      s["decision"] or "", fmt(s["challenger_metric"]), fmt(s["champion_metric"]),
                      str(s["model_version"] or ""))
    out.print(table)


@main.group("run")
def run_group() -> None:
    """One run."""


def _existing_run(obj: Ctx, run_id: str) -> dict[str, Any]:
    run = obj.state.get_run(run_id)
    if run is None:
        raise click.ClickException(f"no run {run_id}; list runs with `tollgate runs`")
    return run


@run_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", is_flag=True, help="Follow the run until it ends first (exit 1 if it was rejected or failed).")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def run_show(obj: Ctx, run_id: str, as_json: bool, wait: bool, timeout: int) -> None:
    """Show a run: status, decision, metrics, failed checks."""
    run = _existing_run(obj, run_id)
    if wait:
        run = wait_for_run(obj, run_id, timeout)
    if as_json:
        _dump({**run_summary(run), "validation": run.get("validation"), "evaluation": run.get("evaluation"),
               "history": run.get("history"), "executions": run.get("executions")})
    else:
        _print_run(run)
    if wait and run.get("status") != "decided":
        sys.exit(1)


@main.command("report")
@click.argument("run_id")
@click.option("--kind", type=click.Choice(["validation", "evaluation"]), default="validation",
              show_default=True, help="Which of the run's reports.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML (default: ./<run_id>-<kind>.html).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
@click.pass_obj
def report_cmd(obj: Ctx, run_id: str, kind: str, output: Path | None, open_browser: bool) -> None:
    """Write a run's HTML report (reports/<run_id>/<kind>.html in the bucket) to a local file."""
    from google.api_core.exceptions import NotFound

    _existing_run(obj, run_id)
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


@main.command("models")
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_cmd(obj: Ctx, dataset: str, as_json: bool) -> None:
    """List a dataset's model versions: stage, held-out and cross-validated metric, lineage summary."""
    from tollgate import stages

    ds = obj.state.get_dataset(dataset)
    versions = obj.state.list_versions(dataset)
    if not versions:
        raise click.ClickException(f"dataset {dataset!r} has no registered models")
    rows = []
    for v in versions:
        run = obj.state.get_run(v["run_id"])
        metric, value = held_out_score(run)
        rows.append({"version": v["version"], "stage": stages.stage_of(v["version"], ds, run), "run_id": v["run_id"],
                     "metric": metric, "value": value, "cv": (v.get("metrics") or {}).get("cv"),
                     "estimator": v.get("estimator"), "train_rows": v.get("train_rows"),
                     "batches": len(v.get("training_window") or []), "sha256": v.get("sha256"),
                     "registered_at": v.get("registered_at"), "code_version": v.get("code_version")})
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"models of {dataset}")
    for col in ("version", "stage", "held-out", "cross-validated", "estimator", "train rows", "batches", "run",
                "registered"):
        table.add_column(col)
    for r in rows:
        value = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else ""
        cv = f"{r['cv']['score']:.4f} ± {r['cv']['std']:.4f}" if r["cv"] else ""
        table.add_row(str(r["version"]), r["stage"], value, cv, r["estimator"] or "", str(r["train_rows"]),
                      str(r["batches"]), r["run_id"], _when(r["registered_at"]))
    out.print(table)


@main.group("model")
def model_group() -> None:
    """One model version."""


@model_group.command("show")
@click.argument("dataset")
@click.argument("version", type=int)
@click.pass_obj
def model_show(obj: Ctx, dataset: str, version: int) -> None:
    """The whole registry record of a version (lineage, params, libraries, artifact and hash), as JSON."""
    record = obj.state.get_version(dataset, version)
    if record is None:
        raise click.ClickException(f"{dataset} has no version {version}; list them with `tollgate models {dataset}`")
    record.pop("spec", None)
    from tollgate import stages

    run = obj.state.get_run(record["run_id"])
    _dump({**record, "stage": stages.stage_of(version, obj.state.get_dataset(dataset), run)})


def _parse_time(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO time such as 2026-11-22T14:30:00Z "
                                 "(no zone means UTC)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _serving_text(serving: dict[str, Any] | None) -> str:
    if not serving or serving.get("version") is None:
        return "nothing"
    canary = serving.get("canary")
    if canary:
        return f"v{serving['version']} {100 - canary['percent']}% + canary v{canary['version']} {canary['percent']}%"
    return f"v{serving['version']}"


@main.command("history")
@click.argument("dataset")
@click.option("--at", "at_time", help="Answer what served at this time (ISO 8601, UTC unless a zone is given) "
                                      "and why; the ledger is shown up to then.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_cmd(obj: Ctx, dataset: str, at_time: str | None, as_json: bool) -> None:
    """The decision ledger of a dataset, oldest first: every decision, review outcome, canary move and
    rollback, with its actor, what served after it, and why."""
    from tollgate import promotion

    when = _parse_time(at_time) if at_time else None
    entries = obj.state.ledger(dataset)
    if when is not None:
        entries = [e for e in entries if e["at"] <= when]
    rows = [{"at": e.get("at"), "ledger_id": e.get("ledger_id"), "kind": e.get("kind", "decision"),
             "event": e.get("event", e.get("verdict")), "verdict": e.get("verdict"), "run_id": e.get("run_id"),
             "actor": e.get("actor"), "challenger_version": e.get("challenger_version"),
             "champion_before": e.get("champion_before"), "serving_after": e.get("serving_after"),
             "reason": e.get("reason")} for e in entries]
    answer = promotion.serving_at(entries, when) if when is not None else None
    if as_json:
        _dump({"at": when, "serving": answer, "entries": rows} if when is not None else rows)
        return
    if not rows and not obj.state.get_dataset(dataset):
        raise click.ClickException(f"dataset {dataset!r} has no decisions; `tollgate status` lists datasets")
    table = Table(title=f"ledger of {dataset}" + (f" up to {_when(when)} UTC" if when else ""))
    for col in ("time (UTC)", "event", "actor", "run", "challenger", "serving after", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(_when(r["at"]), r["event"] or "", r["actor"] or "", r["run_id"] or "",
                      str(r["challenger_version"] or ""), _serving_text(r["serving_after"]), r["reason"] or "")
    out.print(table)
    if when is not None:
        if answer is None:
            out.print(f"At {_when(when)} UTC nothing served {dataset} yet.")
        else:
            since = answer["since"] or {}
            out.print(f"At {_when(when)} UTC {dataset} was served by [bold]{_serving_text(answer['serving'])}[/]"
                      + (f", since {_when(since.get('at'))} ({since.get('event')} by {since.get('actor')}"
                         f"{', run ' + since['run_id'] if since.get('run_id') else ''}): {since.get('reason')}"
                         if since else ""), highlight=False)
            canary = answer.get("canary_since")
            if canary:
                out.print(f"The canary v{canary['challenger_version']} was there since {_when(canary['at'])} "
                          f"({canary['event']} by {canary['actor']}): {canary['reason']}", highlight=False)


# -- reviews, canaries, rollback -------------------------------------------------------------
def _actor(given: str | None) -> str:
    import getpass

    return given or os.environ.get("TOLLGATE_ACTOR") or getpass.getuser()


class ReviewClient:
    """The CLI speaks to the review function over HTTP, as a browser or a bot would."""

    def __init__(self, obj: Ctx) -> None:
        obj.settings()   # the local cloud's env names the function's URL and token
        self.url = os.environ.get("TOLLGATE_REVIEW_URL")
        if not self.url:
            raise click.ClickException("the review function's URL is unknown: set TOLLGATE_REVIEW_URL "
                                       "(terraform output review_url), or start the local cloud with `make up`")
        self.url = self.url.rstrip("/")

    def _token(self) -> str:
        if os.environ.get("TOLLGATE_REVIEW_TOKEN"):
            return os.environ["TOLLGATE_REVIEW_TOKEN"]
        try:   # GCP: an identity token for the function's URL (Cloud Run IAM checks it)
            import google.auth.transport.requests
            from google.oauth2 import id_token

            return id_token.fetch_id_token(google.auth.transport.requests.Request(), self.url)
        except Exception:
            import subprocess

            try:
                done = subprocess.run(["gcloud", "auth", "print-identity-token"], capture_output=True, text=True)
            except FileNotFoundError:
                raise click.ClickException(f"no identity token for {self.url}: install the gcloud CLI and run "
                                           "`gcloud auth login`, or use a service account's credentials") from None
            if done.returncode != 0:
                raise click.ClickException(f"no identity token for {self.url}: {done.stderr.strip()}") from None
            return done.stdout.strip()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = requests.request(method, f"{self.url}{path}", timeout=330,
                                        headers={"Authorization": f"Bearer {self._token()}"}, **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(f"the review function at {self.url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError):
                message = response.text[:500]
            raise click.ClickException(f"{response.status_code}: {message}")
        return response.json()


@main.group("review")
def review_group() -> None:
    """Human review of decisions the policy would not take alone (through the `review` function)."""


@review_group.command("list")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "approved", "rejected", "expired", "stale", "all"]))
@click.option("--dataset")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def review_list(obj: Ctx, status: str, dataset: str | None, as_json: bool) -> None:
    """Reviews, newest first (pending ones by default)."""
    params = {"status": status, **({"dataset": dataset} if dataset else {})}
    reviews = ReviewClient(obj).call("GET", "/reviews", params=params)["reviews"]
    if as_json:
        _dump(reviews)
        return
    table = Table(title=f"reviews ({status})")
    for col in ("run", "dataset", "challenger", "requested (UTC)", "expires (UTC)", "status", "why"):
        table.add_column(col, overflow="fold")
    for r in reviews:
        table.add_row(r["run_id"], r["dataset"], f"v{r['challenger_version']}", _when(r["requested_at"]),
                      _when(r["expires_at"]), r["status"], r.get("reason") or "")
    out.print(table)
    if not reviews:
        out.print("no reviews" + (" waiting" if status == "pending" else ""))


@review_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def review_show(obj: Ctx, run_id: str, as_json: bool) -> None:
    """One review with its evidence: scores with the interval of the gain, drift, checks, reports."""
    review = ReviewClient(obj).call("GET", f"/reviews/{run_id}")
    if as_json:
        _dump(review)
        return
    ev = review["evidence"]
    table = Table(show_header=False, title=f"review of run {run_id} ({review['dataset']})")
    table.add_row("status", review["status"] + (f" by {review['reviewer']}: {review.get('resolution')}"
                                                if review.get("reviewer") else ""))
    table.add_row("why a person", review.get("reason") or "")
    table.add_row("expires (UTC)", _when(review["expires_at"]))
    metric = ev.get("metric")
    if metric:
        champion = (ev.get("champion") or {}).get(metric)
        table.add_row(f"challenger v{review['challenger_version']}", f"{metric}={ev['challenger'].get(metric):.4f}")
        table.add_row(f"champion v{review.get('evaluated_against')}",
                      f"{metric}={champion:.4f}" if champion is not None else "none yet")
        diff = ev.get("difference")
        if diff:
            table.add_row("improvement", f"{diff['improvement']:+.4f}  [{diff['low']:+.4f}, {diff['high']:+.4f}] "
                                         f"({diff['confidence']:.0%} paired bootstrap, {ev['holdout_rows']} rows)")
        table.add_row("policy", ", ".join(f"{k}={v}" for k, v in (ev.get("thresholds") or {}).items()))
    cv = (ev.get("challenger_model") or {}).get("cv")
    if cv:
        table.add_row("cross-validated", f"{cv['score']:.4f} ± {cv['std']:.4f}")
    drift = ev.get("drift") or {}
    table.add_row("drift", f"{drift.get('verdict')}: " + ", ".join(
        f"{f['feature']} ({f['distance']}={f['score']:.3f}, {f['status']})" for f in drift.get("drifted") or [])
        or str(drift.get("message") or ""))
    table.add_row("rows", f"{ev['rows']['out']} used of {ev['rows']['in']}")
    for c in ev.get("checks") or []:
        table.add_row(f"check {c['name']}", f"{c['action']} {c['failed_rows']} rows: {c['message']}")
    for kind, report in ev["reports"].items():
        table.add_row(f"{kind} report", f"{report['cli']}\n{report['gs']}")
    out.print(table)
    if review["status"] == "pending":
        out.print(f"decide: tollgate review approve {run_id} --reason '...'   |   "
                  f"tollgate review reject {run_id} --reason '...'", highlight=False)


def _review_action(obj: Ctx, action: str, run_id: str, reviewer: str | None, reason: str, as_json: bool) -> None:
    with console.status(f"{action} run {run_id}…"):
        result = ReviewClient(obj).call("POST", f"/reviews/{run_id}/{action}",
                                        json={"reviewer": _actor(reviewer), "reason": reason})
    if as_json:
        _dump(result)
        return
    out.print(f"review of run {run_id}: [bold]{result['outcome']}[/]; {result['review']['dataset']} now serves "
              f"{_serving_text(result['serving'])}")


def _review_decision(action: str, doc: str) -> None:
    """`tollgate review approve|reject RUN_ID --reason ...`: the same options, one action each."""

    @review_group.command(action, help=doc)
    @click.argument("run_id")
    @click.option("--reason", required=True, help="Why; recorded in the decision ledger.")
    @click.option("--reviewer", help="Who (default: $TOLLGATE_ACTOR or your login).")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Ctx, run_id: str, reason: str, reviewer: str | None, as_json: bool) -> None:
        _review_action(obj, action, run_id, reviewer, reason, as_json)


_review_decision("approve", "Approve: the challenger is promoted through the same path as an automatic promotion.")
_review_decision("reject", "Reject: the champion stays, and the batch stays out of later training windows.")


def _move(obj: Ctx, dataset: str, action: str, actor: str | None, reason: str, version: int | None,
          as_json: bool) -> None:
    from tollgate import promotion, stages

    try:
        with console.status(f"{action} {dataset}: moving traffic…"):
            result = promotion.move(obj.cloud, obj.state, dataset, action, _actor(actor), reason, version)
    except stages.MoveError as exc:
        raise click.ClickException(f"{dataset}: {exc}") from exc
    except promotion.DeploymentFailed as exc:
        raise click.ClickException(f"{exc}\nFirestore already says what should serve; run the same command "
                                   "again to finish the deployment.") from exc
    if as_json:
        _dump(result)
        return
    note = "" if result["outcome"] == "moved" else " (already so; traffic checked)"
    out.print(f"{dataset} now serves [bold]{_serving_text(result['serving'])}[/]{note}")


@main.command("canary")
@click.argument("action", type=click.Choice(["promote", "abort"]))
@click.argument("dataset")
@click.option("--reason", help="Why; recorded in the ledger (default: canary promoted / aborted).")
@click.option("--actor", help="Who (default: $TOLLGATE_ACTOR or your login).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def canary_cmd(obj: Ctx, action: str, dataset: str, reason: str | None, actor: str | None, as_json: bool) -> None:
    """End a canary (spec `deployment.canary_percent`): `promote` makes it the champion with 100% of
    requests; `abort` takes it to 0% and the champion serves everything again."""
    _move(obj, dataset, f"canary-{action}", actor, reason or f"canary {action.rstrip('e')}ed", None, as_json)


@main.command("rollback")
@click.argument("dataset")
@click.option("--to", "to_version", type=int, help="The version to serve (default: the previous champion).")
@click.option("--reason", default="manual rollback", show_default=True)
@click.option("--actor", help="Who (default: $TOLLGATE_ACTOR or your login).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rollback_cmd(obj: Ctx, dataset: str, to_version: int | None, reason: str, actor: str | None,
                 as_json: bool) -> None:
    """Serve an earlier version again, in one step: the Firestore pointer, the ledger and the traffic.

    Safe to repeat: right after a rollback, running it again finishes a deployment left half-done
    instead of going further back (name a version with --to for that)."""
    _move(obj, dataset, "rollback", actor, reason, to_version, as_json)


@main.command("reconcile")
@click.option("--grace", type=float, default=None, show_default="300, as scheduled",
              help="Seconds a run may wait, or a deployment stay pending, before it counts as stranded.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def reconcile_cmd(obj: Ctx, grace: float | None, as_json: bool) -> None:
    """One reconciler pass now (what the scheduled `reconcile-tick` runs every 5 minutes): publish outbox events,
    relaunch or fail runs whose job execution failed, vanished or outlived its timeout, re-deliver lost events,
    finish deployments left pending."""
    from tollgate import log, reconciler

    log.configure(stream=sys.stderr, min_severity="ERROR")   # what it repaired is printed below, once
    with console.status("comparing what Firestore says is in flight with what Cloud Run runs"):
        report = reconciler.run(obj.cloud, obj.state, grace=reconciler.GRACE if grace is None
                                else dt.timedelta(seconds=grace))
    if as_json:
        _dump(report)
        return
    out.print(f"outbox: {len(report['outbox'])} event(s) published" + (
        f" ({', '.join(report['outbox'])})" if report["outbox"] else ""))
    for r in report["runs"]:
        out.print(f"run {r['run_id']}: [bold]{r['action']}[/] ({r.get('job') or r.get('waiting')}): {r.get('why')}",
                  highlight=False)
    for d in report["deployments"]:
        out.print(f"dataset {d['dataset']}: [bold]{d['action']}[/]" + (f": {d['why']}" if d.get("why") else ""),
                  highlight=False)
    if not report["runs"] and not report["deployments"]:
        out.print("nothing stranded")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """What serves where: predictor URL per dataset, champions, recent runs."""
    from tollgate.cloud import run as cloudrun

    datasets = []
    for ds in obj.state.list_datasets():
        champion = ds.get("champion_version")
        record = obj.state.get_version(ds["name"], champion) if champion else None
        service = cloudrun.get_service(obj.cloud, ds["name"]) if champion else None
        metric, score = held_out_score(obj.state.get_run(record["run_id"]) if record else None)
        datasets.append({"dataset": ds["name"], "predictor_url": service.uri if service else None,
                         "champion": {"version": champion, "metric": metric, "value": score} if champion else None,
                         "serving": ds.get("serving"), "canary": ds.get("canary"),
                         "deployment": ds.get("deployment"),
                         "pending_reviews": len(obj.state.list_reviews("pending", ds["name"]))})
    runs = [run_summary(r) for r in obj.state.list_runs(limit=10)]
    predictor_url = next((d["predictor_url"] for d in datasets if d["predictor_url"]), None)
    payload = {"bucket": f"gs://{obj.cloud.settings.bucket}", "project": obj.cloud.settings.project,
               "predictor_url": predictor_url, "datasets": datasets, "recent_runs": runs}
    if as_json:
        _dump(payload)
        return
    out.print(f"project [bold]{payload['project']}[/]   bucket [bold]{payload['bucket']}[/]")
    table = Table(title="datasets")
    for col in ("dataset", "champion", "metric", "traffic", "deployment", "reviews", "predictor URL"):
        table.add_column(col)
    for d in datasets:
        c = d["champion"] or {}
        value = f"{c['metric']}={c['value']:.4f}" if c.get("value") is not None else ""
        canary = d["canary"]
        traffic = _serving_text({"version": c.get("version"), "canary": canary}) if c else ""
        deployment = d["deployment"] or {}
        table.add_row(d["dataset"], str(c.get("version") or "none"), value, traffic,
                      deployment.get("status", "") + (f": {deployment['error'][:80]}"
                                                      if deployment.get("error") else ""),
                      f"{d['pending_reviews']} pending" if d["pending_reviews"] else "", d["predictor_url"] or "")
    out.print(table)
    recent = Table(title="recent runs")
    for col in ("run", "dataset", "status", "decision", "serving"):
        recent.add_column(col)
    for r in runs:
        recent.add_row(r["run_id"], r["dataset"] or "", r["status"] or "", r["decision"] or "",
                       str(r["model_version"] or ""))
    out.print(recent)


if __name__ == "__main__":
    main()


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "" if value is None else pattern.format(value)


def _print_window(dataset: str, windows: list[dict[str, Any]]) -> None:
    latest = windows[-1]
    serving = latest.get("serving") or {}
    out.print(f"[bold]{dataset}[/]: window {latest['start'][:19]} → {latest['end'][:19]} UTC, "
              f"{latest['requests']} requests; serving {_serving_text(serving)}"
              + (f"; {latest['unmatched_labels']} labels matched no prediction of the label window"
                 if latest.get("unmatched_labels") else ""))
    table = Table(title="latest window")
    for col in ("version", "requests", "error rate", "p50 / p99 ms", "input drift", "prediction drift", "labels",
                "realised (interval)"):
        table.add_column(col)
    for version, v in (latest.get("versions") or {}).items():
        r = v.get("realised")
        lat = v.get("latency_ms") or {}
        table.add_row(f"v{version}", str(v["requests"]), _fmt(v.get("error_rate"), "{:.2%}"),
                      f"{_fmt(lat.get('p50'), '{:.1f}')} / {_fmt(lat.get('p99'), '{:.1f}')}",
                      (v.get("drift") or {}).get("verdict", ""), ((v.get("prediction_drift") or {}).get("status", "")),
                      str(v.get("labels", 0)),
                      f"{r['metric']}={r['value']:.4f} ({r['low']:.4f} to {r['high']:.4f})" if r else "")
    out.print(table)
    trend = Table(title=f"trend (last {len(windows)} windows)")
    for col in ("window end", "version", "requests", "p99 ms", "realised", "actions"):
        trend.add_column(col)
    for w in windows[-12:]:
        actions = w.get("actions") or {}
        said = [a["kind"] for a in actions.get("alerts") or []]
        if actions.get("retraining"):
            said.append(f"retrain {actions['retraining']}")
        if actions.get("canary"):
            said.append(f"canary {actions['canary']['verdict']}")
        for version, v in (w.get("versions") or {}).items():
            r = v.get("realised")
            trend.add_row(w["end"][:19], f"v{version}", str(v["requests"]),
                          _fmt((v.get("latency_ms") or {}).get("p99"), "{:.1f}"),
                          f"{r['value']:.4f}" if r else "", ", ".join(said))
            said = []
    out.print(trend)


@main.command("monitor")
@click.argument("target", metavar="DATASET|run")
@click.option("--dataset", "only", multiple=True, help="With `run`: only these datasets (default: all that serve).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With DATASET: write its monitoring report (HTML, plots over time) to this file.")
@click.pass_obj
def monitor_cmd(obj: Ctx, target: str, only: tuple[str, ...], as_json: bool, report_path: Path | None) -> None:
    """`tollgate monitor DATASET`: the latest window of live traffic per version and the trend.
    `tollgate monitor run`: one monitoring tick now (what each scheduled `monitor-tick` runs)."""
    if target == "run":
        from tollgate import log, monitor

        log.configure(stream=sys.stderr, min_severity="ERROR")   # the alerts are printed below, once
        with console.status("draining the prediction log and judging each serving dataset"):
            result = monitor.run(obj.cloud, obj.state, list(only) or None)
        if as_json:
            _dump(result)
            return
        d = result["drained"]
        out.print(f"stored {d['predictions']} predictions and {d['labels']} labels from {d['messages']} messages"
                  + (f" ({d['malformed']} malformed, skipped)" if d["malformed"] else ""))
        for name, w in result["datasets"].items():
            actions = w.get("actions") or {}
            said = [f"[red]alert[/] {a['kind']}: {a['message']}" for a in actions.get("alerts") or []]
            if actions.get("retraining"):
                said.append(f"retraining requested: run {actions['retraining']}")
            if actions.get("canary"):
                said.append(f"canary {actions['canary']['verdict']}: {actions['canary']['reason']}")
            out.print(f"[bold]{name}[/]: {w['requests']} requests in the window; "
                      + ("; ".join(said) if said else "nothing to act on"))
        if result["datasets"]:
            out.print("details: `tollgate monitor DATASET`; report: "
                      f"gs://{obj.cloud.settings.bucket}/reports/monitoring/<dataset>/latest.html")
        return
    windows = obj.state.windows(target)
    if not windows:
        raise click.ClickException(f"no monitoring windows for {target!r} yet: the monitor runs on each "
                                   "monitor-tick, or now with `tollgate monitor run`")
    if report_path is not None:
        from google.api_core.exceptions import NotFound

        name = f"reports/monitoring/{target}/latest.html"
        try:
            report_path.write_bytes(obj.cloud.read_bytes(name))
        except NotFound:
            raise click.ClickException(f"no report at gs://{obj.cloud.settings.bucket}/{name}; the monitor "
                                       "logs why it could not draw one") from None
        out.print(f"wrote {report_path} (from gs://{obj.cloud.settings.bucket}/{name})")
        return
    if as_json:
        _dump({"dataset": target, "latest": windows[-1], "windows": windows})
        return
    _print_window(target, windows)


@main.command("alerts")
@click.option("--dataset", help="Only this dataset's alerts.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def alerts_cmd(obj: Ctx, dataset: str | None, limit: int, as_json: bool) -> None:
    """Recent monitoring alerts (SLO breach, severe drift, decay), newest first."""
    alerts = obj.state.alerts(dataset, limit)
    if as_json:
        _dump(alerts)
        return
    if not alerts:
        out.print("no alerts")
        return
    table = Table(title="alerts")
    for col in ("at", "dataset", "version", "kind", "severity", "message"):
        table.add_column(col)
    for a in alerts:
        table.add_row(_when(a["at"]), a["dataset"], f"v{a['version']}", a["kind"], a["severity"], a["message"])
    out.print(table)
