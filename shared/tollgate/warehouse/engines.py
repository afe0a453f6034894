"""The two warehouse engines behind one interface: ``query(query, **params) -> pyarrow.Table``.

- :class:`DuckDB` (the local cloud, tests, benchmarks): an embedded engine over the drain's Parquet
  files in any pyarrow filesystem (the bucket through the GCS API, or a folder). Each query opens only
  the hour partitions of its publish-time interval and reads them with DuckDB's own Parquet reader
  (projection and filters pushed into the scan; other filesystems than a folder reach it through
  fsspec), within ``memory_limit``, spilling to a temporary folder beyond it.
- :class:`BigQuery` (Google Cloud): the same query text in BigQuery's own dialect, over the tables the
  BigQuery subscriptions write, with typed query parameters; results come back as Arrow through the
  BigQuery Storage Read API.

Both also hold each dataset's curated batches (tollgate.warehouse.curated): BigQuery in a table per dataset,
which the validator loads; DuckDB reads the bucket's curated objects themselves.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from tollgate.warehouse import curated, sql, tables


class Warehouse:
    """Run a :class:`~tollgate.warehouse.sql.Query` with its parameters; the result as an Arrow table."""

    engine = "abstract"

    def query(self, query: sql.Query, **params: Any) -> pa.Table:
        raise NotImplementedError

    def expire(self, table: str, dataset: str, before: dt.datetime) -> int:
        """Delete ``dataset``'s rows of ``table`` published before ``before`` (a whole hour at a time locally:
        the hours that end by then); how many files (DuckDB) or messages (BigQuery) went."""
        raise NotImplementedError

    def load_curated(self, dataset: str, name: str, batch: str) -> None:
        """Add the curated object ``name`` (batch ``batch``) to the dataset's curated table; once per batch."""
        raise NotImplementedError

    def curated_window(self, dataset: str, batches: list[dict[str, Any]], seed: int, fraction: float) -> pa.Table:
        """The rows of ``batches`` (curated batch records, in window order), a seeded ``fraction`` of them when
        below 1, in window order, as the pipeline reads them (tollgate.warehouse.curated)."""
        raise NotImplementedError


class DuckDB(Warehouse):
    engine = "duckdb"

    def __init__(self, filesystem: pafs.FileSystem, root: str, *, memory_limit: str = "512MB",
                 threads: int | None = None, temp_directory: str | None = None) -> None:
        self.filesystem, self.root = filesystem, root.rstrip("/")
        self.memory_limit, self.threads = memory_limit, threads or min(os.cpu_count() or 1, 4)
        self.temp_directory = temp_directory or os.path.join(tempfile.gettempdir(), "tollgate-duckdb")

    @classmethod
    def on_bucket(cls, bucket: str, emulator_host: str | None = None, **kwargs: Any) -> "DuckDB":
        """Over ``gs://bucket`` through the GCS API (fake-gcs-server when ``emulator_host`` is given)."""
        if emulator_host:
            scheme, _, host = emulator_host.rpartition("://")
            filesystem = pafs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme=scheme or "http",
                                            retry_time_limit=dt.timedelta(seconds=30))
        else:
            filesystem = pafs.GcsFileSystem()
        return cls(filesystem, bucket, **kwargs)

    def files(self, table: str, dataset: str, since: dt.datetime, until: dt.datetime) -> list[str]:
        """The Parquet files of ``table`` for ``dataset`` that can hold rows published in ``[since, until)``."""
        found = []
        for prefix in tables.partitions(table, dataset, since, until):
            selector = pafs.FileSelector(f"{self.root}/{tables.ROOT}{prefix}", allow_not_found=True)
            found += sorted(i.path for i in self.filesystem.get_file_info(selector)
                            if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
        return found

    def expire(self, table: str, dataset: str, before: dt.datetime) -> int:
        tables.check_name(table, dataset)
        selector = pafs.FileSelector(f"{self.root}/{tables.ROOT}{table}/{dataset}/", recursive=True,
                                     allow_not_found=True)
        gone = 0
        for info in self.filesystem.get_file_info(selector):
            hour = tables.partition_hour(info.path)
            if info.type == pafs.FileType.File and hour is not None and hour + dt.timedelta(hours=1) <= before:
                self.filesystem.delete_file(info.path)
                gone += 1
        return gone

    def _connect(self) -> tuple[Any, str]:
        """A DuckDB connection that reads this filesystem, and the prefix its paths take there."""
        import duckdb

        os.makedirs(self.temp_directory, exist_ok=True)
        con = duckdb.connect(config={"memory_limit": self.memory_limit, "threads": self.threads,
                                     "temp_directory": self.temp_directory, "preserve_insertion_order": False})
        con.execute("SET TimeZone = 'UTC'")
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            return con, ""
        from fsspec.implementations.arrow import ArrowFSWrapper

        wrapped = ArrowFSWrapper(self.filesystem)   # DuckDB's own reader, through the GCS API
        con.register_filesystem(wrapped)
        protocol = wrapped.protocol if isinstance(wrapped.protocol, str) else wrapped.protocol[0]
        return con, f"{protocol}://"

    def load_curated(self, dataset: str, name: str, batch: str) -> None:
        """Nothing to load: the window query reads the curated objects in the bucket."""

    def curated_window(self, dataset: str, batches: list[dict[str, Any]], seed: int, fraction: float) -> pa.Table:
        ids = [b["sha256"] for b in batches]
        con, prefix = self._connect()
        try:
            # In SQL, not con.read_parquet(): DuckDB reads the files' schemas (union_by_name: a column the spec added
            # later) from its own threads through the Python filesystem, which needs the GIL that execute() releases
            # and read_parquet() holds (a deadlock). The paths are the batches' own object names, quoted.
            files = ", ".join("'" + f"{prefix}{self.root}/{b['object']}".replace("'", "''") + "'" for b in batches)
            con.execute(f"CREATE VIEW {curated.RELATION} AS SELECT * FROM read_parquet([{files}], "
                        "union_by_name = true)")
            found = con.execute(curated.window_text("duckdb", curated.RELATION),
                                {"batches": ids, "seed": seed, "per_million": curated.per_million(fraction)})
            return curated.in_window_order(found.fetch_arrow_table(), ids)
        finally:
            con.close()

    def query(self, query: sql.Query, **params: Any) -> pa.Table:
        bound = sql.bind(query, params)
        con, prefix = self._connect()
        try:
            for table in query.tables:
                paths = self.files(table, bound["dataset"], bound["since"], bound["until"])
                relation = (con.read_parquet([prefix + p for p in paths]) if paths
                            else con.from_arrow(tables.ROW_SCHEMAS[table].empty_table()))
                relation.create_view(f"{table}_files")
            return con.execute(query.text("duckdb"), bound).fetch_arrow_table()
        finally:
            con.close()


_BIGQUERY_TYPES = ((bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"), (str, "STRING"), (dt.datetime, "TIMESTAMP"))


def bigquery_parameter(name: str, value: Any) -> Any:
    """A typed BigQuery query parameter for a Python value."""
    from google.cloud import bigquery

    for kind, type_name in _BIGQUERY_TYPES:
        if isinstance(value, kind):
            return bigquery.ScalarQueryParameter(name, type_name, value)
    raise sql.QueryError(f"parameter {name}: no BigQuery type for {type(value).__name__}")


class BigQuery(Warehouse):
    engine = "bigquery"

    def __init__(self, project: str, dataset: str, location: str | None = None, client: Any = None, *,
                 bucket: str | None = None, curated_dataset: str = "tollgate_curated") -> None:
        self.project, self.dataset, self.location = project, dataset, location
        self.bucket, self.curated_dataset = bucket, curated_dataset
        self._client = client

    @functools.cached_property
    def client(self) -> Any:
        from google.cloud import bigquery

        return self._client or bigquery.Client(project=self.project, location=self.location)

    @property
    def qualified(self) -> dict[str, str]:
        return {table: f"{self.project}.{self.dataset}.{table}" for table in tables.TABLES}

    def query(self, query: sql.Query, **params: Any) -> pa.Table:
        from google.cloud import bigquery

        bound = sql.bind(query, params)
        config = bigquery.QueryJobConfig(query_parameters=[bigquery_parameter(k, v) for k, v in bound.items()],
                                         labels={"tollgate_query": query.name.replace("_", "-")})
        job = self.client.query(query.text("bigquery", self.qualified), job_config=config)
        return job.result().to_arrow(create_bqstorage_client=True)

    def curated_table(self, dataset: str) -> str:
        return f"{self.project}.{self.curated_dataset}.{curated.table_name(dataset)}"

    def load_curated(self, dataset: str, name: str, batch: str) -> None:
        """A load job from ``gs://<bucket>/<name>``, its id derived from the batch: a retry finds the job of the
        first attempt (409) and waits for it instead of loading the rows twice."""
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION,
                                   bigquery.SchemaUpdateOption.ALLOW_FIELD_RELAXATION],
            labels={"tollgate_load": "curated"})
        job_id = curated.load_job_id(dataset, batch)
        try:
            job = self.client.load_table_from_uri(f"gs://{self.bucket}/{name}", self.curated_table(dataset),
                                                  job_id=job_id, job_config=config)
        except Conflict:
            job = self.client.get_job(job_id)
        job.result()

    def curated_window(self, dataset: str, batches: list[dict[str, Any]], seed: int, fraction: float) -> pa.Table:
        from google.cloud import bigquery

        ids = [b["sha256"] for b in batches]
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ArrayQueryParameter("batches", "STRING", ids), bigquery_parameter("seed", int(seed)),
            bigquery_parameter("per_million", curated.per_million(fraction))],
            labels={"tollgate_query": "curated-window"})
        job = self.client.query(curated.window_text("bigquery", self.curated_table(dataset)), job_config=config)
        return curated.in_window_order(job.result().to_arrow(create_bqstorage_client=True), ids)

    def expire(self, table: str, dataset: str, before: dt.datetime) -> int:
        from google.cloud import bigquery

        tables.check_name(table, dataset)
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery_parameter("dataset", dataset), bigquery_parameter("before", before)],
            labels={"tollgate_query": "expire"})
        job = self.client.query(expire_text(self.qualified[table]), job_config=config)
        job.result()
        return int(job.num_dml_affected_rows or 0)


def expire_text(qualified_table: str) -> str:
    """The BigQuery DML that deletes a dataset's log rows published before ``@before``: a filter on the
    partitioning column, which the tables require."""
    return f"DELETE FROM `{qualified_table}` WHERE dataset = @dataset AND publish_time < @before"
