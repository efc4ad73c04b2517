"""WriteCollection throughput against raw driver statements of the same rows.

    .venv/bin/python -m bench.bench_write [--rows 10000] [--repeat 5]

For each deployment shape (embedded: recipients in the DuckDB cloud database; single-sqlite:
everything in SQLite), 10k recipients are written with `_key="@email"` insertOrUpdate twice
(first run = inserts, second = updates), beside the same rows written raw in the same run.
Goal (issue #3): >= 20k rows/s and at most 2x the raw time.

The raw baseline does the same database work, no more: the INSERT carries the 13 columns
WriteCollection inserts (document fields, audit columns, defaults, new id), the UPDATE sets the
7 columns it updates (document fields but the key, lastModified, modifiedBy) by primary key,
each pass in one transaction whose commit is counted (WriteCollection commits too). Values are
Python objects, as a loader passes them. It is the driver's executemany on SQLite, and on
DuckDB the engine's bulk form (one `INSERT ... SELECT UNNEST(?)` / `UPDATE ... FROM (SELECT
UNNEST(?))` per 20k rows): DuckDB's executemany runs row by row, so comparing with it would
flatter us 10-20x (its figure is printed below the table, measured on fewer rows). For SQLite
the multi-row INSERT and UPDATE ... FROM (VALUES ...) forms WriteCollection itself uses are
printed below the table too. An
insertOrUpdate by email must also find which emails exist: "raw+lookup" adds the lookup a
hand-written loader would run (chunked `SELECT id, email WHERE email IN (...)`; on DuckDB a
join with the email array), so "x raw" is the strict ratio and "x r+l" the same-work one.
Each shape runs `--repeat` times on a fresh instance; every figure is the best of the runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.write import write, write_collection

CTX = CallContext(login="bench", login_id=1)
SHAPES = {"embedded (DuckDB cloud)": {}, "single-sqlite": {"OPENCAMPAIGN_SINGLE_DATABASE": "1"}}
RAW_ID = 10_000_000  # raw rows live above the ids WriteCollection draws, and are deleted after
LOOKUP_CHUNK = 1000
DUCK_CHUNK = 20_000
DUCK_EXECUTEMANY_ROWS = 500


def collection(n: int, run: int) -> str:
    items = [
        f'<recipient _key="@email" email="user{i}@example.com" firstName="First{i}" lastName="Last{i}-{run}" '
        f'gender="{i % 3}" birthDate="1980-01-{1 + i % 28:02d}"><location city="City{i % 100}"/></recipient>'
        for i in range(n)
    ]
    return '<recipient-collection xtkschema="nms:recipient">' + "".join(items) + "</recipient-collection>"


INSERT_COLUMNS = ["iRecipientId", "sEmail", "sFirstName", "sLastName", "iGender", "tsBirthDate", "sCity",
                  "tsCreated", "tsLastModified", "iCreatedById", "iModifiedById", "iEmailFormat", "iFolderId"]
UPDATE_COLUMNS = ["sFirstName", "sLastName", "iGender", "tsBirthDate", "sCity", "tsLastModified", "iModifiedById"]


def raw_rows(n: int, run: int, folder: int) -> list[dict[str, Any]]:
    """The rows WriteCollection writes for `collection(n, run)`, as the driver takes them."""
    now = datetime.now().replace(microsecond=0)
    return [{"iRecipientId": RAW_ID + i, "sEmail": f"user{i}@example.com", "sFirstName": f"First{i}",
             "sLastName": f"Last{i}-{run}", "iGender": i % 3, "tsBirthDate": date(1980, 1, 1 + i % 28),
             "sCity": f"City{i % 100}", "tsCreated": now, "tsLastModified": now, "iCreatedById": 1,
             "iModifiedById": 1, "iEmailFormat": 0, "iFolderId": folder} for i in range(n)]


def _clock(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def raw(instance: Instance, n: int, folder: int) -> dict[str, float]:
    """Seconds of the raw statements: insert, update, and the key lookup before each."""
    storage = instance.storage
    table = storage.table("nms:recipient")
    role = storage.home("nms:recipient")
    inserted, updated = raw_rows(n, 1, folder), raw_rows(n, 2, folder)
    quote = storage.engine(role).dialect.identifier_preparer.quote
    name = quote(table.name)

    def col(c: str) -> str:
        return quote(table.c[c].name)

    duck = storage.dialect(role) == "duckdb"
    lookup = sa.select(table.c.iRecipientId, table.c.sEmail).where(table.c.sEmail.in_(sa.bindparam("emails", expanding=True)))
    emails = [r["sEmail"] for r in inserted]
    if duck:
        unnest = ", ".join(f"UNNEST(?) AS c{i}" for i in range(len(INSERT_COLUMNS)))
        insert = (f"INSERT INTO {name} ({', '.join(col(c) for c in INSERT_COLUMNS)}) "
                  f"SELECT {', '.join(f'c{i}' for i in range(len(INSERT_COLUMNS)))} FROM (SELECT {unnest})")
        keys = ["iRecipientId", *UPDATE_COLUMNS]
        update = (f"UPDATE {name} SET {', '.join(f'{col(c)} = v.p{i + 1}' for i, c in enumerate(UPDATE_COLUMNS))} "
                  f"FROM (SELECT {', '.join(f'UNNEST(?) AS p{i}' for i in range(len(keys)))}) AS v "
                  f"WHERE {name}.{col('iRecipientId')} = v.p0")

        def run_insert(conn: sa.Connection) -> None:
            for start in range(0, n, DUCK_CHUNK):
                chunk = inserted[start:start + DUCK_CHUNK]
                conn.exec_driver_sql(insert, tuple([r[c] for r in chunk] for c in INSERT_COLUMNS))

        def run_update(conn: sa.Connection) -> None:
            for start in range(0, n, DUCK_CHUNK):
                chunk = updated[start:start + DUCK_CHUNK]
                conn.exec_driver_sql(update, tuple([r[c] for r in chunk] for c in keys))
    else:
        insert = (f"INSERT INTO {name} ({', '.join(col(c) for c in INSERT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})")
        update = (f"UPDATE {name} SET {', '.join(f'{col(c)} = ?' for c in UPDATE_COLUMNS)} "
                  f"WHERE {col('iRecipientId')} = ?")

        def run_insert(conn: sa.Connection) -> None:
            conn.exec_driver_sql(insert, [tuple(r[c] for c in INSERT_COLUMNS) for r in inserted])

        def run_update(conn: sa.Connection) -> None:
            conn.exec_driver_sql(update, [(*(r[c] for c in UPDATE_COLUMNS), r["iRecipientId"]) for r in updated])

    def run_lookup(conn: sa.Connection) -> None:
        if duck:  # DuckDB plans long IN lists slowly: a join with the key array is its fast form
            conn.exec_driver_sql(f"SELECT {name}.{col('iRecipientId')}, {name}.{col('sEmail')} FROM {name} "
                                 f"JOIN (SELECT UNNEST(?) AS k) AS v ON {name}.{col('sEmail')} = v.k", (emails,)).all()
            return
        for start in range(0, n, LOOKUP_CHUNK):
            conn.execute(lookup, {"emails": emails[start:start + LOOKUP_CHUNK]}).all()

    # Warm-up, not measured: the rows once inserted and deleted, so that every measured insert
    # (raw or WriteCollection) reuses free pages instead of the first one growing the file.
    with storage.write(role) as conn:
        run_insert(conn)
    with storage.write(role) as conn:
        conn.execute(sa.delete(table).where(table.c.iRecipientId >= RAW_ID))
    times: dict[str, float] = {}
    for phase, run_phase in (("insert", run_insert), ("update", run_update)):
        # One transaction per pass, its commit counted: WriteCollection's time includes its own.
        started = time.perf_counter()
        with storage.write(role) as conn:
            times["lookup " + phase] = _clock(lambda: run_lookup(conn))  # noqa: B023 - called at once
            run_phase(conn)
        times[phase] = time.perf_counter() - started - times["lookup " + phase]
    with storage.write(role) as conn:
        conn.execute(sa.delete(table).where(table.c.iRecipientId >= RAW_ID))
    if not duck:
        # For reference: the multi-row VALUES form WriteCollection uses for SQLite inserts.
        one = f"({', '.join('?' for _ in INSERT_COLUMNS)})"
        head = f"INSERT INTO {name} ({', '.join(col(c) for c in INSERT_COLUMNS)}) VALUES "
        started = time.perf_counter()
        with storage.write(role) as conn:
            for start in range(0, n, 256):
                chunk = inserted[start:start + 256]
                conn.exec_driver_sql(head + ", ".join([one] * len(chunk)),
                                     tuple(v for r in chunk for v in (r[c] for c in INSERT_COLUMNS)))
        times["values insert"] = time.perf_counter() - started
        # And the multi-row UPDATE ... FROM (VALUES ...) form it uses for updates.
        width = len(UPDATE_COLUMNS) + 1
        sets = ", ".join(f"{col(c)} = v.column{i + 1}" for i, c in enumerate(UPDATE_COLUMNS))
        one = f"({', '.join('?' for _ in range(width))})"
        started = time.perf_counter()
        with storage.write(role) as conn:
            for start in range(0, n, 256):
                chunk = updated[start:start + 256]
                conn.exec_driver_sql(f"UPDATE {name} SET {sets} FROM (VALUES {', '.join([one] * len(chunk))}) AS v "
                                     f"WHERE {name}.{col('iRecipientId')} = v.column{width}",
                                     tuple(v for r in chunk for v in (*(r[c] for c in UPDATE_COLUMNS),
                                                                      r["iRecipientId"])))
        times["values update"] = time.perf_counter() - started
        with storage.write(role) as conn:
            conn.execute(sa.delete(table).where(table.c.iRecipientId >= RAW_ID))
    return times


def duck_executemany(instance: Instance, n: int, folder: int) -> float:
    """Seconds per row of DuckDB's own executemany INSERT (row by row), for reference."""
    storage = instance.storage
    table = storage.table("nms:recipient")
    role = storage.home("nms:recipient")
    rows = raw_rows(n, 1, folder)
    with storage.write(role) as conn:
        seconds = _clock(lambda: conn.execute(sa.insert(table), rows))
        conn.execute(sa.delete(table).where(table.c.iRecipientId >= RAW_ID))
    return seconds / n


def bench_shape(name: str, env: dict[str, str], n: int, folder: Path) -> tuple[list[tuple], tuple[float, ...]]:
    env = {**env, "OPENCAMPAIGN_ADMIN_PASSWORD": "bench"}
    instance = Instance.open(folder, environ=env)
    instance.init(environ=env)
    try:
        write(instance.storage, instance.registry,
              '<folder xtkschema="xtk:folder" name="nmsRootRecipient" label="Recipients"/>', CTX)
        folders = instance.storage.table("xtk:folder")
        with instance.storage.engine_for("xtk:folder").connect() as conn:
            folder_id = conn.execute(sa.select(folders.c.iFolderId).where(folders.c.sName == "nmsRootRecipient")).scalar()
        raw_times = raw(instance, n, folder_id)
        duck = instance.storage.dialect(instance.storage.home("nms:recipient")) == "duckdb"
        per_row = (duck_executemany(instance, min(n, DUCK_EXECUTEMANY_ROWS), folder_id),) if duck \
            else (raw_times["values insert"] / n, raw_times["values update"] / n)
        results = []
        for phase, run in (("insert", 1), ("update", 2)):
            document = collection(n, run)
            started, cpu = time.perf_counter(), time.process_time()
            write_collection(instance.storage, instance.registry, document, CTX)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            raw_seconds = raw_times[phase]
            lookup_seconds = raw_seconds + raw_times["lookup " + phase]
            results.append((name, phase, n, seconds, cpu, raw_seconds, lookup_seconds))
        table = instance.storage.table("nms:recipient")
        with instance.storage.engine(instance.storage.home("nms:recipient")).connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.iRecipientId != 0)).scalar()
        assert count == n, f"{name}: {count} rows instead of {n}"
        return results, per_row
    finally:
        instance.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per shape; the best time of each measure is kept")
    args = parser.parse_args()
    results = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        for index, (name, env) in enumerate(SHAPES.items()):
            runs = [bench_shape(name, env, args.rows, Path(tmp) / f"{index}-{r}") for r in range(args.repeat)]
            # Best of the runs, measure by measure, for WriteCollection and raw alike: the least disturbed.
            shape_results = [(*first[:3], *(min(m) for m in zip(*[run[0][i][3:] for run in runs], strict=True)))
                             for i, first in enumerate(runs[0][0])]
            per_row = [min(m) for m in zip(*[run[1] for run in runs], strict=True)]
            results.extend(shape_results)
            if "duck" in name.lower():
                notes.append(f"{name}: the driver's executemany INSERT runs at {1e6 * per_row[0]:.0f} us/row "
                             f"({1 / per_row[0]:.0f} rows/s, {min(args.rows, DUCK_EXECUTEMANY_ROWS)} rows)")
            else:
                notes.append(f"{name}: raw multi-row INSERT ... VALUES / UPDATE ... FROM (VALUES ...) (256 rows "
                             f"per statement, the forms WriteCollection uses): {1e6 * per_row[0]:.1f} / "
                             f"{1e6 * per_row[1]:.1f} us/row")
    header = (f"{'database':<25}{'phase':<7}{'rows':>6}{'seconds':>8}{'cpu s':>6}{'rows/s':>8}{'us/row':>7}"
              f"{'raw us/row':>11}{'x raw':>6}{'raw+lookup':>11}{'x r+l':>6}")
    print(header)
    print("-" * len(header))
    for name, phase, n, seconds, cpu, raw_seconds, lookup_seconds in results:
        print(f"{name:<25}{phase:<7}{n:>6}{seconds:>8.2f}{cpu:>6.2f}{n / seconds:>8.0f}{1e6 * seconds / n:>7.1f}"
              f"{1e6 * raw_seconds / n:>11.1f}{seconds / raw_seconds:>6.2f}{1e6 * lookup_seconds / n:>11.1f}"
              f"{seconds / lookup_seconds:>6.2f}")
    print("seconds: wall clock; cpu s: this process's CPU time (the gap is I/O or other load on the machine)")
    print("raw: executemany (SQLite), one UNNEST statement (DuckDB), same columns; raw+lookup: plus the email lookup")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
