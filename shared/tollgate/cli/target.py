"""Which cloud a command talks to: the running local cloud (``.tollgate/state.json``, or ``$TOLLGATE_HOME``), or
else (and with ``TOLLGATE_TARGET=gcp``) the project in ``GOOGLE_CLOUD_PROJECT`` with the bucket in
``TOLLGATE_BUCKET``; and the clients for it, made on first use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click

from tollgate.cloud import Adapters
from tollgate.settings import Settings, SettingsError


def home() -> Path:
    """The local cloud's folder: ``$TOLLGATE_HOME``, ``./.tollgate`` if it exists, or the repository's."""
    if os.environ.get("TOLLGATE_HOME"):
        return Path(os.environ["TOLLGATE_HOME"])
    from tollgate.topology import ROOT

    local = Path.cwd() / ".tollgate"
    return local if local.exists() else ROOT / ".tollgate"


def local_cloud(echo: Callable[[str], None] | None = None) -> Any:
    from localcloud.cloud import LocalCloud

    return LocalCloud(home(), echo=echo or (lambda m: None))


def identity_token(audience: str) -> str:
    """An identity token for a Cloud Run URL (Cloud Run IAM checks it): from the application default
    credentials of a service account, else from the gcloud CLI's logged-in user."""
    try:
        import google.auth.transport.requests
        from google.oauth2 import id_token

        return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except Exception:
        import subprocess

        try:
            done = subprocess.run(["gcloud", "auth", "print-identity-token"], capture_output=True, text=True)
        except FileNotFoundError:
            raise click.ClickException(f"no identity token for {audience}: install the gcloud CLI and run "
                                       "`gcloud auth login`, or use a service account's credentials") from None
        if done.returncode != 0:
            raise click.ClickException(f"no identity token for {audience}: {done.stderr.strip()}") from None
        return done.stdout.strip()


class Target(Adapters):
    """Settings and clients for the target: the running local cloud, or the environment's project."""

    def __init__(self) -> None:
        super().__init__()
        self.local = False   # set by settings(): the local cloud, whose services need no identity token

    def settings(self) -> Settings:
        local = local_cloud()
        if os.environ.get("TOLLGATE_TARGET") != "gcp" and local.running():
            local.attach()
            os.environ.update(local.env())
            self.local = True
        try:
            return Settings.from_env()
        except SettingsError as exc:
            raise click.ClickException(f"no local cloud is running (start one with `make up`) and {exc}") from exc

    def existing_run(self, run_id: str) -> dict[str, Any]:
        run = self.state.get_run(run_id)
        if run is None:
            raise click.ClickException(f"no run {run_id}; list runs with `tollgate runs`")
        return run
