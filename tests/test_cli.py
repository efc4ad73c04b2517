"""The command line as users' scripts call it: real processes, real databases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CUSTOM_SCHEMAS, FIXTURES


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "opencampaign.cli", *args], capture_output=True, text=True,
                            env=full_env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}")
    return result


def test_init_generates_and_prints_admin_password_once(tmp_path: Path):
    first = run("init", "--data-dir", str(tmp_path))
    assert "Operator 'admin' created with password:" in first.stdout
    second = run("init", "--data-dir", str(tmp_path))
    assert "password" not in second.stdout
    assert (tmp_path / "local.sqlite").exists() and (tmp_path / "cloud.duckdb").exists()


def test_init_with_custom_schemas_on_postgres(tmp_path: Path, pg_databases):
    env = {"OPENCAMPAIGN_LOCAL_DB": pg_databases.new(), "OPENCAMPAIGN_CLOUD_DB": pg_databases.new(),
           "OPENCAMPAIGN_ADMIN_PASSWORD": "secret"}
    result = run("init", "--data-dir", str(tmp_path), "--schemas", str(CUSTOM_SCHEMAS), env=env)
    assert "created with the password from OPENCAMPAIGN_ADMIN_PASSWORD" in result.stdout
    dry = run("updatedb", "--data-dir", str(tmp_path), "--schemas", str(CUSTOM_SCHEMAS), "--dry-run", env=env)
    assert "up to date" in dry.stdout


def test_broken_schema_fails_with_precise_message(tmp_path: Path):
    result = run("init", "--data-dir", str(tmp_path / "inst"), "--schemas", str(FIXTURES / "schemas" / "broken"),
                 check=False)
    assert result.returncode == 1
    assert "bad-type.xml" in result.stderr
    assert "attribute[@name='size']" in result.stderr
    assert "unknown type 'gigantic'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "inst" / "local.sqlite").exists()  # nothing half-configured


def test_updatedb_prints_sql_and_dry_run_changes_nothing(tmp_path: Path):
    schemas = tmp_path / "schemas"
    shutil.copytree(CUSTOM_SCHEMAS, schemas)
    data = tmp_path / "inst"
    run("init", "--data-dir", str(data), env={"OPENCAMPAIGN_ADMIN_PASSWORD": "x"})
    dry = run("updatedb", "--data-dir", str(data), "--schemas", str(schemas), "--dry-run")
    assert 'CREATE TABLE "CusStore"' in dry.stdout and "ADD COLUMN" in dry.stdout
    assert "Dry run" in dry.stdout
    again = run("updatedb", "--data-dir", str(data), "--schemas", str(schemas), "--dry-run")
    assert 'CREATE TABLE "CusStore"' in again.stdout  # the dry run applied nothing
    applied = run("updatedb", "--data-dir", str(data), "--schemas", str(schemas))
    assert "Applied" in applied.stdout
    assert "up to date" in run("updatedb", "--data-dir", str(data), "--schemas", str(schemas)).stdout


def test_schema_show_compiled_and_source():
    compiled = run("schema", "show", "nms:recipient", "--compiled", "--schemas", str(CUSTOM_SCHEMAS)).stdout
    assert compiled.startswith("<schema") and 'sqltable="NmsRecipient"' in compiled
    assert 'dependingSchemas="cus:recipient"' in compiled
    source = run("schema", "show", "cus:recipient", "--source", "--schemas", str(CUSTOM_SCHEMAS)).stdout
    assert source.startswith("<srcSchema") and 'extendedSchema="nms:recipient"' in source
    unknown = run("schema", "show", "cus:nothing", check=False)
    assert unknown.returncode == 1 and "cus:nothing" in unknown.stderr


def test_bad_configuration_is_reported(tmp_path: Path):
    (tmp_path / "opencampaign.toml").write_text("[database\nlocal = 1")
    result = run("init", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 1 and "opencampaign.toml" in result.stderr


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:1/nothere"])
def test_unreachable_database_is_reported(tmp_path: Path, url: str):
    result = run("init", "--data-dir", str(tmp_path), env={"OPENCAMPAIGN_LOCAL_DB": url}, check=False)
    assert result.returncode == 1 and "local database" in result.stderr and "Traceback" not in result.stderr
