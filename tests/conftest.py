"""Test tiers: unit tests need nothing; `emulator` and `e2e` tests share one local cloud per
session, started on free ports in a temporary home (never the developer's .tollgate/)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tollgate import spec as specs
from tollgate.topology import ROOT

TAXI_CSV = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
TAXI_SPEC = ROOT / "datasets" / "chicago_taxi.yaml"


@pytest.fixture(scope="session")
def taxi() -> pd.DataFrame:
    return pd.read_csv(TAXI_CSV).sort_values("trip_start_timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def taxi_spec() -> specs.DatasetSpec:
    return specs.load(TAXI_SPEC)


def taxi_period(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    when = pd.to_datetime(df["trip_start_timestamp"], unit="s")
    return df[(when >= start) & (when < end)].reset_index(drop=True)


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory):
    """One local cloud for the whole session; its env is exported so Google's clients find it."""
    from localcloud.cloud import LocalCloud

    home = tmp_path_factory.mktemp("tollgate-home")
    cloud = LocalCloud(home, project=f"tollgate-test-{uuid.uuid4().hex[:6]}", bucket="tollgate-test-data",
                       echo=lambda m: None)
    cloud.up()
    env = cloud.env()
    saved = {k: os.environ.get(k) for k in env}
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
