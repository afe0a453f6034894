"""Test tiers: unit tests need nothing; `emulator` and `e2e` tests share one local cloud per
session, started on free ports in a temporary home (never the developer's .tollgate/)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest

from examples.wine import wine_frame  # noqa: F401 -- the tests' own CSV of a user
from tollgate import spec as specs
from tollgate.topology import ROOT

TAXI_CSV = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
TAXI_SPEC = ROOT / "datasets" / "chicago_taxi.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers by what a test needs, not by where it lives: one that asks for the session's local cloud (directly or
    through another fixture) is an ``emulator`` test, so ``make test-unit`` never starts an emulator."""
    for item in items:
        if "local_cloud" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("emulator"):
            item.add_marker(pytest.mark.emulator)


@pytest.fixture(scope="session")
def taxi() -> pd.DataFrame:
    return pd.read_csv(TAXI_CSV).sort_values("trip_start_timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def taxi_spec() -> specs.DatasetSpec:
    return specs.load(TAXI_SPEC)


def taxi_period(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    when = pd.to_datetime(df["trip_start_timestamp"], unit="s")
    return df[(when >= start) & (when < end)].reset_index(drop=True)


class Webhook:
    """A real HTTP receiver standing in for Slack: records every JSON body posted to it."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []
        self.status = 200   # what it answers (a test may make it fail)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook):
    """One local cloud for the whole session; its env is exported so Google's clients find it.
    Its functions post review requests to the session's webhook receiver."""
    from localcloud.cloud import LocalCloud

    saved = {"TOLLGATE_REVIEW_WEBHOOK": os.environ.get("TOLLGATE_REVIEW_WEBHOOK")}
    os.environ["TOLLGATE_REVIEW_WEBHOOK"] = webhook.url   # the functions it starts inherit it
    home = tmp_path_factory.mktemp("tollgate-home")
    # the monitor and the reconciler run when a test says so (`tollgate monitor run`, `tollgate reconcile`): a
    # scheduled tick could otherwise promote another test's canary, or repair what a test breaks on purpose
    cloud = LocalCloud(home, project=f"tollgate-test-{uuid.uuid4().hex[:6]}", bucket="tollgate-test-data",
                       echo=lambda m: None, paused_schedules=("monitor", "reconcile"))
    cloud.up()
    env = cloud.env()
    saved.update({k: os.environ.get(k) for k in env})
    os.environ.update(env)
    try:
        yield cloud
    finally:
        cloud.down(export=False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def review_auth(local_cloud, name: str = "tester") -> dict[str, str]:
    """The header a reviewer named ``name`` sends the local review function: an ID token the local cloud signed
    for its URL, as `tollgate review token` prints."""
    url = local_cloud.env()["TOLLGATE_REVIEW_URL"]
    return {"Authorization": f"Bearer {local_cloud.local_issuer().mint(name, url)}"}


@pytest.fixture(scope="session")
def cloud(local_cloud):
    from tollgate.cloud import Cloud
    from tollgate.settings import Settings

    return Cloud(Settings.from_env())


@pytest.fixture(scope="session")
def state(cloud):
    from tollgate.cloud.state import State

    return State(cloud.firestore)


@pytest.fixture
def unique() -> str:
    """A fresh suffix, so tests sharing the session's cloud never see each other's data."""
    return uuid.uuid4().hex[:8]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def taxi_clean(taxi, taxi_spec) -> pd.DataFrame:
    from tollgate import validation

    return validation.validate(taxi, taxi_spec).data


@pytest.fixture(scope="session")
def taxi_model(taxi_clean, taxi_spec):
    """The taxi spec's pipeline fitted on the bundled trips (once per session)."""
    from tollgate import training

    return training.fit(taxi_clean, taxi_spec)


def columns_of(df: pd.DataFrame, spec: specs.DatasetSpec):
    """Rows of a DataFrame as the predictor's validated columns."""
    from tollgate.prepared import Columns

    return Columns.from_frame(df, spec)


def model_dir(model, spec: specs.DatasetSpec, folder: Path, **record) -> Path:
    """A model directory as Vertex AI's AIP_STORAGE_URI holds it: model.skops + its registry record. The
    deployment gives its hash (TOLLGATE_MODEL_SHA256): ``model_sha256(folder)``."""
    import orjson

    from tollgate import artifacts

    blob = artifacts.dumps(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.skops").write_bytes(blob)
    (folder / "record.json").write_bytes(orjson.dumps({
        "sha256": artifacts.sha256(blob), "spec": spec.raw, "estimator": spec.model.estimator,
        "metrics": {"r2": 0.9}, "registered_at": "2026-11-22T00:00:00Z", **record}))
    return folder


def model_sha256(folder: Path) -> str:
    """The sha256 a deployment of ``folder`` (a model_dir) pins in TOLLGATE_MODEL_SHA256: the registered one."""
    import orjson

    return orjson.loads((folder / "record.json").read_bytes())["sha256"]

