"""Database engines for the local and cloud roles."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url


class DatabaseUnavailable(RuntimeError):
    pass


def create_engine(url: str, *, sqlite_synchronous: str = "FULL") -> sa.Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        synchronous = sqlite_synchronous.upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"invalid sqlite_synchronous '{sqlite_synchronous}'")

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # noqa: ANN001
            dbapi_connection.isolation_level = None  # transactions are begun by the listener below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute(f"PRAGMA synchronous={synchronous}")  # FULL: an acknowledged commit survives a crash
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            _register_sqlite_functions(dbapi_connection)

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            # Writers take the lock up front: a deferred transaction that later upgrades can
            # fail with SQLITE_BUSY instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    if backend == "duckdb":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(url)
    if backend == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    # Other warehouses (Snowflake, ClickHouse...) come through their SQLAlchemy dialects untouched.
    return sa.create_engine(url)


def _register_sqlite_functions(dbapi_connection) -> None:  # noqa: ANN001
    try:
        from ..query.expr.sql_functions import register_sqlite_functions
    except ImportError:  # expression functions not available (partial install)
        return
    register_sqlite_functions(dbapi_connection)


def check_connection(engine: sa.Engine, role: str) -> None:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        message = str(exc).splitlines()[0]
        if "lock" in message.lower() and engine.dialect.name == "duckdb":
            message += " (the DuckDB file is owned by another process: is a server running on this data dir?)"
        raise DatabaseUnavailable(f"{role} database {engine.url.render_as_string(hide_password=True)}: {message}") from None
