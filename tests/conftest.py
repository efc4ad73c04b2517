"""Shared fixtures: real databases (SQLite, DuckDB files; PostgreSQL on 127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_HOST = os.environ.get("OPENCAMPAIGN_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 user=postgres dbname=postgres"
FIXTURES = Path(__file__).parent / "fixtures"
CUSTOM_SCHEMAS = FIXTURES / "schemas" / "custom"


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


PG_AVAILABLE = _pg_available()


class PgDatabases:
    """Creates throwaway PostgreSQL databases and drops them at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self) -> str:
        name = f"oc_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_databases() -> Iterator[PgDatabases]:
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


BACKENDS = ["embedded", "postgres", "single-sqlite", "single-postgres"]


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment variables selecting the databases of an instance, one set per deployment shape."""
    kind = request.param
    env: dict[str, str] = {}
    if kind == "postgres":
        dbs = request.getfixturevalue("pg_databases")
        env = {"OPENCAMPAIGN_LOCAL_DB": dbs.new(), "OPENCAMPAIGN_CLOUD_DB": dbs.new()}
    elif kind == "single-sqlite":
        env = {"OPENCAMPAIGN_SINGLE_DATABASE": "1"}
    elif kind == "single-postgres":
        dbs = request.getfixturevalue("pg_databases")
        env = {"OPENCAMPAIGN_LOCAL_DB": dbs.new(), "OPENCAMPAIGN_SINGLE_DATABASE": "1"}
    env["OPENCAMPAIGN_ADMIN_PASSWORD"] = "test-admin-password"
    return env
