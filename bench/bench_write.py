"""WriteCollection throughput against raw executemany of the same rows.

    .venv/bin/python -m bench.bench_write [--rows 10000]

For each deployment shape (embedded: recipients in the DuckDB cloud database; single-sqlite:
everything in SQLite), 10k recipients are written with `_key="@email"` insertOrUpdate twice
(first run = inserts, second = updates), then the same rows go through the driver's
executemany (INSERT, then UPDATE by primary key) in the same run. Goal: >= 20k rows/s and at
most 2x the raw time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.write import write, write_collection

CTX = CallContext(login="bench", login_id=1)
SHAPES = {"embedded (DuckDB cloud)": {}, "single-sqlite": {"OPENCAMPAIGN_SINGLE_DATABASE": "1"}}


def collection(n: int, run: int) -> str:
    items = [
        f'<recipient _key="@email" email="user{i}@example.com" firstName="First{i}" lastName="Last{i}-{run}" '
        f'gender="{i % 3}" birthDate="1980-01-{1 + i % 28:02d}"><location city="City{i % 100}"/></recipient>'
        for i in range(n)
    ]
    return '<recipient-collection xtkschema="nms:recipient">' + "".join(items) + "</recipient-collection>"


def raw_rows(n: int, first_id: int, folder: int) -> list[dict]:
    now = datetime.now().replace(microsecond=0)
    return [{"iRecipientId": first_id + i, "sEmail": f"user{i}@example.com", "sFirstName": f"First{i}",
             "sLastName": f"Last{i}-0", "iGender": i % 3, "tsBirthDate": date(1980, 1, 1 + i % 28),
             "sCity": f"City{i % 100}", "tsCreated": now, "tsLastModified": now, "iCreatedById": 1,
             "iModifiedById": 1, "iFolderId": folder} for i in range(n)]


def raw(instance: Instance, n: int) -> tuple[float, float]:
    """Seconds for the driver's executemany INSERT, then UPDATE by primary key, of n rows."""
    storage = instance.storage
    table = storage.table("nms:recipient")
    role = storage.home("nms:recipient")
    rows = raw_rows(n, 10_000_000, 0)
    cols = list(rows[0])
    quote = storage.engine(role).dialect.identifier_preparer.quote
    insert = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(table.c[c].name) for c in cols)}) "
              f"VALUES ({', '.join('?' for _ in cols)})")
    update = (f"UPDATE {quote(table.name)} SET {quote(table.c.sLastName.name)} = ?, "
              f"{quote(table.c.tsLastModified.name)} = ? WHERE {quote(table.c.iRecipientId.name)} = ?")
    with storage.write(role) as conn:
        started = time.perf_counter()
        conn.exec_driver_sql(insert, [tuple(r[c] for c in cols) for r in rows])
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        conn.exec_driver_sql(update, [(r["sLastName"] + "x", r["tsLastModified"], r["iRecipientId"]) for r in rows])
        updated = time.perf_counter() - started
        conn.execute(sa.delete(table).where(table.c.iRecipientId >= 10_000_000))
    return inserted, updated


def bench_shape(name: str, env: dict[str, str], n: int, folder: Path) -> list[tuple]:
    env = {**env, "OPENCAMPAIGN_ADMIN_PASSWORD": "bench"}
    instance = Instance.open(folder, environ=env)
    instance.init(environ=env)
    try:
        write(instance.storage, instance.registry,
              '<folder xtkschema="xtk:folder" name="nmsRootRecipient" label="Recipients"/>', CTX)
        raw_insert, raw_update = raw(instance, n)
        results = []
        for phase, run, raw_seconds in (("insert", 1, raw_insert), ("update", 2, raw_update)):
            document = collection(n, run)
            started, cpu = time.perf_counter(), time.process_time()
            write_collection(instance.storage, instance.registry, document, CTX)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            results.append((name, phase, n, seconds, cpu, n / seconds, n / raw_seconds, seconds / raw_seconds))
        table = instance.storage.table("nms:recipient")
        with instance.storage.engine(instance.storage.home("nms:recipient")).connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.iRecipientId != 0)).scalar()
        assert count == n, f"{name}: {count} rows instead of {n}"
        return results
    finally:
        instance.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        for index, (name, env) in enumerate(SHAPES.items()):
            results.extend(bench_shape(name, env, args.rows, Path(tmp) / str(index)))
    header = (f"{'database':<26}{'phase':<8}{'rows':>7}{'seconds':>9}{'cpu s':>7}{'rows/s':>9}{'us/row':>8}"
              f"{'raw rows/s':>12}{'raw us/row':>11}{'x raw':>7}")
    print(header)
    print("-" * len(header))
    for name, phase, n, seconds, cpu, rate, raw_rate, ratio in results:
        print(f"{name:<26}{phase:<8}{n:>7}{seconds:>9.2f}{cpu:>7.2f}{rate:>9.0f}{1e6 / rate:>8.1f}{raw_rate:>12.0f}"
              f"{1e6 / raw_rate:>11.1f}{ratio:>7.2f}")
    print("seconds: wall clock; cpu s: this process's CPU time (the gap is I/O or other load on the machine)")


if __name__ == "__main__":
    main()
