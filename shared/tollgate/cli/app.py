"""The `tollgate` command group; each command module (local, specs, runs, models, decisions, monitoring,
operations) adds its commands to it."""

from __future__ import annotations

import sys

import click

from tollgate.cli.target import Target


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tollgate", message="tollgate %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tollgate: drop data in a bucket, get a better model served, with a record of why."""
    from tollgate import log

    log.configure(stream=sys.stderr, min_severity="WARNING")   # stdout is for the command's own output
    ctx.obj = Target()
