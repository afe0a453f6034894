"""Queries written once, in BigQuery Standard SQL, run on BigQuery or transpiled to DuckDB by sqlglot.

A query reads the relations ``prediction_rows`` and ``label_rows``: one row per logged record, each
Pub/Sub message counted once however often it was delivered, restricted to one dataset and to the
messages published in ``[@since, @until)``. Each world defines them over its own layout
(tables.py): BigQuery flattens the subscription's table, keeping one row per message id; DuckDB reads
the drain's flat Parquet files, keeping one delivery per message id. Both definitions filter on
publish time first, so only the partitions of that interval are read. ``Query.text(dialect)`` puts
the definitions in front of the query as common table expressions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import sqlglot
from sqlglot import exp

from tollgate.warehouse.tables import LABELS, PREDICTIONS, RECORD_FIELDS

RELATIONS = {"prediction_rows": PREDICTIONS, "label_rows": LABELS}
WINDOW = "dataset = @dataset AND publish_time >= @since AND publish_time < @until"


def _fields(table: str, alias: str) -> str:
    return ", ".join(f"{alias}.`{name}`" for name, _ in RECORD_FIELDS[table])


def bigquery_relation(table: str, qualified: str) -> str:
    """The relation over BigQuery table ``qualified`` (``project.dataset.table``): one row per record
    of each message id."""
    return (f"SELECT m.message_id, m.publish_time, m.dataset, {_fields(table, 'r')} "
            f"FROM (SELECT * FROM `{qualified}` WHERE {WINDOW} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY publish_time) = 1) AS m, "
            f"UNNEST(m.records) AS r")


def local_relation(table: str) -> str:
    """The relation over the drain's rows, registered as ``<table>_files``: the first delivery of each
    message id (a redelivered message was written again, as another delivery)."""
    files = f"{table}_files"
    return (f"SELECT f.message_id, f.publish_time, f.dataset, {_fields(table, 'f')} FROM {files} AS f "
            f"JOIN (SELECT message_id, MIN(delivery) AS delivery FROM {files} WHERE {WINDOW} "
            f"GROUP BY message_id) AS d ON f.message_id = d.message_id AND f.delivery = d.delivery "
            f"WHERE f.{WINDOW.replace(' AND ', ' AND f.')}")


class QueryError(ValueError):
    """A query that is not valid for the warehouse (a programming error, never user input)."""


def _duckdb_functions(node: exp.Expression) -> exp.Expression:
    """What sqlglot leaves in BigQuery's words and DuckDB names otherwise."""
    if isinstance(node, exp.FarmFingerprint):
        return exp.Anonymous(this="hash", expressions=node.expressions)
    return node


@dataclasses.dataclass(frozen=True)
class Query:
    """One named query in BigQuery SQL over ``prediction_rows`` and/or ``label_rows``."""
    name: str
    sql: str

    @functools.cached_property
    def tree(self) -> exp.Expression:
        return sqlglot.parse_one(self.sql, read="bigquery")

    @functools.cached_property
    def tables(self) -> tuple[str, ...]:
        """The warehouse tables the query reads (through their relations)."""
        names = {t.name for t in self.tree.find_all(exp.Table) if not t.db}
        found = tuple(table for relation, table in RELATIONS.items() if relation in names)
        if not found:
            raise QueryError(f"query {self.name} reads neither prediction_rows nor label_rows")
        return found

    @functools.cached_property
    def parameters(self) -> frozenset[str]:
        """The names of the query's parameters (``@name``), with the relations' own."""
        own = {p.name for p in self.tree.find_all(exp.Parameter)}
        return frozenset(own | {"dataset", "since", "until"})

    def text(self, dialect: str, qualified: dict[str, str] | None = None) -> str:
        """The query with its relations, in ``dialect`` ("bigquery" or "duckdb"); for BigQuery,
        ``qualified`` names each table (``project.dataset.table``)."""
        return _text(self, dialect, tuple(sorted((qualified or {}).items())))


@functools.lru_cache(maxsize=256)
def _text(query: Query, dialect: str, qualified: tuple[tuple[str, str], ...]) -> str:
    names = dict(qualified)
    tree = query.tree.copy()
    ctes = []
    for relation, table in RELATIONS.items():
        if table not in query.tables:
            continue
        if dialect == "bigquery":
            if table not in names:
                raise QueryError(f"no BigQuery table named for {table}")
            body = bigquery_relation(table, names[table])
        else:
            body = local_relation(table)
        ctes.append(exp.CTE(this=sqlglot.parse_one(body, read="bigquery"), alias=exp.TableAlias(
            this=exp.to_identifier(relation))))
    existing = tree.args.get("with_") or tree.args.get("with")
    key = "with_" if "with_" in tree.arg_types else "with"
    tree.set(key, exp.With(expressions=ctes + (list(existing.expressions) if existing else [])))
    if dialect == "duckdb":
        tree = tree.transform(_duckdb_functions)
    return tree.sql(dialect=dialect)


def bind(query: Query, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the query uses, all of them present (a missing one is a programming error)."""
    missing = sorted(query.parameters - set(params))
    if missing:
        raise QueryError(f"query {query.name} needs parameter(s) {', '.join(missing)}")
    return {name: params[name] for name in query.parameters}
