"""The `tollgate` command group; each command module (local, specs, runs, models, decisions, monitoring,
operations) adds its commands to it."""

from __future__ import annotations

import sys

import click

from tollgate.cli.target import Target


class Group(click.Group):
    """The `tollgate` group: what the client refuses (``ClientError``) is an error message, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from tollgate.client import ClientError

        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tollgate", message="tollgate %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tollgate: drop data in a bucket, get a better model served, with a record of why."""
    from tollgate import log

    log.configure(stream=sys.stderr, min_severity="WARNING")   # stdout is for the command's own output
    ctx.obj = Target()
