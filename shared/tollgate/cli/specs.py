"""`tollgate spec check | infer | push`: writing a dataset spec, trying it on a file offline, and uploading it
(gs://BUCKET/specs/<name>.yaml)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, out
from tollgate.cli.target import Target


@main.group()
def spec() -> None:
    """Dataset specs: infer one from data, check it (offline), push it to the bucket."""


def _load(path: Path):
    from tollgate import spec as specs

    try:
        return specs.load(path)
    except specs.SpecError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


@spec.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A data file (CSV, gzip CSV or Parquet) to validate against the spec, as the pipeline would.")
@click.option("--train", is_flag=True, help="With --data: also train and evaluate the first model as the chain "
                                           "would (its trainer, evaluator and policy, offline) and print the "
                                           "decision.")
@click.option("--json", "as_json", is_flag=True, help="Print the spec's summary and the validation report as JSON.")
def spec_check(path: Path, data: Path | None, train: bool, as_json: bool) -> None:
    """Check a dataset spec offline, and with --data what the validator would do with a file; with --train too,
    what the whole chain would decide with it as the dataset's first batch.

    Needs no cloud. Exits 1 when the spec has problems (each named with its YAML path and line) or when the
    validator would reject the file; prints the rows kept and dropped by each check. With --train, exits 2 when
    the first model would go to a person (a review) rather than serve.
    """
    from tollgate import validation

    parsed = _load(path)
    summary = {"spec": parsed.name, "task": parsed.task, "target": parsed.target, "features": list(parsed.features),
               "estimator": parsed.model.estimator, "primary_metric": parsed.primary_metric,
               "threshold": parsed.policy.threshold, "extra_columns": parsed.extra_columns}
    if train and data is None:
        raise click.UsageError("--train needs --data FILE: the file the first model would train on")
    if train:
        _dry_run(parsed, data, as_json)
        return
    if data is None:
        memory = _memory_warning(parsed, None)
        if as_json:
            dump({**summary, "valid": True, "memory_warning": memory})
        else:
            console.print(f"[green]✓[/] {path}: spec {parsed.name} is valid ({parsed.task} of {parsed.target} from "
                          f"{len(parsed.features)} feature(s); {parsed.model.estimator}; {parsed.primary_metric} "
                          f"≥ {parsed.policy.threshold:g} to serve)")
            if memory:
                console.print(f"[yellow]![/] memory: {memory}")
        return
    with tempfile.TemporaryDirectory() as tmp, data.open("rb") as fh, console.status(f"validating {data}"):
        result = validation.validate_file(fh, parsed, Path(tmp) / "curated.parquet", size=data.stat().st_size)
    report = result.summary()
    memory = _memory_warning(parsed, result) if result.status == "valid" else None
    if as_json:
        dump({**summary, "valid": True, "validation": report, "memory_warning": memory})
    else:
        render.checks(report)   # the table and its verdict, both on stdout
        verdict = ("[green]valid[/]" if result.status == "valid" else f"[red]rejected[/] ({result.reason})")
        out.print(f"{data}: {verdict}: {result.message}")
        if result.status == "valid":
            held = int(round(result.rows_out * parsed.evaluation.holdout_fraction))
            out.print(f"  {result.rows_out} of {result.rows_in} rows would be curated; as a dataset's first "
                          f"batch, {result.rows_out - held} would train the model and {held} "
                          f"(evaluation.holdout_fraction {parsed.evaluation.holdout_fraction:g}) be held out to "
                          "evaluate it")
        if memory:
            out.print(f"[yellow]![/] memory: {memory}")
    sys.exit(0 if result.status == "valid" else 1)


def _dry_run(parsed, data: Path, as_json: bool) -> None:
    from tollgate import dryrun

    with console.status(f"validating, training and evaluating {data} as {parsed.name}'s first batch"):
        done = dryrun.first_batch(data, parsed)
    if as_json:
        dump({"spec": parsed.name, **done.summary(), "validation_report": done.validation.summary()})
    else:
        render.checks(done.validation.summary())
        if done.decision is None:
            out.print(f"{data}: [red]rejected[/] ({done.validation.reason}): {done.validation.message}")
        else:
            metrics = (done.evaluation or {}).get("challenger", {}).get("metrics") or {}
            scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            out.print(f"{data}: trained on {done.train_rows} rows, evaluated on {done.holdout_rows} held-out rows "
                      f"({scores}) in {done.seconds:.0f} s")
            render.importance(done.evaluation or {}, more="--json")
            colour = "green" if done.decision.verdict == "promote" else "yellow"
            out.print(f"decision: [{colour}]{done.decision.verdict}[/]: {done.decision.reason}")
    if done.decision is None:
        sys.exit(1)
    sys.exit(0 if done.decision.verdict == "promote" else 2)


def _memory_warning(parsed, result) -> str | None:
    """Whether the trainer's memory (topology.yaml) holds a training of this spec: at the file's rows and category
    counts with --data, otherwise at training.max_rows with every category as wide as it may be."""
    from tollgate import capacity
    from tollgate import topology as topo

    limit = topo.memory_bytes(topo.load().jobs["trainer"].memory)
    if result is None:
        rows, distinct = parsed.training.max_rows, None
        where = f"at training.max_rows {rows:,}"
    else:
        columns = (result.profile or {}).get("columns") or {}
        distinct = {n: len((columns.get(n) or {}).get("counts") or {}) or 1 for n in parsed.feature_lists.categorical}
        rows = min(result.rows_out, parsed.training.max_rows)
        where = f"for this file's {rows:,} rows (more batches make the window larger)"
    why = capacity.problem(parsed, rows, limit, distinct)
    return f"{where}: {why}" if why else None


@spec.command("infer")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="The column to predict.")
@click.option("--task", type=click.Choice(["classification", "regression"]),
              help="Default: classification for text, booleans and integers with few values; else regression.")
@click.option("--name", help="The dataset's name (default: from the file's name).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the spec here (default: stdout). An existing file is not overwritten.")
@click.option("--no-baseline", is_flag=True, help="Skip the cross-validated baseline (estimator and threshold).")
@click.option("--time-budget", type=float, default=60, show_default=True,
              help="Seconds the baseline may take; families it has no time for are listed in the spec.")
def spec_infer(data: Path, target: str, task: str | None, name: str | None, output: Path | None,
               no_baseline: bool, time_budget: float) -> None:
    """Write a commented spec inferred from a data file, as the file is: column types (datetimes and identifiers
    recognised), nullability, ranges with a margin, categories (an allowed list only when few and stable), and a
    time-bounded cross-validated baseline that suggests the estimator, metric and a threshold the first model can
    meet. Rows without a target count too: the validator drops them as unlabelled.

    Reads up to the first 200,000 rows. Review what it writes, then `tollgate spec check SPEC --data DATA`.
    """
    from tollgate import inference
    from tollgate import spec as specs

    if output is not None and output.exists():
        raise click.ClickException(f"{output} exists; choose another --output or remove it")
    given = name or data.name.split(".")[0]   # `My Data.csv.gz` → `My Data`
    chosen = given if specs.DATASET_NAME.fullmatch(given) else inference.dataset_name(given)
    if chosen != given:   # --name and the file's name are normalised the same way, and it is said
        console.print(f"dataset name {chosen!r}, from {given!r} ({specs.DATASET_NAME_RULE})")
    try:
        frame = inference.read_sample(str(data))
        with console.status(f"inferring a spec from {len(frame):,} rows of {data}") as status:
            def progress(message: str) -> None:
                status.update(f"{message}; --no-baseline skips this")
            text = inference.infer(frame, chosen, target, task, with_baseline=not no_baseline, source=data.name,
                                   seconds=time_budget, progress=progress)
    except (inference.InferError, specs.SpecError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(text)
        return
    output.write_text(text)
    console.print(f"spec written to {output}; next: tollgate spec check {output} --data {data}")


@spec.command("push")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def spec_push(obj: Target, path: Path) -> None:
    """Check a dataset spec and upload it; files dropped for its dataset use it from then on."""
    from tollgate import spec as specs

    parsed = _load(path)
    name = specs.object_name(parsed.name)
    obj.cloud.bucket.blob(name).upload_from_filename(str(path), content_type="application/yaml")
    console.print(f"spec {parsed.name} uploaded to gs://{obj.cloud.settings.bucket}/{name}")
