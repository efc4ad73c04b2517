"""One writer at a time per SQLite file, queued in the kernel rather than by SQLite's busy handler.

SQLite runs one write transaction at a time. A writer that finds the database locked sleeps in
its busy handler for 1, 2, 5 ... up to 100 ms between retries, so under concurrent writes (server
threads, `serve --workers N` processes) unlucky writers wait hundreds of milliseconds while others
get in ahead of them. With the gate, every writer first takes an exclusive flock on a side file
(`<db>.writer`) and sleeps in the kernel until it is free: no polling delay, and threads and
processes are treated alike (each thread has its own file description, since an flock belongs to
the open file description).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading


class _Handle:
    __slots__ = ("fd", "pid")

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.pid = os.getpid()

    def __del__(self) -> None:  # the thread ended
        with contextlib.suppress(OSError):
            os.close(self.fd)


class WriterGate:
    """The side file of one database; each thread opens its own description of it."""

    def __init__(self, database: str):
        self.path = f"{database}.writer"
        self._local = threading.local()

    def handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None or handle.pid != os.getpid():  # a forked child opens its own
            handle = self._local.handle = _Handle(self.path)
        return handle


class _Held:
    """Which connections hold a gate, and through which handle (a transaction may be ended by
    another thread than the one that began it)."""

    def __init__(self) -> None:
        self._by_connection: dict[int, tuple[WriterGate, _Handle]] = {}
        self._lock = threading.Lock()

    def take(self, gate: WriterGate, dbapi_connection: object) -> None:
        handle = gate.handle()
        fcntl.flock(handle.fd, fcntl.LOCK_EX)
        with self._lock:
            self._by_connection[id(dbapi_connection)] = (gate, handle)

    def give_back(self, dbapi_connection: object) -> None:
        with self._lock:
            held = self._by_connection.pop(id(dbapi_connection), None)
        if held is not None:
            fcntl.flock(held[1].fd, fcntl.LOCK_UN)


HELD = _Held()


def gate_sqlite_writes(engine: object, database: str) -> WriterGate:
    """Puts write transactions (`execution_options(write=True)`) of a SQLite file engine behind a
    gate: taken before BEGIN IMMEDIATE, given back once the transaction ended whichever way
    (commit, rollback, the pool's reset, an invalidated or closed connection)."""
    import sqlalchemy as sa

    gate = WriterGate(database)
    dialect = engine.dialect  # type: ignore[attr-defined]
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection) -> None:  # noqa: ANN001
        try:
            commit(dbapi_connection)
        finally:
            HELD.give_back(dbapi_connection)

    def do_rollback(dbapi_connection) -> None:  # noqa: ANN001
        try:
            rollback(dbapi_connection)
        finally:
            HELD.give_back(dbapi_connection)

    dialect.do_commit = do_commit
    dialect.do_rollback = do_rollback
    for event in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
        sa.event.listen(engine, event, lambda dbapi_connection, *_: HELD.give_back(dbapi_connection))
    return gate
