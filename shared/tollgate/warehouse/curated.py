"""Curated batches as a table: the trainer's window in one query.

Each valid batch is stored once, as ``curated/<dataset>/<sha256>.parquet`` (the sha256 of its data: the batch's
identity), with two more columns: ``_batch`` (that sha256) and ``_row`` (the row's place in the batch). On
Google Cloud the validator loads the object into the BigQuery table ``curated_<dataset>`` (a load job whose id
is derived from the sha256: a retry loads it once); locally DuckDB reads the same objects from the bucket.

The window query takes the batches of a window but the newest (whose held-out rows the evaluator keeps; the
trainer adds its training part itself) and, when they hold more rows than ``training.max_rows``, keeps a
seeded hash sample of them, decided row by row while the engine scans. The rows come back as Arrow in the
window's order (batch by batch, each in its own order): an unsampled window is exactly the rows the trainer
read batch by batch before.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlglot

from tollgate.spec import check_dataset_name

BATCH, ROW = "_batch", "_row"
COLUMNS = (BATCH, ROW)
RELATION = "curated_rows"
_HASH = f"FARM_FINGERPRINT(CONCAT({BATCH}, '#', CAST({ROW} AS STRING), '#', CAST(@seed AS STRING)))"
WINDOW = (f"SELECT * FROM {RELATION} WHERE {BATCH} IN UNNEST(@batches) "
          f"AND ABS(MOD({_HASH}, 1000000)) < @per_million")


def table_name(dataset: str) -> str:
    """The BigQuery table of a dataset's curated batches (dataset names are identifiers: spec.py)."""
    return f"curated_{check_dataset_name(dataset)}"


def load_job_id(dataset: str, batch: str) -> str:
    """The load job of one batch: the same for every retry, so BigQuery runs it once."""
    return f"tollgate-curated-{check_dataset_name(dataset).replace('_', '-')}-{batch}"


@functools.lru_cache(maxsize=4)
def window_text(dialect: str, relation: str) -> str:
    """The window query in ``dialect`` over ``relation`` (a qualified BigQuery table, or DuckDB's view)."""
    from sqlglot import exp

    from tollgate.warehouse.sql import _duckdb_functions

    tree = sqlglot.parse_one(WINDOW, read="bigquery")
    for table in tree.find_all(exp.Table):
        if table.name == RELATION:
            table.replace(exp.to_table(relation, dialect="bigquery") if dialect == "bigquery"
                          else exp.to_table(relation))
    if dialect == "duckdb":
        tree = tree.transform(_duckdb_functions)
    return tree.sql(dialect=dialect)


def per_million(fraction: float) -> int:
    """A sampling fraction as the query's threshold (1,000,000: every row)."""
    return 1_000_000 if fraction >= 1 else max(0, int(round(fraction * 1_000_000)))


def add_columns(source: Path, target: Path, batch: str, rows_per_group: int = 65_536) -> None:
    """Copy a curated Parquet file with ``_batch`` and ``_row`` added, group by group (bounded memory)."""
    reader = pq.ParquetFile(source)
    schema = reader.schema_arrow.append(pa.field(BATCH, pa.string())).append(pa.field(ROW, pa.int64()))
    start = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for group in reader.iter_batches(batch_size=rows_per_group):
            n = group.num_rows
            columns = [*group.columns, pa.array([batch] * n, pa.string()), pa.array(range(start, start + n),
                                                                                  pa.int64())]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            start += n


def in_window_order(table: pa.Table, batches: list[str]) -> pa.Table:
    """The query's rows batch by batch in the window's order, each batch in its own, without the two columns."""
    if table.num_rows == 0:
        return table.drop_columns([c for c in COLUMNS if c in table.column_names])
    position = pc.index_in(table.column(BATCH), value_set=pa.array(batches, pa.string()))
    order = pc.sort_indices(pa.table({"p": position, "r": table.column(ROW)}),
                            sort_keys=[("p", "ascending"), ("r", "ascending")])
    return table.take(order).drop_columns(list(COLUMNS))
