"""`tollgate spec push`: dataset specs (gs://BUCKET/specs/<name>.yaml)."""

from __future__ import annotations

from pathlib import Path

import click

from tollgate.cli.app import main
from tollgate.cli.output import console
from tollgate.cli.target import Target


@main.group()
def spec() -> None:
    """Dataset specs (uploaded to gs://BUCKET/specs/<name>.yaml)."""


@spec.command("push")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def spec_push(obj: Target, path: Path) -> None:
    """Check a dataset spec and upload it; files dropped for its dataset use it from then on."""
    from tollgate import spec as specs

    try:
        parsed = specs.load(path)
    except specs.SpecError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    name = specs.object_name(parsed.name)
    obj.cloud.bucket.blob(name).upload_from_filename(str(path), content_type="application/yaml")
    console.print(f"spec {parsed.name} uploaded to gs://{obj.cloud.settings.bucket}/{name}")
