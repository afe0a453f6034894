"""`tollgate up | down | env`: the local cloud."""

from __future__ import annotations

import click
from rich.table import Table

from tollgate.cli.app import main
from tollgate.cli.output import console, out
from tollgate.cli.target import local_cloud


@main.command()
@click.option("--mlflow", is_flag=True, help="Also run an MLflow tracking server (`make mlflow` installs it) that "
              "every dataset's runs, versions and serving aliases are mirrored into; kept on later `up`s.")
def up(mlflow: bool) -> None:
    """Start the local cloud (idempotent) and print its URLs and settings."""
    from localcloud.cloud import LocalCloudError

    local = local_cloud(echo=console.print)
    local.mlflow = mlflow
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
    local = local_cloud(echo=console.print)
    if not local.state_file.exists():
        console.print("no local cloud state here; nothing to stop")
        return
    local.down(wipe=wipe)
    console.print("local cloud stopped" + (" and wiped" if wipe else "; data kept in " + str(local.home)))


@main.command()
@click.option("--gcloud", "for_gcloud", is_flag=True, help="Settings for Google's gcloud CLI instead.")
def env(for_gcloud: bool) -> None:
    """Print `export` lines that point clients at the running local cloud."""
    local = local_cloud()
    if not local.running():
        raise click.ClickException("no local cloud is running; start it with `make up`")
    local.attach()
    for key, value in (local.gcloud_env() if for_gcloud else local.env()).items():
        out.print(f"export {key}={value}", soft_wrap=True, highlight=False)
