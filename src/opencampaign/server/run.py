"""`opencampaign serve`: initialise when needed, load demo data if asked, then serve HTTP.

With the embedded databases one process serves (a DuckDB file opens in one process only) and it
also runs the workflow worker in a background thread. With server databases (PostgreSQL for both
roles, or single-database mode on PostgreSQL) `--workers N` starts N server processes; run
`opencampaign worker` beside them for workflows, and share rate-limit counters through Redis
(`[limits] storage = "redis://127.0.0.1:6379"`).
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from ..instance import Instance

APP_ENV = "OPENCAMPAIGN_SERVE_ARGS"  # how worker processes learn which instance to open


def _configure_logging(instance: Instance) -> None:
    # One line per request (with its request id) on stderr; `[server] log_level = "warning"` quiets it.
    level = str(instance.settings.get("server", "log_level", "info")).upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def serve(args: argparse.Namespace) -> int:
    instance = Instance.open(args.data_dir, schema_dirs=[str(d) for d in args.schemas])
    report = instance.init()
    if report.generated_password:
        print(f"Operator 'admin' created with password: {report.generated_password}", flush=True)
    if args.demo:
        from ..demo import load_demo

        loaded = load_demo(instance)
        print("Demo data loaded." if loaded else "Demo data already present.", flush=True)
    host = args.host or instance.settings.get("server", "host")
    port = args.port or int(instance.settings.get("server", "port"))
    workers = int(getattr(args, "workers", 1) or 1)
    _configure_logging(instance)
    if workers > 1:
        embedded = {instance.storage.dialect(r) for r in instance.storage.roles} & {"sqlite", "duckdb"}
        if embedded:
            raise ValueError(f"--workers {workers} needs server databases: {', '.join(sorted(embedded))} can only be "
                             "opened by one process (set OPENCAMPAIGN_LOCAL_DB/OPENCAMPAIGN_CLOUD_DB to PostgreSQL)")
        instance.close()
        os.environ[APP_ENV] = "\0".join([str(args.data_dir), *[str(d) for d in args.schemas]])
        print(f"opencampaign serving {args.data_dir} on http://{host}:{port}/ with {workers} workers", flush=True)
        uvicorn.run("opencampaign.server.run:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False)
        return 0
    from ..workflow.worker import start_background
    from .app import create_app

    app = create_app(instance)
    stop_worker = start_background(instance) if getattr(args, "workflow_worker", True) else None
    print(f"opencampaign serving {instance.data_dir} on http://{host}:{port}/ (data model: /datamodel/)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if stop_worker is not None:
            stop_worker()
        instance.close()
    return 0


def worker_app():  # noqa: ANN201 - an ASGI app for each uvicorn worker process
    from .app import create_app

    data_dir, *schemas = os.environ[APP_ENV].split("\0")
    instance = Instance.open(data_dir, schema_dirs=schemas)
    _configure_logging(instance)
    return create_app(instance)
