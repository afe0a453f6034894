"""`tollgate url | predict`: where a dataset's model answers, and its predictions for a file of rows."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from tollgate.cli.app import main
from tollgate.cli.output import console, dump
from tollgate.cli.target import Target


@main.command()
@click.argument("dataset")
@click.pass_obj
def url(obj: Target, dataset: str) -> None:
    """Print the URL of DATASET's predictor (POST /predict, GET /openapi.json)."""
    click.echo(obj.url(dataset))


def _rows(source: str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(sys.stdin.buffer.read()) if source == "-" else source)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise click.ClickException(f"{source}: not a readable CSV file: {exc}") from exc


@main.command()
@click.argument("dataset")
@click.argument("source", default="-", metavar="FILE|-")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV here instead of to stdout.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per request.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the predictor's answer as JSON (predictions, classes, probabilities, model_version) "
                   "instead of the rows as CSV.")
@click.option("--explain", is_flag=True,
              help="Also say why: one attribution_<feature> column per declared feature, attribution_baseline and "
                   "attribution_output (the attributions add up to output − baseline), from the predictor's "
                   "explanation route (100 rows a request).")
@click.pass_obj
def predict(obj: Target, dataset: str, source: str, output: Path | None, batch_size: int, as_json: bool,
            explain: bool) -> None:
    """Predict the rows of a CSV file (or `-`: standard input) with the model DATASET serves.

    Sends the spec's feature columns (others, such as the target, stay out) in batches to the dataset's predictor
    (with an identity token on GCP) and prints the rows with a `prediction` column, and for a classifier one
    `probability_<class>` column per class, as CSV.
    """
    from tollgate.client import with_predictions

    frame = _rows(source)
    with console.status(f"predicting {len(frame)} row(s)") as status:
        answer = obj.predict_answer(dataset, frame, batch_size, progress=lambda start, end, total: status.update(
            f"{'explaining' if explain else 'predicting'} rows {start + 1}–{end} of {total}"), explain=explain)
    if as_json:
        dump(answer)
        return
    result = with_predictions(frame, answer)
    if output is not None:
        result.to_csv(output, index=False)
        console.print(f"{len(result)} prediction(s) of model v{answer['model_version']} written to {output}")
    else:
        result.to_csv(sys.stdout, index=False)
