"""The warehouse: the prediction log and labels as tables, asked in SQL, on BigQuery on Google Cloud and
on DuckDB over the bucket's Parquet locally (tables.py: the layout; sql.py: queries written once;
engines.py: the two engines; queries.py: the monitor's questions). ``Cloud.warehouse`` picks the engine
as the other clients are picked: the local cloud → DuckDB, Google Cloud → BigQuery."""

from tollgate.warehouse.engines import BigQuery, DuckDB, Warehouse
from tollgate.warehouse.sql import Query, QueryError

__all__ = ["BigQuery", "DuckDB", "Query", "QueryError", "Warehouse"]
