"""`opencampaign serve`: initialise when needed, load demo data if asked, then serve HTTP."""

from __future__ import annotations

import argparse

import uvicorn

from ..instance import Instance


def serve(args: argparse.Namespace) -> int:
    from .app import create_app

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
    app = create_app(instance)
    print(f"opencampaign serving {instance.data_dir} on http://{host}:{port}/ (data model: /datamodel/)", flush=True)
    # One process: the embedded DuckDB file can only be opened by one process at a time.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    instance.close()
    return 0
