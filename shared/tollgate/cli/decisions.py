"""`tollgate review ... | canary | rollback`: decisions people take (reviews through the `review` function) and
serving moves (through the one promotion path)."""

from __future__ import annotations

import click

from tollgate import views
from tollgate.cli import render
from tollgate.cli.app import main
from tollgate.cli.output import console, dump, json_option, out
from tollgate.cli.review_client import ReviewClient
from tollgate.cli.target import Target


def actor(given: str | None) -> str:
    from tollgate.client import actor as login

    return given or login()


@main.group("review")
def review_group() -> None:
    """Human review of decisions the policy would not take alone (through the `review` function)."""


@review_group.command("list")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "approved", "rejected", "expired", "stale", "all"]))
@click.option("--dataset")
@json_option
@click.pass_obj
def review_list(obj: Target, status: str, dataset: str | None, as_json: bool) -> None:
    """Reviews, newest first (pending ones by default)."""
    params = {"status": status, **({"dataset": dataset} if dataset else {})}
    reviews = ReviewClient(obj).call("GET", "/reviews", params=params)["reviews"]
    if as_json:
        dump(reviews)
        return
    render.reviews(status, reviews)


@review_group.command("show")
@click.argument("run_id")
@json_option
@click.pass_obj
def review_show(obj: Target, run_id: str, as_json: bool) -> None:
    """One review with its evidence: scores with the interval of the gain, drift, checks, reports."""
    review = ReviewClient(obj).call("GET", f"/reviews/{run_id}")
    if as_json:
        dump(review)
        return
    render.review(run_id, review)


def _decide(obj: Target, action: str, run_id: str, reviewer: str | None, reason: str, as_json: bool) -> None:
    with console.status(f"{action} run {run_id}…"):
        result = ReviewClient(obj, reviewer).call("POST", f"/reviews/{run_id}/{action}", json={"reason": reason})
    if as_json:
        dump(result)
        return
    out.print(f"review of run {run_id}: [bold]{result['outcome']}[/]; {result['review']['dataset']} now serves "
              f"{views.serving_text(result['serving'])}")


def _review_decision(action: str, doc: str) -> None:
    """`tollgate review approve|reject RUN_ID --reason ...`: the same options, one action each."""

    @review_group.command(action, help=doc)
    @click.argument("run_id")
    @click.option("--reason", required=True, help="Why; recorded in the decision ledger.")
    @click.option("--reviewer", help="On the local cloud, who its token names (default: $TOLLGATE_ACTOR or your "
                                      "login); on Google Cloud your credentials say who you are.")
    @json_option
    @click.pass_obj
    def command(obj: Target, run_id: str, reason: str, reviewer: str | None, as_json: bool) -> None:
        _decide(obj, action, run_id, reviewer, reason, as_json)


@review_group.command("token")
@click.option("--as", "name", help="On the local cloud, who the token names (default: $TOLLGATE_ACTOR or your "
                                   "login).")
@click.pass_obj
def review_token(obj: Target, name: str | None) -> None:
    """Print an ID token for the review function (`Authorization: Bearer ...`): signed by the local cloud for you,
    or Google's on Google Cloud. The function records the reviewer the token names, verified."""
    client = ReviewClient(obj, name)
    click.echo(client.token())


_review_decision("approve", "Approve: the challenger is promoted through the same path as an automatic promotion.")
_review_decision("reject", "Reject: the champion stays, and the batch stays out of later training windows.")


def _move(obj: Target, dataset: str, action: str, who: str | None, reason: str, version: int | None,
          as_json: bool) -> None:
    from tollgate import promotion, serving
    from tollgate.errors import DeploymentFailed

    try:
        with console.status(f"{action} {dataset}: moving traffic…"):
            result = promotion.move(obj.cloud, obj.state, dataset, action, actor(who), reason, version)
    except serving.MoveError as exc:
        raise click.ClickException(f"{dataset}: {exc}") from exc
    except DeploymentFailed as exc:
        raise click.ClickException(f"{exc}\nFirestore already says what should serve; run the same command "
                                   "again to finish the deployment.") from exc
    if as_json:
        dump(result)
        return
    note = "" if result["outcome"] == "moved" else " (already so; traffic checked)"
    out.print(f"{dataset} now serves [bold]{views.serving_text(result['serving'])}[/]{note}")


@main.command("canary")
@click.argument("action", type=click.Choice(["promote", "abort"]))
@click.argument("dataset")
@click.option("--reason", help="Why; recorded in the ledger (default: canary promoted / aborted).")
@click.option("--actor", "who", help="Who (default: $TOLLGATE_ACTOR or your login).")
@json_option
@click.pass_obj
def canary_cmd(obj: Target, action: str, dataset: str, reason: str | None, who: str | None, as_json: bool) -> None:
    """End a canary (spec `deployment.canary_percent`): `promote` makes it the champion with 100% of
    requests; `abort` takes it to 0% and the champion serves everything again."""
    _move(obj, dataset, f"canary-{action}", who, reason or f"canary {action.rstrip('e')}ed", None, as_json)


@main.command("rollback")
@click.argument("dataset")
@click.option("--to", "to_version", type=int, help="The version to serve (default: the previous champion).")
@click.option("--reason", default="manual rollback", show_default=True)
@click.option("--actor", "who", help="Who (default: $TOLLGATE_ACTOR or your login).")
@json_option
@click.pass_obj
def rollback_cmd(obj: Target, dataset: str, to_version: int | None, reason: str, who: str | None,
                 as_json: bool) -> None:
    """Serve an earlier version again, in one step: the Firestore pointer, the ledger and the traffic.

    Safe to repeat: right after a rollback, running it again finishes a deployment left half-done
    instead of going further back (name a version with --to for that)."""
    _move(obj, dataset, "rollback", who, reason, to_version, as_json)
