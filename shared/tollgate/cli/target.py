"""Which cloud a command talks to: the client's (``tollgate.client.Client``: the running local cloud, or the
environment's project), whose refusals the CLI shows as errors."""

from __future__ import annotations

import click

from tollgate.client import Client, ClientError, home, local_cloud  # noqa: F401 -- the CLI's names for them
from tollgate.settings import Settings


class Target(Client):
    """The client the commands share (``ctx.obj``)."""

    def settings(self) -> Settings:
        try:
            return super().settings()
        except ClientError as exc:
            raise click.ClickException(str(exc)) from exc
