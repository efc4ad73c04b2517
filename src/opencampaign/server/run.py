"""`opencampaign serve`: initialise when needed, load demo data if asked, then serve HTTP.

One process by default, which also runs the workflow worker in background threads. `--workers N`
starts N server processes on one port when every database can be shared between processes:
PostgreSQL, or SQLite files (WAL) — single-database SQLite (`OPENCAMPAIGN_SINGLE_DATABASE=1`) or
SQLite local + PostgreSQL cloud. A DuckDB file opens in one process only, so the embedded default
(SQLite + DuckDB) serves from one process. With workers:

- the workflow worker runs in the supervising process only (leases keep any extra
  `opencampaign worker` safe); `--no-workflow-worker` leaves it out;
- sessions are rows of the local database; a Logoff reaches the other workers at once through
  `DIR/sessions.revoked` (security/sessions.py); ids come from per-process blocks of the shared
  sequences (`*.sequences` beside a SQLite database, a row lock on PostgreSQL);
- rate-limit counters are per worker unless `[limits] storage = "redis://..."`.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import os
import threading
import time
from typing import Any

import uvicorn

from ..instance import Instance
from .protocol import CoalescingHttpToolsProtocol

HTTP_PROTOCOL = CoalescingHttpToolsProtocol  # uvicorn's httptools protocol, one write per response
APP_ENV = "OPENCAMPAIGN_SERVE_ARGS"  # how worker processes learn which instance to open


class _Formatter(logging.Formatter):
    """The standard format, with the date text computed once per second (one log line per request)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - override
        if datefmt:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._text},{int((created - second) * 1000):03d}"


class _BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, written in batches at least every FLUSH_SECONDS rather than line by line (stderr is
    line-buffered: a system call per request otherwise); warnings and errors are written at once,
    after the lines queued before them."""

    FLUSH_SECONDS = 0.5
    MAX_QUEUED = 2048  # lines; written by the request that reaches it (bounded memory under load)

    def __init__(self) -> None:
        super().__init__()
        # deque.append and popleft are atomic under the GIL: no lock on the hot path, no line lost.
        self._queued: collections.deque[str] = collections.deque()
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if record.levelno >= logging.WARNING:
                self._write([line])
            else:
                self._queue(line)
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)

    def access_line(self, text: str) -> None:
        """The per-request line of `opencampaign.http`, formatted as its records would be but without
        building a LogRecord and going through the logger (a sizeable share of a short request)."""
        self._queue(f"{self.formatter.stamp(time.time())} INFO opencampaign.http {text}\n")  # type: ignore[union-attr]

    def _queue(self, line: str) -> None:
        self._queued.append(line)
        if len(self._queued) >= self.MAX_QUEUED:
            self._write([])

    def _write(self, extra: list[str]) -> None:
        with self.lock:  # type: ignore[union-attr]
            queued = self._queued
            lines = [queued.popleft() for _ in range(len(queued))]
            lines.extend(extra)
            if lines:
                self.stream.write("".join(lines))
                self.stream.flush()

    def flush(self) -> None:
        self._write([])

    def _flusher(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            if self._queued:
                self._write([])


def _configure_logging(instance: Instance) -> None:
    # One line per request (with its request id) on stderr; `[server] log_level = "warning"` quiets it.
    level = str(instance.settings.get("server", "log_level", "info")).upper()
    handler = _BufferedStreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    http = logging.getLogger("opencampaign.http")
    if logging.getLogger().handlers == [handler] and not http.handlers and not http.filters and http.propagate:
        from ..soap.observability import set_access_sink

        set_access_sink(handler.access_line)  # the same line, on the handler the record would reach
    # The format uses none of these; skipping them saves a stack walk per line (logging HOWTO, "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _freeze_startup_objects() -> None:
    # Schemas, the registry and the app are ~80k long-lived objects: a full collection walks them
    # all (~100 ms here), a pause every request in flight would wait for. They never become garbage.
    gc.collect()
    gc.freeze()
    if os.environ.get('OC_GC'):
        gc.set_threshold(*map(int, os.environ['OC_GC'].split(',')))


def multi_process_refusal(instance: Instance) -> str | None:
    """Why several processes cannot serve this instance, or None when they can."""
    for role in instance.storage.roles:
        engine = instance.storage.engine(role)
        if engine.dialect.name == "duckdb":
            return (f"the {role} database is a DuckDB file, which only one process can open (use PostgreSQL, "
                    "or single-database SQLite: OPENCAMPAIGN_SINGLE_DATABASE=1)")
        if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
            return f"the {role} database is an in-memory SQLite database, private to one process"
    return None


def _warn_shared_state(instance: Instance, workers: int) -> None:
    from ..security.ratelimit import RateLimits

    limits = RateLimits.from_settings(instance.settings)
    if limits.enabled and limits.local:
        print(f"Note: TPS limits are counted per worker process ({workers} workers admit up to {workers}x each "
              "limit); set [limits] storage = \"redis://...\" to share the counters.", flush=True)


def serve(args: argparse.Namespace) -> int:
    instance = Instance.open(args.data_dir, schema_dirs=[str(d) for d in args.schemas])
    workers = int(getattr(args, "workers", 1) or 1)
    refusal = multi_process_refusal(instance) if workers > 1 else None
    if refusal:
        instance.close()
        raise ValueError(f"--workers {workers}: {refusal}")
    report = instance.init()
    if report.generated_password:
        print(f"Operator 'admin' created with password: {report.generated_password}", flush=True)
    if args.demo:
        from ..demo import load_demo

        loaded = load_demo(instance)
        print("Demo data loaded." if loaded else "Demo data already present.", flush=True)
    host = args.host or instance.settings.get("server", "host")
    port = args.port or int(instance.settings.get("server", "port"))
    _configure_logging(instance)
    if workers > 1:
        return _serve_workers(instance, args, host, port, workers)
    from ..workflow.worker import start_background
    from .app import create_app

    app = create_app(instance)
    _freeze_startup_objects()
    stop_worker = start_background(instance) if getattr(args, "workflow_worker", True) else None
    print(f"opencampaign serving {instance.data_dir} on http://{host}:{port}/ (data model: /datamodel/)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=HTTP_PROTOCOL)
    finally:
        if stop_worker is not None:
            stop_worker()
        instance.close()
    return 0


def _serve_workers(instance: Instance, args: argparse.Namespace, host: str, port: int, workers: int) -> int:
    from ..methods.xtk_session import database_id
    from ..workflow.worker import start_background

    database_id(instance)  # created on first use: here, so that workers never race to create it
    _warn_shared_state(instance, workers)
    os.environ[APP_ENV] = "\0".join([str(args.data_dir), *[str(d) for d in args.schemas]])
    # The supervising process only watches the workers: it runs the one workflow worker.
    stop_worker = start_background(instance) if getattr(args, "workflow_worker", True) else None
    print(f"opencampaign serving {args.data_dir} on http://{host}:{port}/ with {workers} workers", flush=True)
    try:
        uvicorn.run("opencampaign.server.run:worker_app", factory=True, host=host, port=port, workers=workers,
                    http=HTTP_PROTOCOL,
                    log_level="warning", access_log=False)
    finally:
        if stop_worker is not None:
            stop_worker()
        instance.close()
    return 0


def worker_app() -> Any:  # an ASGI app for each uvicorn worker process
    from .app import create_app

    data_dir, *schemas = os.environ[APP_ENV].split("\0")
    instance = Instance.open(data_dir, schema_dirs=schemas)
    _configure_logging(instance)
    app = create_app(instance)
    _freeze_startup_objects()
    return app
