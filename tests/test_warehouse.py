"""The warehouse contract: every query runs on DuckDB against rows written by the drain's own code and
answers what the rows say; its BigQuery text parses in BigQuery's dialect over the subscription's tables;
at-least-once delivery is undone at query time; a query opens only the partitions of its interval."""

from __future__ import annotations

import datetime as dt

import pyarrow.fs as pafs
import pytest
import sqlglot
from sqlglot import exp

from tollgate.warehouse import engines, queries, sql, tables

T0 = dt.datetime(2026, 11, 22, 10, tzinfo=dt.timezone.utc)
QUERIES = [queries.TRAFFIC, queries.sample({1: 1_000_000, 2: 400_000}), queries.LABELLED, queries.LABEL_COUNT,
           queries.labelled_by_keys(("trip_seconds", "company"))]


def _prediction(request: str, row: int, second: int, version: int = 1, status: int = 200, latency: float = 5.0):
    return {"request_id": request, "row": row, "time": (T0 + dt.timedelta(seconds=second)).isoformat(),
            "model_version": version, "status": status, "latency_ms": latency,
            "features": {"trip_seconds": 60.0 * (row + 1), "company": "Flash Cab"}, "prediction": 10.0 + row}


def _write(root, pull: tables.Pull) -> None:
    for name, _, data, _ in pull.files():
        path = root / tables.ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture()
def warehouse(tmp_path):
    """Two versions, three requests each of two rows plus one server and one client error, and labels:
    written as the drain writes them, the first message twice (a redelivery in another pull)."""
    pull, again = tables.Pull(), tables.Pull()
    first = [_prediction(f"r{i}", row, i) for i in range(3) for row in range(2)]
    second = [_prediction(f"s{i}", row, 10 + i, version=2, latency=50.0) for i in range(3) for row in range(2)]
    errors = [_prediction("e500", 0, 20, status=500), _prediction("e400", 0, 21, version=2, status=400)]
    for message_id, records in (("m1", first), ("m2", second), ("m3", errors)):
        pull.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": "taxi", "records": records}, message_id,
                 T0 + dt.timedelta(minutes=1))
    labels = [{"request_id": "r0", "row": 0, "label": "11.0", "time": T0.isoformat(), "seq": 0},
              {"request_id": "r0", "row": 0, "label": "12.5", "time": T0.isoformat(), "seq": 1},   # later row wins
              {"request_id": "s1", "row": 1, "label": "20", "time": T0.isoformat(), "seq": 2},
              {"request_id": "nobody", "row": 0, "label": "1", "time": T0.isoformat(), "seq": 3},
              {"keys": {"trip_seconds": 120.0, "company": "Flash Cab"}, "row": 0, "label": "30",
               "time": T0.isoformat(), "seq": 4}]
    pull.add({"schema": tables.LABELS_SCHEMA, "dataset": "taxi", "records": labels}, "l1",
             T0 + dt.timedelta(minutes=2))
    pull.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": "other", "records": first}, "o1",
             T0 + dt.timedelta(minutes=1))
    again.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": "taxi", "records": first}, "m1",
              T0 + dt.timedelta(minutes=1))
    again.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": "taxi", "records": []}, "m4",
              T0 + dt.timedelta(minutes=1))
    _write(tmp_path, pull)
    _write(tmp_path, again)
    return engines.DuckDB(pafs.LocalFileSystem(), str(tmp_path), memory_limit="128MB", threads=1)


def _window(**extra):
    return {"dataset": "taxi", "since": T0, "until": T0 + dt.timedelta(hours=1), "start": T0,
            "end": T0 + dt.timedelta(hours=1), "label_start": T0, **extra}


def test_traffic_counts_requests_rows_and_errors_per_version_once_per_message(warehouse):
    rows = warehouse.query(queries.TRAFFIC, **_window()).to_pylist()
    assert [(r["model_version"], r["requests"], r["ok_rows"], r["errors"], r["client_errors"]) for r in rows] == [
        (1, 4, 6, 1, 0), (2, 4, 6, 0, 1)]   # m1 was stored twice and counted once
    assert rows[0]["latency_quantiles"][50] == 5.0 and rows[1]["latency_quantiles"][99] == 50.0


def test_labels_join_by_request_and_by_id_columns_and_the_latest_label_wins(warehouse):
    pairs = warehouse.query(queries.LABELLED, **_window()).to_pylist()
    assert sorted((p["label_key"], p["model_version"], p["prediction"], p["label"]) for p in pairs) == [
        ("r0#0", 1, "10.0", "12.5"), ("s1#1", 2, "11.0", "20")]
    by_keys = warehouse.query(queries.labelled_by_keys(("trip_seconds", "company")), **_window()).to_pylist()
    assert sorted((p["model_version"], p["label"]) for p in by_keys) == [(1, "30")] * 3 + [(2, "30")] * 3
    assert warehouse.query(queries.LABEL_COUNT, **_window()).to_pylist() == [{"labels": 4}]


def test_a_sample_is_seeded_bounded_and_of_answered_rows_only(warehouse):
    everything = 1_000_000
    one = warehouse.query(queries.sample({1: everything}), **_window(seed=0, limit=4)).to_pylist()
    assert len(one) == 4 and {r["model_version"] for r in one} == {1}
    assert one == warehouse.query(queries.sample({1: everything}), **_window(seed=0, limit=4)).to_pylist()
    every = warehouse.query(queries.sample({1: everything}), **_window(seed=7, limit=100))
    assert every.num_rows == 6 and set(every.column("prediction").to_pylist()) == {"10.0", "11.0"}   # no 500
    some = warehouse.query(queries.sample({1: 400_000}), **_window(seed=7, limit=100))
    assert 0 < some.num_rows < every.num_rows   # about 40% of them, filtered while scanning
    # every version in one scan, each with its own share and its own limit
    both = warehouse.query(queries.sample({1: everything, 2: everything}), **_window(seed=7, limit=3)).to_pylist()
    versions = [r["model_version"] for r in both]
    assert versions == sorted(versions) and versions.count(1) == 3 and 0 < versions.count(2) <= 3
    assert [r for r in both if r["model_version"] == 1] == \
        warehouse.query(queries.sample({1: everything}), **_window(seed=7, limit=3)).to_pylist()
    assert queries.sample_rate(10_000) == everything and queries.sample_rate(18_000_000) == 1389


def test_a_query_reads_only_the_partitions_of_its_interval(warehouse, tmp_path):
    """Rows of another hour are not read at all: a broken file there changes nothing."""
    elsewhere = tmp_path / tables.ROOT / tables.partition(tables.PREDICTIONS, "taxi", T0 - dt.timedelta(hours=5))
    elsewhere.mkdir(parents=True)
    (elsewhere / "broken.parquet").write_bytes(b"not parquet")
    assert [r["requests"] for r in warehouse.query(queries.TRAFFIC, **_window()).to_pylist()] == [4, 4]
    with pytest.raises(Exception, match="(?i)parquet"):
        warehouse.query(queries.TRAFFIC, **_window(since=T0 - dt.timedelta(hours=6)))
    empty = warehouse.query(queries.TRAFFIC, **_window(since=T0 + dt.timedelta(days=1),
                                                        until=T0 + dt.timedelta(days=1, hours=1)))
    assert empty.num_rows == 0


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_every_query_is_valid_bigquery_over_the_subscription_tables(query):
    qualified = {t: f"acme-ml.tollgate.{t}" for t in tables.TABLES}
    text = query.text("bigquery", qualified)
    tree = sqlglot.parse_one(text, read="bigquery")
    read = {f"{t.catalog}.{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db}
    assert read == {qualified[t] for t in query.tables}
    assert {p.name for p in tree.find_all(exp.Parameter)} == query.parameters
    # every read of a table is bounded by dataset and publish time (the tables require a partition filter)
    assert text.count("publish_time >= @since AND publish_time < @until") == len(query.tables)
    assert "FARM_FINGERPRINT" not in query.text("duckdb")


def test_parameters_are_checked_and_typed():
    with pytest.raises(sql.QueryError, match="needs parameter"):
        sql.bind(queries.TRAFFIC, {"dataset": "taxi"})
    with pytest.raises(sql.QueryError, match="reads neither"):
        _ = sql.Query("bad", "SELECT 1 FROM somewhere").tables
    typed = {p.name: p.type_ for p in (engines.bigquery_parameter(k, v) for k, v in
                                       {"dataset": "taxi", "since": T0, "version": 2, "seed": 0.5}.items())}
    assert typed == {"dataset": "STRING", "since": "TIMESTAMP", "version": "INT64", "seed": "FLOAT64"}
    with pytest.raises(sql.QueryError, match="no BigQuery type"):
        engines.bigquery_parameter("x", object())


def test_id_columns_must_be_identifiers():
    with pytest.raises(ValueError, match="not an identifier"):
        queries.labelled_by_keys(("trip_seconds') = '' OR ('1",))


def test_a_malformed_message_is_refused_whole():
    with pytest.raises(tables.MalformedMessage):
        tables.Pull().add({"dataset": "taxi", "records": [{"request_id": "r", "time": "yesterday"}]}, "x", T0)
    pull = tables.Pull()
    with pytest.raises(tables.MalformedMessage):
        pull.add({"dataset": "taxi", "records": "everything"}, "x", T0)
    for dataset in ("../../models/taxi", "Taxi", 7, None):   # a dataset names a folder: never a path
        with pytest.raises(tables.MalformedMessage):
            pull.add({"dataset": dataset, "records": [_prediction("r", 0, 1)]}, "x", T0)
    assert pull.files() == []


def test_retention_deletes_only_the_datasets_hours_that_ended_before_the_cutoff(warehouse):
    """The fixture's rows are published in the hour from T0; another dataset shares that hour."""
    window = _window()
    assert warehouse.expire(tables.PREDICTIONS, "taxi", T0 + dt.timedelta(minutes=59)) == 0   # hour not over
    assert [r["requests"] for r in warehouse.query(queries.TRAFFIC, **window).to_pylist()] == [4, 4]
    assert warehouse.expire(tables.PREDICTIONS, "taxi", T0 + dt.timedelta(hours=1)) == 2      # one per pull
    assert warehouse.query(queries.TRAFFIC, **window).num_rows == 0
    assert warehouse.query(queries.LABEL_COUNT, **window).to_pylist() != []                     # labels stay
    assert warehouse.query(queries.TRAFFIC, **{**window, "dataset": "other"}).num_rows == 1   # other dataset
    assert warehouse.expire(tables.PREDICTIONS, "taxi", T0 + dt.timedelta(days=9)) == 0       # nothing left
    for table, dataset in (("models", "taxi"), (tables.LABELS, "../taxi")):   # never a path out of the log
        with pytest.raises(Exception, match="table|dataset"):
            warehouse.expire(table, dataset, T0)


def test_retention_on_bigquery_is_one_delete_filtered_on_the_partitioning_column():
    text = engines.expire_text("acme-ml.tollgate.predictions")
    tree = sqlglot.parse_one(text, read="bigquery")
    table = tree.find(exp.Table)
    assert isinstance(tree, exp.Delete) and (table.catalog, table.db, table.name) == ("acme-ml", "tollgate",
                                                                                      "predictions")
    assert {p.name for p in tree.find_all(exp.Parameter)} == {"dataset", "before"}
    assert "publish_time < @before" in text and "dataset = @dataset" in text


def test_the_curated_window_is_valid_bigquery_over_the_dataset_table_and_loads_once_per_batch():
    from tollgate.warehouse import curated

    table = engines.BigQuery("acme-ml", "tollgate", bucket="b").curated_table("chicago_taxi")
    assert table == "acme-ml.tollgate_curated.curated_chicago_taxi"
    tree = sqlglot.parse_one(curated.window_text("bigquery", table), read="bigquery")
    assert {f"{t.catalog}.{t.db}.{t.name}" for t in tree.find_all(exp.Table)} == {table}
    assert {p.name for p in tree.find_all(exp.Parameter)} == {"batches", "seed", "per_million"}
    assert tree.find(exp.Unnest) is not None and tree.find(exp.FarmFingerprint) is not None
    assert "hash(" in curated.window_text("duckdb", curated.RELATION).lower()   # DuckDB's own seeded hash
    batch = "a" * 64
    assert curated.load_job_id("chicago_taxi", batch) == f"tollgate-curated-chicago-taxi-{batch}"
    with pytest.raises(Exception, match="dataset name"):
        curated.table_name("taxi; DROP TABLE x")
    assert curated.per_million(1.0) == 1_000_000 and curated.per_million(0.25) == 250_000
