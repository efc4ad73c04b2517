"""Database engines for the local and cloud roles."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .writer_gate import HELD, gate_sqlite_writes


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
            if not options.get("write"):
                conn.exec_driver_sql("BEGIN")
                return
            dbapi_connection = conn.connection.dbapi_connection
            if gate is not None:
                HELD.take(gate, dbapi_connection)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                HELD.give_back(dbapi_connection)
                raise

        gate = gate_sqlite_writes(engine, parsed.database) if parsed.database and parsed.database != ":memory:" \
            else None
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


class ReadConnections:
    """DBAPI connections kept out of the engine's pool between single-statement reads.

    A cached queryDef plan runs its SQL on a raw driver connection: checking one out of
    SQLAlchemy's pool and back costs more than a SQLite key lookup, the pool's reset-on-return
    rollback costs ~200 µs on DuckDB, and PostgreSQL's pre-ping is a round trip. Idle connections
    wait here instead (at most `keep`, still counted by the pool; more go back to it). Each is
    used by one thread at a time: `acquire` and `release` are a list pop and append, atomic under
    the GIL. Statements run without a transaction: SQLite connections are in autocommit mode
    (isolation_level None), DuckDB runs each statement in its own, PostgreSQL connections are
    switched to autocommit while they are held here. A connection that saw an error is closed
    (`discard`); after a lost connection the caller retries through SQLAlchemy, whose pool
    pre-pings. A disposed engine closes the idle ones.
    """

    def __init__(self, engine: sa.Engine, keep: int = 4):
        self.dialect = engine.dialect
        self.name = engine.dialect.name
        self.keep = keep
        self._engine = weakref.ref(engine)
        self._idle: list[RawConnection] = []
        self._generation = 0
        sa.event.listen(engine, "engine_disposed", self._disposed)
        weakref.finalize(engine, _close_all, self._idle)
        _ALL.add(self)

    def acquire(self) -> RawConnection:
        try:
            return self._idle.pop()
        except IndexError:
            return self._open()

    def _open(self) -> RawConnection:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine of these connections is gone")
        fairy = engine.raw_connection()
        dbapi = fairy.dbapi_connection
        if self.name == "postgresql":
            dbapi.autocommit = True  # one statement, no BEGIN/ROLLBACK round trips
        return RawConnection(fairy, dbapi, self._generation)

    def release(self, raw: RawConnection) -> None:
        if raw.generation != self._generation:  # its engine was disposed meanwhile
            _invalidate(raw)
        elif len(self._idle) < self.keep:
            self._idle.append(raw)
        else:
            self._give_back(raw)

    def discard(self, raw: RawConnection, exc: BaseException, cursor: Any = None) -> bool:
        """Close a connection after `exc` (a cheap reconnect beats reusing a connection in an
        unknown state). Returns True when the error says the database connection was lost: the
        idle ones are then dropped too (a restarted server lost them all)."""
        lost = True
        if isinstance(exc, self.dialect.loaded_dbapi.Error):
            with contextlib.suppress(Exception):  # undecidable: treated as lost
                lost = bool(self.dialect.is_disconnect(exc, raw.dbapi, cursor))  # type: ignore[arg-type]
        else:
            lost = False
        _invalidate(raw)
        if lost:
            self._drop_idle()
        return lost

    def _give_back(self, raw: RawConnection) -> None:
        """Return a connection to the engine's pool, without the reset round trips it does not need."""
        try:
            if self.name == "postgresql":
                raw.dbapi.autocommit = False  # the pool's other users expect transactions
            elif self.name == "duckdb":
                raw.fairy.info[_NO_TRANSACTION] = True  # nothing to roll back (see do_rollback)
            raw.fairy.close()
        except Exception:  # noqa: BLE001 - a broken connection is closed instead
            _invalidate(raw)

    def _drop_idle(self) -> None:
        while True:
            try:
                _invalidate(self._idle.pop())
            except IndexError:
                return

    def _disposed(self, _engine: sa.Engine) -> None:
        self._generation += 1  # connections in use now are closed when released
        self._drop_idle()

    def __len__(self) -> int:
        return len(self._idle)


class RawConnection(NamedTuple):
    fairy: Any  # the pool's proxy (PoolProxiedConnection), checked out while we hold it
    dbapi: Any  # the driver connection: sqlite3, duckdb_engine's wrapper, psycopg
    generation: int


def _invalidate(raw: RawConnection) -> None:
    with contextlib.suppress(Exception):  # already closed
        raw.fairy.invalidate()


def _close_all(idle: list[RawConnection]) -> None:
    while idle:
        _invalidate(idle.pop())


_ALL: weakref.WeakSet[ReadConnections] = weakref.WeakSet()
_READS: weakref.WeakKeyDictionary[sa.Engine, ReadConnections | None] = weakref.WeakKeyDictionary()
_READS_LOCK = threading.Lock()
_RAW_DIALECTS = ("sqlite", "duckdb", "postgresql")


def read_connections(engine: sa.Engine) -> ReadConnections | None:
    """The raw read connections of an engine; None when its driver is not one we run raw
    (SQLite, DuckDB and PostgreSQL through psycopg are; other warehouses go through SQLAlchemy)."""
    try:
        return _READS[engine]
    except KeyError:
        pass
    with _READS_LOCK:
        if engine not in _READS:
            dialect, pool = engine.dialect, engine.pool
            # QueuePool only: a SingletonThreadPool (in-memory SQLite) hands each thread its own
            # connection, which must not move to another thread.
            usable = dialect.name in _RAW_DIALECTS and isinstance(pool, sa.pool.QueuePool) and \
                (dialect.name != "postgresql" or dialect.driver == "psycopg")
            # At most half of the pool's steady connections wait here, the rest serve other uses.
            _READS[engine] = ReadConnections(engine, keep=max(1, min(4, pool.size() // 2))) if usable else None
        return _READS[engine]


def _forget_after_fork() -> None:
    # A forked child must not use (nor close) its parent's connections: they stay open, unused.
    global _READS_LOCK  # noqa: PLW0603 - another thread may have held it at the fork
    _READS_LOCK = threading.Lock()
    for reads in list(_ALL):
        _ORPHANS.extend(reads._idle)  # noqa: SLF001
        reads._idle.clear()  # noqa: SLF001
        reads._generation += 1  # noqa: SLF001


_ORPHANS: list[RawConnection] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


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
