"""The end-to-end workflow on every deployment shape, and through a real `opencampaign serve --demo`.

query -> split -> deduplication -> JavaScript (logs the count) -> external signal (posted through
REST) -> update data -> end; the log shows each activity's row counts.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.testclient import TestClient

from opencampaign.context import INTERNAL
from opencampaign.instance import Instance
from opencampaign.workflow import commands, model
from opencampaign.workflow.rest import routes
from opencampaign.workflow.worker import Worker

from .live_server import LiveServer
from .workflow_helpers import add_recipients, count, drive, log_text, new_instance, write_workflow

PIPELINE = (
    '<start name="start"><transitions><initial name="initial" target="query"/></transitions></start>'
    '<query name="query" schema="nms:recipient">'
    '<select><node expr="@email" alias="@email"/></select>'
    "<where><condition expr=\"@email LIKE '%{domain}'\"/>{extra}</where>"
    '<transitions><result name="result" target="split"/></transitions></query>'
    '<split name="split"><subset name="women" limit="{limit}"><where><condition expr="@gender = {gender}"/></where>'
    '<orderBy><node expr="@id"/></orderBy></subset><remainder name="rest"/>'
    '<transitions><women name="women" target="dedup"/><rest name="rest" target="end"/></transitions></split>'
    '<deduplication name="dedup" keys="@email">'
    '<transitions><result name="result" target="js"/><duplicates name="duplicates" target="end"/></transitions>'
    "</deduplication>"
    '<js name="js"><script>logInfo("deduplicated: " + vars.recCount + " recipient(s)"); vars.checked = "yes";'
    "</script><transitions><ok name=\"ok\" target=\"signal\"/></transitions></js>"
    '<signal name="signal"><parameters><parameter name="flag" type="number"/></parameters>'
    '<transitions><go name="go" target="flag"/></transitions></signal>'
    '<updateData name="flag" schema="nms:recipient" operation="update">'
    '<field dest="@boolean1" expr="$long(vars/@flag)"/>'
    '<transitions><done name="done" target="end"/></transitions></updateData>'
    '<end name="end"/>')

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:test-admin-password").decode()}


def test_end_to_end_pipeline_on_every_backend(backend_env: dict[str, str], tmp_path: Path) -> None:
    inst = new_instance(tmp_path / "e2e", backend_env)
    try:
        add_recipients(inst, 400)
        # 200 rows end with example.com; 67 of them have gender 2 (i % 3 == 2 among even i); emails are unique
        write_workflow(inst, "e2e", PIPELINE.format(domain="example.com", extra="", limit=50, gender=2))
        client = TestClient(Starlette(routes=routes(inst)))
        r = client.post("/rest/workflow/execution/e2e/commands", json={"method": "start"}, headers=AUTH)
        assert r.status_code == 200, r.text
        _drive_until(inst, lambda: "[js] ok:" in log_text(inst, "e2e"))
        href = client.get("/rest/workflow/execution/e2e", headers=AUTH).json()["activities"]["activity"]["signal"][
            "trigger"]["href"]
        r = client.post(href.split("testserver", 1)[1], json={"source": "API", "parameters": {"flag": 1}},
                        headers=AUTH)
        assert r.status_code == 200, r.text
        drive(inst, "e2e", timeout=30)
        wf = commands.find(inst, "e2e")
        text = log_text(inst, "e2e")
        assert (wf["iState"], wf["iFailed"]) == (model.FINISHED, 0), text
        for line in ("[query] result: 200 row(s)", "[split] women: 50 row(s)", "[split] rest: 150 row(s)",
                     "[dedup] result: 50 row(s)", "[dedup] duplicates: 0 row(s)", "[js] deduplicated: 50 recipient(s)",
                     "[js] ok: 50 row(s)", "[signal] go: 50 row(s)", "[flag] update: 50 row(s) of nms:recipient",
                     "[flag] done: 50 row(s)", "Workflow finished"):
            assert line in text, (line, text)
        assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1") == 50
        assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1 AND iGender = 2") == 50
        store = commands.store_of(inst)
        assert all(t["iStatus"] == model.TASK_COMPLETED for t in store.tasks(wf["iWorkflowId"]))
        # the work tables are gone, the batch markers of the update are there
        with inst.storage.engine("cloud").connect() as conn:
            import sqlalchemy as sa

            names = sa.inspect(conn).get_table_names()
        assert not [n for n in names if n.lower().startswith("wkf")], names
        # a second run works on the same databases (tables re-created, markers per task)
        commands.start(inst, "e2e", INTERNAL)
        _drive_until(inst, lambda: log_text(inst, "e2e").count("[js] ok:") == 2)
        commands.post_event(inst, "e2e", "signal", "", {"flag": "0"}, False, INTERNAL, source="API")
        drive(inst, "e2e", timeout=30)
        assert commands.find(inst, "e2e")["iState"] == model.FINISHED
        assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1") == 0
    finally:
        inst.close()


def _drive_until(inst: Instance, predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    worker = Worker(inst, threads=1, lease_seconds=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not reached:\n{log_text(inst, 'e2e')}")


def test_done_when_scenario_through_serve_demo(tmp_path: Path) -> None:
    """The issue's scenario on the embedded default: a real `serve --demo`, the signal posted with httpx."""
    data = tmp_path / "demo"
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": "test-admin-password"}
    inst = new_instance(data, env)
    write_workflow(inst, "demoFlow", PIPELINE.format(domain="example.com", extra="", limit=100, gender=1))
    inst.close()
    with LiveServer(data, "--demo", env={**env, "OPENCAMPAIGN_WORKFLOW__POLL_SECONDS": "0.05"}) as server:
        base = f"{server.url}/rest/workflow/execution/demoFlow"
        with httpx.Client(headers=AUTH, timeout=30) as http:
            r = http.post(f"{base}/commands", json={"method": "start"})
            assert r.status_code == 200, r.text
            href = http.get(base).json()["activities"]["activity"]["signal"]["trigger"]["href"]
            assert href.startswith(server.url)
            deadline = time.monotonic() + 60
            while http.get(base).json()["state"] != "started" or not _waiting_signal(data):
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.1)
            r = http.post(href, json={"source": "API", "parameters": {"flag": 1}})
            assert r.status_code == 200, r.text
            while (body := http.get(base).json())["state"] != "finished":
                assert time.monotonic() < deadline, (body, server.log.read_text())
                time.sleep(0.1)
            assert body["failed"] is False
    inst = Instance.open(data, environ=env)
    try:
        text = log_text(inst, "demoFlow")
        counts = {}
        for line in text.splitlines():
            for prefix in ("[query] result: ", "[split] women: ", "[dedup] result: ", "[js] ok: ", "[signal] go: ",
                           "[flag] done: "):
                if line.startswith(prefix):
                    counts[prefix.split("]")[0][1:]] = int(line[len(prefix):].split()[0])
        assert set(counts) == {"query", "split", "dedup", "js", "signal", "flag"}, text
        assert counts["query"] > counts["split"] == 100 >= counts["dedup"] > 0, counts
        assert counts["dedup"] == counts["js"] == counts["signal"] == counts["flag"], counts
        assert f"[js] deduplicated: {counts['dedup']} recipient(s)" in text
        assert "Workflow finished" in text
        assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean1 = 1") == counts["flag"]
    finally:
        inst.close()


def _waiting_signal(data: Path) -> bool:
    """The server log is not parsed: the signal task is waiting when the log says the JS activity is done."""
    return _log_has(data, "[js] ok:")


def _log_has(data: Path, needle: str) -> bool:
    # the embedded local database (SQLite) can be read while the server runs
    import sqlite3

    db = next(data.glob("**/local*.db"), None) or next(data.glob("**/*.sqlite"), None)
    if db is None:
        return False
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT sActivity, mMessage FROM XtkWorkflowLog").fetchall()
    return any(f"[{a}] {m}".startswith(needle) for a, m in rows)
