"""xtk:workflow SOAP methods (through the method registry), REST execution routes and the CLI."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.testclient import TestClient

import opencampaign.methods  # noqa: F401 - registers the implementations
from opencampaign.context import INTERNAL
from opencampaign.methods.registry import REGISTRY, MethodCall, MethodError
from opencampaign.workflow import commands, model
from opencampaign.workflow.cli import add_arguments
from opencampaign.workflow.rest import routes

from .workflow_helpers import add_recipients, drive, log_text, new_instance, write_workflow

SIGNAL = ('<signal name="signal"><parameters><parameter name="contentURL" type="string"/>'
          '<parameter name="count" type="number"/></parameters>'
          '<transitions><ok name="ok" target="t"/></transitions></signal>'
          '<test name="t" expr="$(vars/@contentURL) = \'http://x\' AND $long(vars/@count) = 3">'
          '<transitions><true name="true" target="end"/></transitions></test><end name="end"/>')


@pytest.fixture()
def inst(tmp_path: Path):
    instance = new_instance(tmp_path / "api")
    add_recipients(instance, 50)
    yield instance
    instance.close()


def call(inst, name: str, **params):  # noqa: ANN001, ANN201
    schema = inst.registry.get("xtk:workflow")
    return REGISTRY.call(MethodCall(inst, INTERNAL, schema, schema.method(name), None, params))


def test_soap_methods(inst) -> None:
    write_workflow(inst, "soap", SIGNAL)
    call(inst, "StartWithParameters", workflowId="soap", parameters=etree.fromstring('<variables mode="x"/>'))
    assert commands.find(inst, "soap")["iState"] == model.START_REQUESTED
    assert 'mode="x"' in commands.find(inst, "soap")["mData"]
    with pytest.raises(AssertionError):
        drive(inst, "soap", timeout=0.3)
    wid = str(commands.find(inst, "soap")["iWorkflowId"])
    call(inst, "PostEvent", workflowId=wid, activity="signal", transition="",
         parameters=etree.fromstring('<variables contentURL="http://x" count="3"/>'), complete=True)
    drive(inst, "soap", timeout=10)
    assert "[t] true: activated" in log_text(inst, "soap")
    with pytest.raises(MethodError) as info:
        call(inst, "Start", workflowId="nope")
    assert "does not exist" in str(info.value)
    call(inst, "Kill", workflowId="soap")
    assert commands.find(inst, "soap")["iState"] == model.FINISHED


def test_start_refuses_bad_definition_via_soap(inst) -> None:
    write_workflow(inst, "bad", '<start name="start"><transitions><i name="i" target="ghost"/></transitions></start>')
    with pytest.raises(MethodError) as info:
        call(inst, "Start", workflowId="bad")
    assert "Activity 'start'" in str(info.value) and "'ghost'" in str(info.value)


def test_rest_commands_and_signal(inst) -> None:
    write_workflow(inst, "rest", SIGNAL)
    app = Starlette(routes=routes(inst))
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:test-admin-password").decode()}
    client = TestClient(app)
    r = client.post("/rest/workflow/execution/rest/commands", json={"method": "start"}, headers=auth)
    assert r.status_code == 200, r.text
    drive_some(inst)
    r = client.get("/rest/workflow/execution/rest", headers=auth)
    body = r.json()
    assert body["state"] == "started"
    href = body["activities"]["activity"]["signal"]["trigger"]["href"]
    path = href.split("testserver", 1)[1]
    bad = client.post(path, json={"source": "API", "parameters": {"other": "x"}}, headers=auth)
    assert bad.status_code == 500 and "'other' parameter isn't defined in signal activity" in bad.json()["message"]
    assert client.post(path, json={"parameters": {}}, headers=auth).status_code == 400  # source is mandatory
    typed = client.post(path, json={"source": "API", "parameters": {"count": "3"}}, headers=auth)
    assert typed.status_code == 500 and "type number" in typed.json()["message"]
    big = client.post(path, content=b'{"source":"API","x":"' + b"a" * 70000 + b'"}', headers=auth)
    assert big.status_code == 413
    ok = client.post(path, json={"source": "API", "parameters": {"contentURL": "http://x", "count": 3}}, headers=auth)
    assert ok.status_code == 200, ok.text
    again = client.post(path, json={"source": "API", "parameters": {}}, headers=auth)
    assert again.status_code == 429  # not more often than every 10 minutes
    drive_some(inst)  # the signal task keeps listening (REST events do not complete it)
    assert "[t] true: activated" in log_text(inst, "rest")
    assert client.post("/rest/workflow/execution/rest/commands", json={"method": "jump"}, headers=auth).status_code == 400
    assert client.get("/rest/workflow/execution/rest").status_code == 401


def drive_some(inst) -> None:  # noqa: ANN001
    with pytest.raises(AssertionError):
        drive(inst, "rest", timeout=0.3)


def test_cli_start_run_list_log(inst, capsys) -> None:  # noqa: ANN001
    import argparse

    write_workflow(inst, "cli", '<start name="start"><transitions><i name="i" target="q"/></transitions></start>'
                   '<query name="q" schema="nms:recipient"><transitions><r name="r" target="end"/></transitions>'
                   '</query><end name="end"/>')
    data = str(inst.data_dir)
    inst.close()
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers())

    def cli(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert cli("workflow", "start", "cli", "--data-dir", data, "--run") == 0
    assert cli("workflow", "list", "--data-dir", data) == 0
    assert cli("workflow", "log", "cli", "--data-dir", data) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "[q] r: 50 row(s)" in out
    assert cli("workflow", "pause", "missing", "--data-dir", data) == 1
