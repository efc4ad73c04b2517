"""Worker: leases, take-over after a crash (a real subprocess killed with SIGKILL), concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from opencampaign.context import INTERNAL
from opencampaign.instance import Instance
from opencampaign.workflow import commands, model
from opencampaign.workflow.store import Store
from opencampaign.workflow.worker import Worker, wait_idle

from .workflow_helpers import ENV, add_recipients, drive, log_text, new_instance, write_workflow

WORKER = ("import argparse, sys\n"
          "from opencampaign.workflow.cli import add_arguments\n"
          "p = argparse.ArgumentParser(); add_arguments(p.add_subparsers())\n"
          "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")
N = 20000


def spawn(data_dir: Path, env: dict[str, str], **extra: str) -> subprocess.Popen:
    """`opencampaign worker` as a separate process (with the embedded DuckDB, no other process may hold it)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    full = {**base, **ENV, **env, "OPENCAMPAIGN_WORKFLOW__LEASE_SECONDS": "2", **extra}
    return subprocess.Popen([sys.executable, "-c", WORKER, "worker", "--data-dir", str(data_dir), "--threads", "1"],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def prepare(tmp_path: Path, batch: str, env: dict[str, str]) -> Path:
    data = tmp_path / "crash"
    inst = new_instance(data, env)
    add_recipients(inst, N)
    write_workflow(inst, "crashy",
                   '<start name="start"><transitions><i name="i" target="q"/></transitions></start>'
                   '<query name="q" schema="nms:recipient"><where><condition expr="@id &gt;= 1000"/></where>'
                   '<transitions><r name="r" target="upd"/></transitions></query>'
                   f'<updateData name="upd" schema="nms:recipient" batchSize="{batch}">'
                   '<field dest="@gender" expr="@gender + 3"/><transitions><r name="r" target="end"/></transitions>'
                   '</updateData><end name="end"/>')
    commands.start(inst, "crashy", INTERNAL)
    inst.close()
    return data


def finish_and_check(data: Path, env: dict[str, str]) -> str:
    second = spawn(data, env)
    local = Instance.open(data, environ={**ENV, **env})  # local database only while the worker owns the cloud one
    try:
        try:
            wait_for(lambda: commands.find(local, "crashy")["iState"] == model.FINISHED, 90)
        except AssertionError:
            raise AssertionError(f"not finished:\n{log_text(local, 'crashy')}") from None
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
        if second.poll() is None:
            second.kill()
    text = log_text(local, "crashy")
    with local.storage.engine("cloud").connect() as conn:
        genders = dict(conn.exec_driver_sql(
            "SELECT iGender >= 6, count(*) FROM NmsRecipient WHERE iRecipientId >= 1000 GROUP BY 1").all())
    assert commands.find(local, "crashy")["iFailed"] == 0
    local.close()
    assert genders == {False: N}, genders  # every row updated exactly once (gender + 3, never + 6)
    return text


def test_sigkill_during_update_data_never_applies_a_batch_twice(tmp_path: Path, backend_env: dict[str, str]) -> None:
    data = prepare(tmp_path, "2000", backend_env)
    first = spawn(data, backend_env, OPENCAMPAIGN_WORKFLOW_TEST_BATCH_PAUSE="0.3")
    local = Instance.open(data, environ={**ENV, **backend_env})
    wait_for(lambda: "Batch 3/10 committed" in log_text(local, "crashy"))
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    local.close()
    text = finish_and_check(data, backend_env)
    assert "Task interrupted: executed again" in text
    assert "Batch 10/10 committed" in text
    assert text.count("Batch 1/10 committed") == 1  # skipped, not applied again, after the take-over


def test_sigkill_during_query_resumes_from_last_completed_task(tmp_path: Path, backend_env: dict[str, str]) -> None:
    data = prepare(tmp_path, "0", backend_env)
    first = spawn(data, backend_env, OPENCAMPAIGN_WORKFLOW_TEST_TASK_PAUSE="q:30")
    local = Instance.open(data, environ={**ENV, **backend_env})
    store = Store(local.storage)
    wid = commands.find(local, "crashy")["iWorkflowId"]
    wait_for(lambda: any(t["sActivity"] == "q" and t["iStatus"] == model.TASK_RUNNING for t in store.tasks(wid)))
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    local.close()
    text = finish_and_check(data, backend_env)
    assert "[q] Task interrupted: executed again" in text
    assert text.count("[start] i: activated") == 1  # the completed start task did not run again
    assert "[q] r: 20000 row(s)" in text


def test_lease_is_exclusive_and_expires(tmp_path: Path, backend_env: dict[str, str]) -> None:
    inst = new_instance(tmp_path / "lease", backend_env)
    write_workflow(inst, "w", '<start name="start"/>')
    commands.start(inst, "w", INTERNAL)
    store = commands.store_of(inst)
    wid = commands.find(inst, "w")["iWorkflowId"]
    assert store.acquire(wid, "a", 300)
    assert not store.acquire(wid, "b", 300)
    time.sleep(0.4)
    assert store.acquire(wid, "b", 10_000)  # expired: taken over
    with store.write() as conn:
        assert not store.renew(conn, wid, "a", 1000)  # the old owner is fenced off
    store.release(wid, "b", None)
    inst.close()


def test_event_posted_while_the_worker_holds_the_lease_is_not_lost(tmp_path: Path, backend_env: dict[str, str]
                                                                   ) -> None:
    """The worker decided "nothing due" just before an API signal arrived: releasing must keep the wake-up."""
    inst = new_instance(tmp_path / "poke", backend_env)
    write_workflow(inst, "w", '<signal name="signal"><transitions><go name="go" target="end"/></transitions></signal>'
                   '<end name="end"/>')
    commands.start(inst, "w", INTERNAL)
    store = commands.store_of(inst)
    wid = commands.find(inst, "w")["iWorkflowId"]
    worker = Worker(inst, threads=1, lease_seconds=30)
    while worker.run_once():  # until the signal task waits
        pass
    assert wid not in store.candidates()  # waiting for its signal, nothing due
    assert store.acquire(wid, "worker", 10_000)
    seen = store.pokes(wid)
    commands.post_event(inst, "w", "signal", "", {}, True, INTERNAL, source="API")
    store.release(wid, "worker", None, seen)  # the run computed "no wake" before the event came in
    assert wid in store.candidates()
    drive(inst, "w", timeout=10)
    assert commands.find(inst, "w")["iState"] == model.FINISHED
    inst.close()


def test_many_workflows_in_parallel_threads(tmp_path: Path, backend_env: dict[str, str]) -> None:
    inst = new_instance(tmp_path / "many", backend_env)
    add_recipients(inst, 100)
    names = [f"small{i}" for i in range(30)]
    for name in names:
        write_workflow(inst, name, '<start name="start"><transitions><i name="i" target="q"/></transitions></start>'
                       '<query name="q" schema="nms:recipient"><where><condition expr="@gender = 1"/></where>'
                       '<transitions><r name="r" target="end"/></transitions></query><end name="end"/>')
        commands.start(inst, name, INTERNAL)
    worker = Worker(inst, threads=4)
    worker.start()
    try:
        assert wait_idle(inst, names, timeout=60)
    finally:
        worker.stop()
    store = commands.store_of(inst)
    for name in names:
        wid = commands.find(inst, name)["iWorkflowId"]
        assert commands.find(inst, name)["iState"] == model.FINISHED
        tasks = store.tasks(wid)
        assert sorted(t["sActivity"] for t in tasks) == ["end", "q", "start"]  # each task ran once
    with inst.storage.engine(store.role).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.lease).where(
            store.lease.c.owner.is_not(None))).scalar() == 0
    inst.close()


def test_separate_worker_processes_on_postgresql(tmp_path: Path, pg_databases) -> None:  # noqa: ANN001
    """Two `opencampaign worker` processes share PostgreSQL databases: every task runs once, all finish."""
    env = {"OPENCAMPAIGN_LOCAL_DB": pg_databases.new(), "OPENCAMPAIGN_CLOUD_DB": pg_databases.new()}
    inst = new_instance(tmp_path / "procs", env)
    add_recipients(inst, 300)
    names = [f"p{i}" for i in range(24)]
    for i, name in enumerate(names):  # workflow i updates its own 12 recipients
        write_workflow(inst, name, '<start name="start"><transitions><i name="i" target="q"/></transitions></start>'
                       f'<query name="q" schema="nms:recipient"><where><condition expr="@id &gt;= {1000 + 12 * i} '
                       f'AND @id &lt; {1012 + 12 * i}"/></where>'
                       '<transitions><r name="r" target="u"/></transitions></query>'
                       '<updateData name="u" schema="nms:recipient"><field dest="@boolean3" expr="@boolean3 + 1"/>'
                       '<transitions><r name="r" target="end"/></transitions></updateData><end name="end"/>')
        commands.start(inst, name, INTERNAL)
    workers = [spawn(tmp_path / "procs", env, OPENCAMPAIGN_WORKFLOW__POLL_SECONDS="0.05") for _ in range(2)]
    try:
        wait_for(lambda: all(commands.find(inst, n)["iState"] in (model.FINISHED, model.PAUSED) for n in names), 120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    store = commands.store_of(inst)
    for name in names:
        wf = commands.find(inst, name)
        assert wf["iFailed"] == 0, log_text(inst, name)
        assert sorted(t["sActivity"] for t in store.tasks(wf["iWorkflowId"])) == ["end", "q", "start", "u"]
    with inst.storage.engine("cloud").connect() as conn:
        # every recipient incremented exactly once: no update data ran twice
        assert dict(conn.exec_driver_sql("SELECT iBoolean3, count(*) FROM NmsRecipient "
                                         "WHERE iRecipientId >= 1000 AND iRecipientId < 1288 GROUP BY 1").all()) == {1: 288}
    inst.close()
