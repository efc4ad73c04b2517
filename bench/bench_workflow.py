"""Workflow engine benchmark: a targeting workflow against the same steps hand-written as SQL.

    .venv/bin/python -m bench.bench_workflow [--rows N] [--small 200] [--threads 8]

On N recipients generated inside DuckDB: query (4 conditions, one through a link) -> split
(3 subsets with limits) -> deduplication -> update data of a flag. Reports both end-to-end times
(goal: workflow <= 1.2x the SQL), the rows moved through Python (goal: 0: every SELECT reaching
the cloud database is classified; only counts and empty column probes are allowed), and the
time for many small workflows started at once.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from opencampaign.context import INTERNAL
from opencampaign.instance import Instance
from opencampaign.query.write import write
from opencampaign.storage.placement import CLOUD
from opencampaign.workflow import commands
from opencampaign.workflow import worktables as wt
from opencampaign.workflow.activities.data import reserve_ids
from opencampaign.workflow.worker import Worker, wait_idle

from .common import print_table

ENV = {"OPENCAMPAIGN_ADMIN_PASSWORD": "bench-password"}
_SCALAR = re.compile(r"^\s*SELECT\s+(count\(\*\)|count\(\)|1\b)|WHERE 1 = 0|XtkWorkflowBatch|information_schema|"
                     r"duckdb_|pg_catalog|sqlite_master|NmsGroup\.\"?iGroupId", re.I | re.S)


class SelectCounter:
    """Classifies the SELECT statements sent to the cloud database while a workflow runs."""

    def __init__(self, engine: sa.Engine):
        self.data_selects: list[str] = []
        self.scalar_reads = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        text = statement.lstrip()
        if text[:6].upper() != "SELECT" and text[:4].upper() != "WITH":
            return
        if _SCALAR.search(text):
            self.scalar_reads += 1
        else:
            self.data_selects.append(text[:120])


class CommitCounter:
    """Counts the transactions committed on each database (local, cloud; one entry when they are the same)."""

    def __init__(self, engines: dict[str, sa.Engine]):
        self.counts = {name: 0 for name in engines}
        for name, engine in engines.items():
            sa.event.listen(engine, "commit", lambda conn, name=name: self._seen(name))

    def _seen(self, name: str) -> None:
        self.counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def generate(inst: Instance, n: int) -> None:
    first = reserve_ids(inst.storage, "NmsRecipientId", n)
    t = inst.storage.table("nms:recipient", CLOUD)
    dup = max(int(n * 0.9), 1)
    with inst.storage.write(CLOUD) as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {t.name} (iRecipientId, sEmail, iGender, sCountryCode, iBlackList, iDeleteStatus, iFolderId, "
            "iCreatedById, iModifiedById, iBoolean1, tsCreated) "
            f"SELECT {first} + range, 'u' || (range % {dup}) || '@' || CASE range % 5 WHEN 0 THEN 'mail.com' "
            "WHEN 1 THEN 'post.org' ELSE 'web.com' END, range % 3, CASE range % 4 WHEN 0 THEN 'US' WHEN 1 THEN 'DE' "
            "ELSE 'FR' END, CASE WHEN range % 10 = 0 THEN 1 ELSE 0 END, 0, 0, 0, 0, 0, "
            "TIMESTAMP '2020-01-01' + to_seconds(range) "
            f"FROM range({n})")
        countries = inst.storage.table("nms:country", CLOUD)
        conn.execute(sa.insert(countries), [{"sIsoA2": c, "sLabel": label} for c, label in
                                            (("FR", "France"), ("US", "United States"), ("DE", "Germany"))])


def workflow_xml(n: int) -> str:
    limit = max(n // 10, 1)
    return (
        '<start name="start"><transitions><i name="initial" target="query"/></transitions></start>'
        '<query name="query" schema="nms:recipient"><where>'
        "<condition expr=\"[country/@label] = 'France'\"/><condition expr=\"@blackList = 0\"/>"
        "<condition expr=\"@gender &lt;&gt; 0\"/><condition expr=\"@email LIKE '%.com'\"/>"
        '</where><transitions><result name="result" target="split"/></transitions></query>'
        f'<split name="split"><subset name="s1" limit="{limit}"><where><condition expr="@gender = 1"/></where></subset>'
        f'<subset name="s2" limit="{limit}"><where><condition expr="@gender = 2"/></where>'
        '<orderBy><node expr="@created" sortDesc="true"/></orderBy></subset>'
        f'<subset name="s3" limit="{limit // 2}"/>'
        '<transitions><s1 name="s1" target="dedup"/></transitions></split>'
        '<deduplication name="dedup" keys="@email"><transitions><result name="result" target="update"/></transitions>'
        '</deduplication>'
        '<updateData name="update" schema="nms:recipient" operation="update"><field dest="@boolean1" expr="1"/>'
        '<transitions><done name="done" target="end"/></transitions></updateData><end name="end"/>')


def hand_sql(conn: sa.Connection, n: int) -> int:
    """The same steps written by hand (what a DBA would run)."""
    limit = max(n // 10, 1)
    steps = [
        "CREATE TABLE h_q AS SELECT r.iRecipientId AS iId FROM NmsRecipient r LEFT JOIN NmsCountry c "
        "ON c.sIsoA2 = r.sCountryCode WHERE r.iRecipientId <> 0 AND c.sLabel = 'France' AND r.iBlackList = 0 "
        "AND r.iGender <> 0 AND r.sEmail LIKE '%.com'",
        f"CREATE TABLE h_s1 AS SELECT q.iId FROM h_q q JOIN NmsRecipient r ON r.iRecipientId = q.iId "
        f"WHERE r.iGender = 1 ORDER BY q.iId LIMIT {limit}",
        f"CREATE TABLE h_s2 AS SELECT q.iId FROM h_q q JOIN NmsRecipient r ON r.iRecipientId = q.iId "
        f"WHERE r.iGender = 2 AND NOT EXISTS (SELECT 1 FROM h_s1 WHERE h_s1.iId = q.iId) "
        f"ORDER BY r.tsCreated DESC, q.iId LIMIT {limit}",
        f"CREATE TABLE h_s3 AS SELECT q.iId FROM h_q q WHERE NOT EXISTS (SELECT 1 FROM h_s1 WHERE h_s1.iId = q.iId) "
        f"AND NOT EXISTS (SELECT 1 FROM h_s2 WHERE h_s2.iId = q.iId) ORDER BY q.iId LIMIT {limit // 2}",
        "CREATE TABLE h_d AS SELECT iId FROM (SELECT s.iId, row_number() OVER (PARTITION BY r.sEmail ORDER BY s.iId) rn "
        "FROM h_s1 s JOIN NmsRecipient r ON r.iRecipientId = s.iId) WHERE rn = 1",
        "UPDATE NmsRecipient SET iBoolean1 = 1 FROM h_d WHERE NmsRecipient.iRecipientId = h_d.iId",
    ]
    for table in ("h_q", "h_s1", "h_s2", "h_s3", "h_d"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    for sql in steps:
        conn.exec_driver_sql(sql)
    updated = int(conn.exec_driver_sql("SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1").scalar() or 0)
    for table in ("h_q", "h_s1", "h_s2", "h_s3", "h_d"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    return updated


def reset_flag(inst: Instance) -> None:
    with inst.storage.write(CLOUD) as conn:
        conn.exec_driver_sql("UPDATE NmsRecipient SET iBoolean1 = 0 WHERE iBoolean1 <> 0")


def drive(inst: Instance, names: list[str]) -> None:
    worker = Worker(inst, threads=1)
    while True:
        worker.run_once()
        if all(commands.find(inst, n)["iState"] in (13, 20) for n in names):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=200, help="small workflows started at once")
    parser.add_argument("--threads", type=int, default=8, help="worker threads for the small workflows")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="oc-bench-wkf-"))
    try:
        inst = Instance.open(folder, environ=ENV)
        inst.init(environ=ENV)
        t0 = time.perf_counter()
        generate(inst, args.rows)
        print(f"generated {args.rows:,} recipients in {time.perf_counter() - t0:.1f}s")
        write(inst.storage, inst.registry, '<workflow xtkschema="xtk:workflow" internalName="bench" label="bench">'
              f"<activities>{workflow_xml(args.rows)}</activities></workflow>", INTERNAL)
        counter = SelectCounter(inst.storage.engine(CLOUD))
        sql_times, wkf_times, sql_rows, wkf_rows = [], [], 0, 0
        for _ in range(args.repeat):
            reset_flag(inst)
            start = time.perf_counter()
            with inst.storage.write(CLOUD) as conn:
                sql_rows = hand_sql(conn, args.rows)
            sql_times.append(time.perf_counter() - start)
            reset_flag(inst)
            before_sel, before_rows = len(counter.data_selects), wt.ROWS_TO_PYTHON.value
            start = time.perf_counter()
            commands.start(inst, "bench", INTERNAL)
            drive(inst, ["bench"])
            wkf_times.append(time.perf_counter() - start)
            assert commands.find(inst, "bench")["iFailed"] == 0, "the benchmark workflow failed"
            with inst.storage.engine(CLOUD).connect() as conn:
                wkf_rows = int(conn.exec_driver_sql("SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1").scalar())
            data_selects = len(counter.data_selects) - before_sel
            python_rows = wt.ROWS_TO_PYTHON.value - before_rows
        assert sql_rows == wkf_rows, (sql_rows, wkf_rows)
        best_sql, best_wkf = min(sql_times), min(wkf_times)
        rows = [
            (f"query->split->dedup->update, {args.rows:,} rows", f"{best_wkf:.3f}s", f"{best_sql:.3f}s (hand SQL)",
             f"{best_wkf / best_sql:.2f}x (goal <= 1.2x)"),
            ("rows updated", f"{wkf_rows:,}", f"{sql_rows:,}", "same" if wkf_rows == sql_rows else "DIFFERENT"),
            ("rows moved through Python", f"{python_rows}", "0",
             f"{data_selects} data SELECT(s); {counter.scalar_reads} count/probe reads in all"),
        ]
        if args.small:
            names = [f"small{i}" for i in range(args.small)]
            for name in names:
                write(inst.storage, inst.registry, f'<workflow xtkschema="xtk:workflow" internalName="{name}">'
                      '<activities><start name="start"><transitions><i name="i" target="q"/></transitions></start>'
                      '<query name="q" schema="nms:recipient"><where><condition expr="@id &lt; 2000"/></where>'
                      '<transitions><r name="r" target="end"/></transitions></query><end name="end"/>'
                      '</activities></workflow>', INTERNAL)
            engines = {"local": inst.storage.engine(commands.store_of(inst).role), "cloud": inst.storage.engine(CLOUD)}
            commits = CommitCounter(engines if engines["local"] is not engines["cloud"] else {"local": engines["local"]})
            worker = Worker(inst, threads=args.threads, poll_seconds=0.05)
            worker.start()
            start = time.perf_counter()
            for name in names:
                commands.start(inst, name, INTERNAL)
            ok = wait_idle(inst, names, timeout=600)
            elapsed = time.perf_counter() - start
            worker.stop()
            per = ", ".join(f"{v / args.small:.1f} {k}" for k, v in commits.snapshot().items())
            rows.append((f"{args.small} small workflows started at once ({args.threads} threads)",
                         f"{elapsed:.2f}s", "-", "all finished" if ok else "TIMEOUT"))
            rows.append(("commits per small workflow (start command included)", per, "-", ""))
        print_table("Workflow engine (DuckDB cloud, SQLite local)", rows)
        inst.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
