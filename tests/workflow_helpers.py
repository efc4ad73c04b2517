"""Helpers of the workflow tests: an embedded instance with recipients, workflows written through Write."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencampaign.context import INTERNAL
from opencampaign.instance import Instance
from opencampaign.query.write import write
from opencampaign.storage.placement import CLOUD
from opencampaign.workflow import commands
from opencampaign.workflow.worker import Worker

ENV = {"OPENCAMPAIGN_ADMIN_PASSWORD": "test-admin-password"}


def new_instance(path: Path, env: dict[str, str] | None = None) -> Instance:
    instance = Instance.open(path, environ={**ENV, **(env or {})})
    instance.init(environ={**ENV, **(env or {})})
    return instance


def add_recipients(instance: Instance, n: int) -> None:
    """n recipients generated inside the database: id 1000+i, email r<i>@<domain>, gender i%3, country."""
    from opencampaign.workflow.activities.data import reserve_ids

    assert reserve_ids(instance.storage, "NmsRecipientId", n) == 1000  # ids 1000.. taken from the sequence
    t = instance.storage.table("nms:recipient", CLOUD)
    dialect = instance.storage.dialect(CLOUD)
    rng = "range(?)" if dialect == "duckdb" else None
    with instance.storage.write(CLOUD) as conn:
        if rng:
            conn.exec_driver_sql(
                f"INSERT INTO {t.name} (iRecipientId, sEmail, iGender, sCountryCode, iBlackList, iDeleteStatus, "
                "iFolderId, iCreatedById, iModifiedById, iBoolean1) "
                "SELECT 1000 + range, 'r' || (range % (? )) || '@' || CASE WHEN range % 2 = 0 THEN 'example.com' "
                "ELSE 'test.org' END, range % 3, CASE WHEN range % 4 = 0 THEN 'FR' ELSE 'US' END, 0, 0, 0, 0, 0, 0 "
                f"FROM {rng}", (n, n))
        else:
            rows = [{"iRecipientId": 1000 + i, "sEmail": f"r{i % n}@{'example.com' if i % 2 == 0 else 'test.org'}",
                     "iGender": i % 3, "sCountryCode": "FR" if i % 4 == 0 else "US"} for i in range(n)]
            conn.execute(sa.insert(t), rows)
    add_countries(instance)


def add_countries(instance: Instance) -> None:
    """France and United States in the local table and its cloud replica (targeting joins run in the cloud)."""
    rows = [{"sIsoA2": "FR", "sIsoA3": "FRA", "iIsoNum": 250, "sLabel": "France"},
            {"sIsoA2": "US", "sIsoA3": "USA", "iIsoNum": 840, "sLabel": "United States"}]
    roles = {id(instance.storage.engine(r)): r for r in (instance.storage.home("nms:country"), CLOUD)}
    for role in roles.values():  # one database in the single-database shape
        with instance.storage.write(role) as conn:
            conn.execute(sa.insert(instance.storage.table("nms:country", role)), rows)


def write_workflow(instance: Instance, name: str, activities: str, **attrs: Any) -> None:
    extra = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    write(instance.storage, instance.registry,
          f'<workflow xtkschema="xtk:workflow" internalName="{name}" label="{name}" {extra}>'
          f"<activities>{activities}</activities></workflow>", INTERNAL)


def run(instance: Instance, *names: str, timeout: float = 30.0, start: bool = True) -> list[dict[str, Any]]:
    if start:
        for name in names:
            commands.start(instance, name, INTERNAL)
    drive(instance, *names, timeout=timeout)
    return [commands.find(instance, n) for n in names]


def drive(instance: Instance, *names: str, timeout: float = 30.0) -> None:
    worker = Worker(instance, threads=1, lease_seconds=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        states = [commands.find(instance, n)["iState"] for n in names]
        if all(s in (13, 20) for s in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"workflows {names} still running: {states}")


def count(instance: Instance, sql: str) -> int:
    with instance.storage.engine(CLOUD).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


def log_text(instance: Instance, name: str) -> str:
    store = commands.store_of(instance)
    wid = commands.find(instance, name)["iWorkflowId"]
    return "\n".join(f"[{r['sActivity']}] {r['mMessage']}" for r in store.logs(wid))


def work_tables(instance: Instance) -> list[str]:
    """Work tables present in the cloud database (any engine)."""
    with instance.storage.engine(CLOUD).connect() as conn:
        return [t for t in sa.inspect(conn).get_table_names() if t.lower().startswith("wkf")]
