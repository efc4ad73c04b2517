"""Database engines for the local and cloud roles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
            # LIKE is case-sensitive on PostgreSQL and DuckDB, and in Campaign
            cursor.execute("PRAGMA case_sensitive_like=ON")
            cursor.close()
            _register_sqlite_functions(dbapi_connection)

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            # Writers take the lock up front: a deferred transaction that later upgrades can
            # fail with SQLITE_BUSY instead of waiting.
            options = conn.get_execution_options()
            if options.get("oc_autocommit"):
                return  # a single-statement read (read_connection): atomic without a transaction
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")

        return engine
    if backend == "duckdb":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        _duckdb_autocommit_reads(engine.dialect)
        return engine
    if backend == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    # Other warehouses (Snowflake, ClickHouse...) come through their SQLAlchemy dialects untouched.
    return sa.create_engine(url)


_NO_TRANSACTION = "oc_no_transaction"


def _duckdb_autocommit_reads(dialect: sa.Dialect) -> None:
    """duckdb_engine has no AUTOCOMMIT isolation level and begins every connection use with an
    explicit BEGIN (then ROLLBACK): a read through read_connection() skips both, and DuckDB runs
    the statement in its own implicit transaction."""
    begin, commit, rollback = dialect.do_begin, dialect.do_commit, dialect.do_rollback

    def info_of(dbapi_connection) -> dict:  # noqa: ANN001
        try:
            return dbapi_connection.info
        except (AttributeError, NotImplementedError):  # the first-connect wrapper has none
            return {}

    def do_begin(dbapi_connection) -> None:  # noqa: ANN001
        info = info_of(dbapi_connection)
        if info.get("oc_autocommit"):
            info[_NO_TRANSACTION] = True
            return
        begin(dbapi_connection)

    def do_commit(dbapi_connection) -> None:  # noqa: ANN001
        if not info_of(dbapi_connection).pop(_NO_TRANSACTION, False):
            commit(dbapi_connection)

    def do_rollback(dbapi_connection) -> None:  # noqa: ANN001
        if not info_of(dbapi_connection).pop(_NO_TRANSACTION, False):
            rollback(dbapi_connection)

    dialect.do_begin = do_begin  # type: ignore[method-assign]
    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


@contextmanager
def read_connection(engine: sa.Engine, *, autocommit: bool = True) -> Iterator[sa.Connection]:
    """A connection for reading. `autocommit`: the caller runs one statement (atomic by itself),
    so no BEGIN/COMMIT round trip: no transaction on SQLite and DuckDB, AUTOCOMMIT on PostgreSQL.
    Several statements that must see one snapshot pass autocommit=False."""
    with engine.connect() as conn:
        if not autocommit:
            yield conn
            return
        name = engine.dialect.name
        if name == "sqlite":
            yield conn.execution_options(oc_autocommit=True)
        elif name == "duckdb":
            info = conn.connection.info
            info["oc_autocommit"] = True
            try:
                yield conn
            finally:
                info.pop("oc_autocommit", None)
        elif name == "postgresql":
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            yield conn


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
