"""The CLI's client of the `review` HTTP function: it speaks to it as a browser or a bot would, with an ID token for
the function's URL that names the caller (signed by the local cloud locally; Google's on Google Cloud, which Cloud
Run IAM checks and the function verifies again)."""

from __future__ import annotations

import os
from typing import Any

import click

from tollgate.cli.target import Target
from tollgate.client import ClientError


class ReviewClient:
    def __init__(self, target: Target, reviewer: str | None = None) -> None:
        target.settings()   # the local cloud's env names the function's URL
        url = os.environ.get("TOLLGATE_REVIEW_URL")
        if not url:
            raise click.ClickException("the review function's URL is unknown: set TOLLGATE_REVIEW_URL "
                                       "(terraform output review_url), or start the local cloud with `make up`")
        self.url = url.rstrip("/")
        self.target, self.reviewer = target, reviewer

    def token(self) -> str:
        try:
            return self.target.id_token(self.url, self.reviewer)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from exc

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = requests.request(method, f"{self.url}{path}", timeout=330,
                                        headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(f"the review function at {self.url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError):
                message = response.text[:500]
            raise click.ClickException(f"{response.status_code}: {message}")
        return response.json()
