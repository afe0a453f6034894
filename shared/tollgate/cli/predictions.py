"""`tollgate url | predict`: where a dataset's model answers, and its predictions for a file of rows."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from tollgate.cli.app import main
from tollgate.cli.output import console, dump
from tollgate.cli.target import Target, identity_token


def predictor_url(obj: Target, dataset: str) -> str:
    """The URL of ``dataset``'s predictor service, or a ClickException that says why there is none."""
    from tollgate import spec as specs
    from tollgate.cloud import run as cloudrun

    try:
        specs.check_dataset_name(dataset)
    except specs.SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="DATASET") from None
    service = cloudrun.get_service(obj.cloud, dataset)
    if service is None or not service.uri:
        raise click.ClickException(f"{dataset} has no predictor yet: its service starts with the dataset's first "
                                   f"promoted model (see `tollgate runs --dataset {dataset}`)")
    return service.uri.rstrip("/")


@main.command()
@click.argument("dataset")
@click.pass_obj
def url(obj: Target, dataset: str) -> None:
    """Print the URL of DATASET's predictor (POST /predict, GET /openapi.json)."""
    click.echo(predictor_url(obj, dataset))


def _rows(source: str, features: tuple[str, ...]) -> Any:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(sys.stdin.buffer.read()) if source == "-" else source)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise click.ClickException(f"{source}: not a readable CSV file: {exc}") from exc
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise click.ClickException(f"{source}: missing feature column(s) {', '.join(missing)}; the model takes "
                                   f"{', '.join(features)}")
    return frame


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
@click.pass_obj
def predict(obj: Target, dataset: str, source: str, output: Path | None, batch_size: int, as_json: bool) -> None:
    """Predict the rows of a CSV file (or `-`: standard input) with the model DATASET serves.

    Sends the spec's feature columns (others, such as the target, stay out) in batches to the dataset's predictor
    (with an identity token on GCP) and prints the rows with a `prediction` column, and for a classifier one
    `probability_<class>` column per class, as CSV.
    """
    import numpy as np
    import requests

    from tollgate import spec as specs

    url = predictor_url(obj, dataset)
    spec = specs.loads(obj.cloud.read_bytes(specs.object_name(dataset)).decode())
    frame = _rows(source, spec.features)
    headers = {} if obj.local else {"Authorization": f"Bearer {identity_token(url)}"}
    instances = frame[list(spec.features)].astype(object).where(frame[list(spec.features)].notna(), None)
    answer: dict[str, Any] = {"predictions": [], "probabilities": [], "classes": None, "model_version": set()}
    with console.status(f"predicting {len(frame)} row(s) with {url}") as status:
        for start in range(0, len(frame), batch_size):
            status.update(f"predicting rows {start + 1}–{min(start + batch_size, len(frame))} of {len(frame)}")
            body = {"instances": instances.iloc[start:start + batch_size].to_dict("records")}
            try:
                response = requests.post(f"{url}/predict", json=body, headers=headers, timeout=120)
            except requests.RequestException as exc:
                raise click.ClickException(f"the predictor at {url} did not answer: {exc}") from exc
            if response.status_code >= 400:
                try:
                    message = response.json().get("error") or response.text[:500]
                except ValueError:
                    message = response.text[:500]
                raise click.ClickException(f"rows {start + 1}–{start + len(body['instances'])}: "
                                           f"{response.status_code}: {message}")
            part = response.json()
            answer["predictions"] += part["predictions"]
            answer["probabilities"] += part.get("probabilities") or []
            answer["classes"] = part.get("classes")
            answer["model_version"].add(part.get("model_version"))
    versions = sorted(answer.pop("model_version"), key=str)
    answer["model_version"] = versions[0] if len(versions) == 1 else versions   # a canary answers some batches
    if as_json:
        dump(answer)
        return
    result = frame.copy()
    result["prediction"] = answer["predictions"]
    if answer["classes"] and answer["probabilities"]:
        probabilities = np.asarray(answer["probabilities"], dtype="float64")
        for k, name in enumerate(answer["classes"]):
            result[f"probability_{name}"] = probabilities[:, k]
    if output is not None:
        result.to_csv(output, index=False)
        console.print(f"{len(result)} prediction(s) of model v{answer['model_version']} written to {output}")
    else:
        result.to_csv(sys.stdout, index=False)
