"""Work tables in the cloud database: `wkf<workflowId>_<taskId>[_<k>]`, one per outbound population.

Every population has the column `iId` (the primary key of its targeting schema) plus extra
columns. Rows never come to Python: tables are made with CREATE TABLE ... AS SELECT; only
counts are read. `ROWS_TO_PYTHON` counts data rows fetched by workflow code (the benchmark's 0).
"""

from __future__ import annotations

import re
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from ..storage.placement import CLOUD

ID = "iId"
_NAME = re.compile(r"^wkf\d+_\d+(_\d+)?$")


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


ROWS_TO_PYTHON = _Counter()


def name(workflow_id: int, task_id: int, k: int = 0) -> str:
    return f"wkf{workflow_id}_{task_id}" + (f"_{k}" if k else "")


def prefix(workflow_id: int) -> str:
    return f"wkf{workflow_id}_"


def check_name(table: str) -> str:
    if not _NAME.match(table):
        raise ValueError(f"'{table}' is not a work table name")
    return table


def engine(storage: Any) -> sa.Engine:
    return storage.engine(CLOUD)


def create_as(conn: sa.Connection, table: str, select: Select | str) -> int:
    """(Re)create `table` from `select` and return its row count (idempotent on re-execution)."""
    check_name(table)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    if isinstance(select, str):
        result = conn.exec_driver_sql(f"CREATE TABLE {table} AS {select}")
    else:
        result = conn.execute(CreateTableAs(table, select))
    # DuckDB reports the rows of a CREATE TABLE AS; other engines are asked
    return result.rowcount if conn.dialect.name == "duckdb" and result.rowcount >= 0 else count(conn, table)


class CreateTableAs(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, table: str, select: Select):
        self.table = table
        self.select = select


@compiles(CreateTableAs)
def _create_table_as(element: CreateTableAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TABLE {element.table} AS " + compiler.process(element.select, **kw)


def count(conn: sa.Connection, table: str) -> int:
    check_name(table)
    return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() or 0)


def columns(conn: sa.Connection, table: str) -> list[str]:
    check_name(table)
    result = conn.exec_driver_sql(f"SELECT * FROM {table} WHERE 1 = 0")
    keys = list(result.keys())
    result.close()
    return keys


def table(conn: sa.Connection, name_: str) -> sa.TableClause:
    return sa.table(name_, *[sa.column(c) for c in columns(conn, name_)])


def exists(conn: sa.Connection, table_: str) -> bool:
    return table_.lower() in {t.lower() for t in sa.inspect(conn).get_table_names()}


_CATALOG = {
    "duckdb": "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema() AND table_name LIKE :p",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE :p",
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE :p",
}


def list_tables(conn: sa.Connection, workflow_id: int) -> list[str]:
    """The work tables of a workflow, from the catalog (one query; no reflection of the whole database)."""
    start = prefix(workflow_id)
    sql = _CATALOG.get(conn.dialect.name)
    if sql is None:
        found = sa.inspect(conn).get_table_names()
    else:
        found = [r[0] for r in conn.execute(sa.text(sql), {"p": start + "%"})]
    # LIKE treats '_' as a wildcard: the exact prefix and the name pattern are checked here
    return [t for t in found if t.lower().startswith(start) and _NAME.match(t.lower())]


def drop_all(storage: Any, workflow_id: int) -> list[str]:
    with engine(storage).connect() as conn:
        names = list_tables(conn, workflow_id)
    if names:  # no write transaction (no commit) when there is nothing to drop
        with storage.write(CLOUD) as conn:
            for t in names:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
    return names


def fetch_rows(conn: sa.Connection, select: Select) -> list[Any]:
    """The only way workflow code may bring rows to Python: counted."""
    rows = conn.execute(select).fetchall()
    ROWS_TO_PYTHON.add(len(rows))
    return rows
