"""Workflow engine on the embedded databases (SQLite local, DuckDB cloud): activities alone and combined."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencampaign.context import INTERNAL
from opencampaign.workflow import commands, model
from opencampaign.workflow.activities import script

from .conftest import BACKENDS, PG_AVAILABLE, PgDatabases
from .workflow_helpers import add_recipients, count, log_text, new_instance, run, work_tables, write_workflow

START = '<start name="start"><transitions><initial name="initial" target="{}"/></transitions></start>'


@pytest.fixture(scope="module", params=BACKENDS)
def inst(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One instance per deployment shape (see `backend_env`): embedded, PostgreSQL, single SQLite / PostgreSQL."""
    env: dict[str, str] = {}
    dbs = None
    if "postgres" in request.param:
        if not PG_AVAILABLE:
            pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
        dbs = PgDatabases()
        env["OPENCAMPAIGN_LOCAL_DB"] = dbs.new()
        if request.param == "postgres":
            env["OPENCAMPAIGN_CLOUD_DB"] = dbs.new()
    if request.param.startswith("single"):
        env["OPENCAMPAIGN_SINGLE_DATABASE"] = "1"
    instance = new_instance(tmp_path_factory.mktemp("wkf"), env)
    add_recipients(instance, 1000)
    yield instance
    instance.close()
    if dbs is not None:
        dbs.drop_all()


def query(name: str, target: str, where: str = "", extra: str = "", select: str = "") -> str:
    return (f'<query name="{name}" schema="nms:recipient" {extra}><select>{select}</select><where>{where}</where>'
            f'<transitions><result name="result" target="{target}"/></transitions></query>')


def finished(rows: list[dict]) -> None:
    for row in rows:
        assert (row["iState"], row["iFailed"]) == (model.FINISHED, 0), (row["sInternalName"], _errors(row))


def test_start_query_split_update_end(inst) -> None:
    write_workflow(inst, "pipeline", START.format("q") + query(
        "q", "split", "<condition expr=\"@email LIKE '%example.com'\"/><condition expr=\"[country/@isoA2] = 'FR'\"/>") +
        '<split name="split"><subset name="g1" limit="40"><where><condition expr="@gender = 1"/></where></subset>'
        '<subset name="g2" limit="30"><orderBy><node expr="@id" sortDesc="true"/></orderBy></subset><remainder name="rest"/>'
        '<transitions><g1 name="g1" target="upd"/><g2 name="g2" target="end"/><rest name="rest" target="end"/></transitions>'
        '</split><updateData name="upd" schema="nms:recipient"><field dest="@boolean2" expr="1"/>'
        '<transitions><done name="done" target="end"/></transitions></updateData><end name="end"/>')
    finished(run(inst, "pipeline"))
    text = log_text(inst, "pipeline")
    # FR = id%4 == 0, all of them even: 250 rows; a third have gender 1 (i%3 == 1)
    assert "[q] result: 250 row(s) in wkf" in text
    assert "[split] g1: 40 row(s)" in text and "[split] g2: 30 row(s)" in text and "[split] rest: 180 row(s)" in text
    assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean2 = 1 AND iGender = 1") == 40
    assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iBoolean2 = 1") == 40
    # work tables dropped at the end
    assert work_tables(inst) == []
    wf = commands.find(inst, "pipeline")
    assert wf["tsLastStart"] is not None and wf["tsLastEnd"] is not None
    tasks = commands.store_of(inst).tasks(wf["iWorkflowId"])
    assert {t["sActivity"] for t in tasks} == {"start", "q", "split", "upd", "end"}
    assert all(t["iStatus"] == model.TASK_COMPLETED for t in tasks)


def test_query_extra_columns_enrichment_dedup(inst) -> None:
    write_workflow(inst, "enrich", START.format("q") + query(
        "q", "enr", "<condition expr=\"@id &lt; 1100\"/>", select='<node expr="Lower(@email)" alias="@mail"/>') +
        '<enrichment name="enr"><node expr="[country/@isoA2]" alias="@cc"/>'
        '<transitions><result name="result" target="dd"/></transitions></enrichment>'
        '<deduplication name="dd"><key column="cc"/><orderBy><node expr="@id" sortDesc="true"/></orderBy>'
        '<transitions><result name="result" target="keep"/><duplicates name="duplicates" target="end"/></transitions>'
        '</deduplication><test name="keep" expr="$long(vars/@recCount) = 2">'
        '<transitions><true name="true" target="end"/><false name="false" target="end"/></transitions></test>'
        '<end name="end"/>', keepResult="true")
    finished(run(inst, "enrich"))
    text = log_text(inst, "enrich")
    assert "[dd] result: 2 row(s)" in text and "[dd] duplicates: 98 row(s)" in text
    assert "[keep] true: 2 row(s)" in text
    # keepResult: the interim populations survive the end
    assert work_tables(inst) != []


def test_sets_fork_andjoin(inst) -> None:
    acts = ('<start name="start"><transitions><a name="a" target="fork"/></transitions></start>'
            '<fork name="fork"><transitions><x name="x" target="q1"/><y name="y" target="q2"/><z name="z" target="q3"/>'
            '</transitions></fork>' +
            query("q1", "u", '<condition expr="@id &lt; 1100"/>') +
            query("q2", "u", '<condition expr="@id &gt;= 1050 AND @id &lt; 1200"/>') +
            query("q3", "ex", '<condition expr="@gender = 0"/>') +
            '<union name="u"><transitions><r name="r" target="f2"/></transitions></union>'
            '<fork name="f2"><transitions><r1 name="r1" target="i"/><r2 name="r2" target="ex"/></transitions></fork>'
            '<intersection name="i"><transitions><r name="r" target="j"/></transitions></intersection>'
            '<exclusion name="ex" primary="f2"><transitions><r name="r" target="j"/></transitions></exclusion>'
            '<andjoin name="j"><transitions><r name="r" target="end"/></transitions></andjoin><end name="end"/>')
    # the intersection has a single input here: it is the union itself
    acts = acts.replace('<r1 name="r1" target="i"/>', '<r1 name="r1" target="i"/>')
    write_workflow(inst, "sets", acts)
    finished(run(inst, "sets"))
    text = log_text(inst, "sets")
    assert "[u] r: 200 row(s)" in text
    assert "[i] r: 200 row(s)" in text
    assert "[ex] r: 133 row(s)" in text  # ids 1000..1199 minus gender 0 (67 of them)
    assert "[j] r: activated -> end" in text or "[j] r: 200 row(s)" in text


def test_save_audience_then_query_it(inst) -> None:
    write_workflow(inst, "save", START.format("q") + query("q", "sa", '<condition expr="@id &lt; 1010"/>') +
                   '<saveAudience name="sa" audience="first10" label="First ten">'
                   '<transitions><r name="r" target="end"/></transitions></saveAudience><end name="end"/>')
    write_workflow(inst, "reuse", START.format("q") + query("q", "end", '<condition expr="@gender = 0"/>',
                                                               extra='audience="first10"') + '<end name="end"/>')
    finished(run(inst, "save"))
    finished(run(inst, "save"))  # idempotent: same members
    assert count(inst, "SELECT count(*) FROM NmsRcpGrpRel r JOIN NmsGroup g ON g.iGroupId = r.iRcpGroupId "
                       "WHERE g.sName = 'first10'") == 10
    finished(run(inst, "reuse"))
    assert "[q] result: 4 row(s)" in log_text(inst, "reuse")  # 1000, 1003, 1006, 1009


def test_update_data_insert_upsert_delete(inst) -> None:
    write_workflow(inst, "ups", START.format("q") + query("q", "ins", '<condition expr="@id &lt; 1005"/>',
                                                             select='<node expr="@email" alias="@email"/>') +
                   '<updateData name="ins" schema="nms:recipient" operation="upsert">'
                   '<key dest="@email" expr="\'copy-\' + @email"/><field dest="@gender" expr="2"/>'
                   '<transitions><r name="r" target="del"/></transitions></updateData>'
                   '<updateData name="del" schema="nms:recipient" operation="delete"><key dest="@email" column="email"/>'
                   '<transitions><r name="r" target="end"/></transitions></updateData><end name="end"/>')
    finished(run(inst, "ups"))
    assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE sEmail LIKE 'copy-%' AND iGender = 2") == 5
    assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE iRecipientId < 1005 AND iRecipientId > 0") == 0
    finished(run(inst, "ups"))  # second run: the copies are updated, not inserted again
    assert count(inst, "SELECT count(*) FROM NmsRecipient WHERE sEmail LIKE 'copy-%'") == 5


def test_variables_and_start_with_parameters(inst) -> None:
    write_workflow(inst, "vars", START.format("q") + query(
        "q", "t", '<condition expr="@id &gt;= 1500 AND @id &lt; $long(instance/vars/@maxId)"/>') +
        '<test name="t" expr="$long(vars/@recCount) &gt; 5 AND $(instance/vars/@mode) = \'full\'">'
        '<transitions><true name="true" target="end"/><false name="false" target="end"/></transitions></test>'
        '<end name="end"/>')
    commands.start(inst, "vars", INTERNAL, variables={"maxId": "1510", "mode": "full"})
    finished(run(inst, "vars", start=False))
    assert "[t] true: 10 row(s)" in log_text(inst, "vars")
    memo = commands.find(inst, "vars")["mData"]
    assert 'maxId="1510"' in memo and "<activities>" in memo


def test_javascript_activity_pluggable(inst) -> None:
    seen = {}

    def runner(source: str, env: dict) -> None:
        seen["source"] = source
        env["vars"]["fromJs"] = "42"
        env["instance_vars"]["counter"] = "1"
        env["log"]("hello from js")

    write_workflow(inst, "js", START.format("js") + '<js name="js"><script>vars.fromJs = 42</script>'
                   '<transitions><ok name="ok" target="t"/></transitions></js>'
                   '<test name="t" expr="$long(vars/@fromJs) = 42"><transitions><true name="true" target="end"/>'
                   '</transitions></test><end name="end"/>')
    script.set_runner(runner)
    try:
        finished(run(inst, "js"))
    finally:
        script.set_runner(None)
    assert seen["source"] == "vars.fromJs = 42"
    text = log_text(inst, "js")
    assert "hello from js" in text and "[t] true: activated" in text
    assert 'counter="1"' in commands.find(inst, "js")["mData"]


def test_activity_error_pauses_only_that_workflow(inst) -> None:
    write_workflow(inst, "bad", START.format("q") + query("q", "end", "<condition expr=\"@email = 1 +\"/>") +
                   '<end name="end"/>')
    write_workflow(inst, "good", START.format("q") + query("q", "end", '<condition expr="@id = 1001"/>') +
                   '<end name="end"/>')
    bad, good = run(inst, "bad", "good")
    assert (bad["iState"], bad["iFailed"]) == (model.PAUSED, 1)
    finished([good])
    text = log_text(inst, "bad")
    assert "Activity 'q'" in text and "Unable to parse expression" in text
    tasks = commands.store_of(inst).tasks(bad["iWorkflowId"])
    assert any(t["iStatus"] == model.TASK_FAILED and t["mError"] for t in tasks)


@pytest.mark.parametrize(("activities", "message"), [
    (START.format("x") + '<frobnicate name="x"/>', "Activity 'x': unknown activity type 'frobnicate'"),
    (START.format("nowhere"), "Activity 'start': transition 'initial' leads to activity 'nowhere'"),
    (START.format("q") + query("q", "end", extra="").replace("nms:recipient", "nms:nothing") + '<end name="end"/>',
     "Activity 'q': unknown schema 'nms:nothing'"),
    ('<end name="end"/>', "no initial activity"),
])
def test_bad_definitions_refused_at_start(inst, activities: str, message: str) -> None:
    write_workflow(inst, "broken", activities)
    with pytest.raises(commands.CommandError) as info:
        commands.start(inst, "broken", INTERNAL)
    assert message in str(info.value)
    assert commands.find(inst, "broken")["iState"] == model.EDITION


def test_wait_scheduler_and_signal(inst) -> None:
    write_workflow(inst, "sig", START.format("w") +
                   '<wait name="w" duration="0.2s"><transitions><ok name="ok" target="end"/></transitions></wait>'
                   '<signal name="signal"><transitions><ok name="ok" target="t"/></transitions></signal>'
                   '<test name="t" expr="$(vars/@color) = \'blue\'"><transitions><true name="true" target="end"/>'
                   '</transitions></test><scheduler name="sch" once="2000-01-01T00:00:00Z">'
                   '<transitions><go name="go" target="end"/></transitions></scheduler><end name="end"/>')
    commands.start(inst, "sig", INTERNAL)
    from .workflow_helpers import drive

    with pytest.raises(AssertionError):
        drive(inst, "sig", timeout=0.6)  # the signal waits
    commands.post_event(inst, "sig", "signal", "", {"color": "blue"}, True, INTERNAL)
    drive(inst, "sig", timeout=10)
    text = log_text(inst, "sig")
    assert "[w] ok: activated" in text and "[sch] go: activated" in text and "[t] true: activated" in text
    finished([commands.find(inst, "sig")])


def test_pause_resume_stop(inst) -> None:
    write_workflow(inst, "ctl", START.format("w") +
                   '<wait name="w" duration="1h"><transitions><ok name="ok" target="end"/></transitions></wait>'
                   '<end name="end"/>')
    from .workflow_helpers import drive

    commands.start(inst, "ctl", INTERNAL)
    with pytest.raises(AssertionError):
        drive(inst, "ctl", timeout=0.3)
    commands.pause(inst, "ctl", INTERNAL)
    drive(inst, "ctl", timeout=5)
    assert commands.find(inst, "ctl")["iState"] == model.PAUSED
    commands.resume(inst, "ctl", INTERNAL)
    with pytest.raises(AssertionError):
        drive(inst, "ctl", timeout=0.3)
    assert commands.find(inst, "ctl")["iState"] == model.STARTED
    commands.stop(inst, "ctl", INTERNAL)
    drive(inst, "ctl", timeout=5)
    assert commands.find(inst, "ctl")["iState"] == model.FINISHED
    assert "Workflow stopped" in log_text(inst, "ctl")


def test_schedule_next_run() -> None:
    from lxml import etree

    from opencampaign.workflow.activities.schedule import next_run, parse_duration, parse_schedule

    base = 1_700_000_000_000  # 2023-11-14T22:13:20Z
    daily = parse_schedule(etree.fromstring('<scheduler daily="08:30" timezone="Europe/Paris"/>'))
    assert next_run(daily, base) == 1_700_033_400_000  # 2023-11-15 07:30Z
    cron = parse_schedule(etree.fromstring('<scheduler cron="*/15 * * * *"/>'))
    assert next_run(cron, base) == 1_700_000_100_000  # 22:15Z
    weekly = parse_schedule(etree.fromstring('<scheduler weekly="mon 09:00"/>'))
    assert next_run(weekly, base) == 1_700_470_800_000  # Monday 2023-11-20 09:00Z
    assert parse_duration("PT1H30M") == 5400 and parse_duration("250ms") == 0.25


def test_data_api_can_create_and_read(inst: Path) -> None:
    """Workflows are ordinary xtk:workflow entities: Write creates them, a queryDef reads state and log."""
    from opencampaign.query.querydef import execute_query

    write_workflow(inst, "viaapi", START.format("end") + '<end name="end"/>')
    finished(run(inst, "viaapi"))
    out = execute_query(inst.storage, inst.registry,
                        '<queryDef schema="xtk:workflowLog" operation="select"><select><node expr="@message"/></select>'
                        '<where><condition expr="[workflow/@internalName] = \'viaapi\'"/></where></queryDef>', INTERNAL)
    messages = [e.get("message") for e in out]
    assert "Workflow finished" in messages


def _errors(row: dict) -> list[str]:
    return [t["mError"] for t in _store_tasks(row) if t["mError"]]


def _store_tasks(row: dict) -> list[dict]:
    from opencampaign.workflow.commands import _stores

    for store in _stores.values():
        tasks = store.tasks(row["iWorkflowId"])
        if tasks:
            return tasks
    return []
