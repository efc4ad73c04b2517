"""Schema engine and init benchmark.

- load + compile every built-in schema plus 300 generated custom schemas and extensions (time,
  peak memory) beside the bare lxml parse of the same files;
- `init` of an empty instance on SQLite+DuckDB and on PostgreSQL beside SQLAlchemy's own
  `metadata.create_all` of the same tables.

Run: .venv/bin/python -m bench.bench_schema
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa
from lxml import etree

from opencampaign.instance import Instance
from opencampaign.schema.registry import load_registry
from opencampaign.schema.source import BUILTIN_DIR

from .common import generate_custom_schemas, print_table, timed

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def bench_compile(folder: Path) -> list[tuple[str, str, str, str]]:
    files = sorted(BUILTIN_DIR.rglob("*.xml")) + sorted(folder.rglob("*.xml"))
    parse = timed(lambda: [etree.parse(str(f)) for f in files])
    compile_time = timed(lambda: load_registry([folder]))
    tracemalloc.start()
    registry = load_registry([folder])
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return [
        (f"load+compile {len(registry)} schemas ({len(files)} files)", f"{compile_time * 1000:.0f} ms",
         f"lxml parse only: {parse * 1000:.0f} ms", f"{compile_time / parse:.1f}x"),
        ("peak Python memory while compiling", f"{peak / 2**20:.1f} MiB", "-", "-"),
    ]


def bench_init(label: str, env: dict[str, str], folder: Path | None) -> tuple[str, str, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [str(folder)] if folder else []
        instance = Instance.open(Path(tmp) / "ours", schema_dirs=dirs, environ=env)
        start = time.perf_counter()
        instance.init(environ=env)
        ours = time.perf_counter() - start
        instance.close()
        # Baseline: SQLAlchemy creating the same tables and indexes, nothing else.
        base_env = dict(env)
        for key in ("OPENCAMPAIGN_LOCAL_DB", "OPENCAMPAIGN_CLOUD_DB"):
            if key in base_env:
                base_env[key] = _fresh_pg()
        baseline_instance = Instance.open(Path(tmp) / "base", schema_dirs=dirs, environ=base_env)
        start = time.perf_counter()
        for role in baseline_instance.storage.roles:
            baseline_instance.storage.metadata[role].create_all(baseline_instance.storage.engine(role))
        baseline = time.perf_counter() - start
        tables = sum(len(baseline_instance.storage.metadata[r].tables) for r in baseline_instance.storage.roles)
        baseline_instance.close()
    return (f"init {label} ({tables} tables)", f"{ours:.2f} s", f"metadata.create_all: {baseline:.2f} s",
            f"{ours / baseline:.1f}x")


_created: list[str] = []


def _fresh_pg() -> str:
    name = f"oc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "schemas"
        generate_custom_schemas(folder)
        rows = bench_compile(folder)
        env = {"OPENCAMPAIGN_ADMIN_PASSWORD": "bench"}
        rows.append(bench_init("SQLite+DuckDB, built-ins", env, None))
        rows.append(bench_init("SQLite+DuckDB, +300 custom", env, folder))
        if not args.skip_postgres:
            try:
                pg_env = {**env, "OPENCAMPAIGN_LOCAL_DB": _fresh_pg(), "OPENCAMPAIGN_CLOUD_DB": _fresh_pg()}
                rows.append(bench_init("PostgreSQL x2, built-ins", pg_env, None))
                pg_env = {**env, "OPENCAMPAIGN_LOCAL_DB": _fresh_pg(), "OPENCAMPAIGN_CLOUD_DB": _fresh_pg()}
                rows.append(bench_init("PostgreSQL x2, +300 custom", pg_env, folder))
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    for name in _created:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print_table("Schema engine and init", rows)
    print(f"SQLAlchemy {sa.__version__}")


if __name__ == "__main__":
    main()
