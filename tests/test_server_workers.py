"""`serve --workers 2` on single-database SQLite: one port, two processes sharing the SQLite files.

A session opened through one worker is usable through the other, a Logoff on one is refused at once
by the other, writes from both workers get unique ids, and the embedded default (DuckDB) refuses
several workers. The worker that answered is told by the prefix of the `x-request-id` it generated
(its process id).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .live_server import LiveServer
from .test_soap import ADMIN_PASSWORD, Reply, SoapClient, str_param

GET_OPERATOR = ('<queryDef schema="xtk:operator" operation="get"><select><node expr="@id"/><node expr="@name"/>'
                '</select><where><condition expr="@name = \'admin\'"/></where></queryDef>')


def worker_of(response: httpx.Response) -> str:
    return response.headers["x-request-id"].split("-")[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("workers") / "instance"
    env = {"OPENCAMPAIGN_SINGLE_DATABASE": "1", "OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "OPENCAMPAIGN_SERVER__LOG_LEVEL": "warning"}
    with LiveServer(data, "--workers", "2", env=env) as live:
        yield live


@pytest.fixture
def pair(server: LiveServer) -> Iterator[tuple[SoapClient, SoapClient]]:
    """Two keep-alive clients, each connected to a different worker."""
    found: dict[str, SoapClient] = {}
    spare: list[SoapClient] = []
    for _ in range(300):
        client = SoapClient(server.url)
        worker = worker_of(client.http.get("/r/test"))
        if worker in found:
            spare.append(client)
        else:
            found[worker] = client
        if len(found) == 2:
            break
    for client in spare:
        client.close()
    assert len(found) == 2, "300 connections all reached the same worker"
    first, second = found.values()
    yield first, second
    first.close()
    second.close()


def call_on(client: SoapClient, worker: str, action: str, params: str = "") -> Reply:
    reply = client.call(action, params)
    assert worker_of(reply.response) == worker, "the keep-alive connection moved to another worker"
    return reply


def test_a_session_opened_on_one_worker_works_on_the_other(pair: tuple[SoapClient, SoapClient]):
    one, other = pair
    one_id, other_id = worker_of(one.http.get("/r/test")), worker_of(other.http.get("/r/test"))
    assert one.logon().fault is None
    other.token, other.security = one.token, one.security
    for client, worker in ((one, one_id), (other, other_id)):
        reply = call_on(client, worker, "xtk:queryDef#ExecuteQuery",
                        f'<document xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
                        f"{GET_OPERATOR}</document>")
        assert reply.fault is None and 'name="admin"' in reply.text, reply.text
        assert call_on(client, worker, "xtk:session#GetUserInfo").fault is None


def test_a_logoff_on_one_worker_is_refused_at_once_by_the_other(pair: tuple[SoapClient, SoapClient]):
    one, other = pair
    one_id, other_id = worker_of(one.http.get("/r/test")), worker_of(other.http.get("/r/test"))
    assert one.logon().fault is None
    other.token, other.security = one.token, one.security
    query = (f'<document xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
             f"{GET_OPERATOR}</document>")
    # Both workers now hold the session in their caches (a read on the event loop, a thread call).
    for client, worker in ((one, one_id), (other, other_id)):
        assert call_on(client, worker, "xtk:queryDef#ExecuteQuery", query).fault is None
        assert call_on(client, worker, "xtk:session#GetOption", str_param("name", "x")).fault is None
    assert call_on(one, one_id, "xtk:session#Logoff").fault is None
    assert call_on(other, other_id, "xtk:queryDef#ExecuteQuery", query).code == "XSV-350008"
    assert call_on(other, other_id, "xtk:session#GetOption", str_param("name", "x")).code == "XSV-350008"
    assert call_on(one, one_id, "xtk:queryDef#ExecuteQuery", query).code == "XSV-350008"


def test_writes_from_both_workers_get_unique_ids(server: LiveServer, pair: tuple[SoapClient, SoapClient]):
    one, _ = pair
    assert one.logon().fault is None
    token, security = one.token, one.security

    def write(i: int) -> str:
        client = SoapClient(server.url)  # a new connection each time: writes spread over both workers
        client.token, client.security = token, security
        try:
            reply = client.write(f'<recipient xtkschema="nms:recipient" _operation="insert" '
                                 f'email="spread{i}@example.com" lastName="Spread"/>')
            assert reply.fault is None, reply.text
            return worker_of(reply.response)
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        writers = list(pool.map(write, range(60)))
    assert len(set(writers)) == 2, f"all writes reached one worker: {set(writers)}"
    reply = one.query('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select>'
                      '<where><condition expr="@lastName = \'Spread\'"/></where></queryDef>')
    ids = [row.get("id") for row in reply.outputs[0][0]]  # pdomOutput > recipient-collection > rows
    assert len(ids) == 60 and len(set(ids)) == 60, ids

    # Each worker hands out ids from its own block of the shared sequence: never the same one.
    def new_ids(client: SoapClient) -> set[int]:
        reply = client.call("xtk:session#GetNewIds", '<count xsi:type="xsd:int">5</count>')
        return {int(i) for i in reply.outputs[0].text.split(",")}

    first, second = pair
    second.token, second.security = token, security
    assert worker_of(first.http.get("/r/test")) != worker_of(second.http.get("/r/test"))
    assert not new_ids(first) & new_ids(second)


def test_the_embedded_default_refuses_several_workers(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    result = subprocess.run([sys.executable, "-m", "opencampaign.cli", "serve", "--data-dir", str(tmp_path / "i"),
                             "--workers", "2", "--port", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "--workers 2" in result.stderr and "DuckDB" in result.stderr, result.stderr


def test_revocations_reach_every_store_of_a_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two stores on one data dir stand for two worker processes (each keeps its own cache)."""
    from opencampaign.instance import Instance
    from opencampaign.security import sessions

    env = {"OPENCAMPAIGN_SINGLE_DATABASE": "1", "OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}
    first = Instance.open(tmp_path / "i", environ=env)
    first.init(environ=env)
    second = Instance.open(tmp_path / "i", environ=env)
    try:
        one, other = sessions.SessionStore(first), sessions.SessionStore(second)
        opened = [one.logon("admin", ADMIN_PASSWORD) for _ in range(3)]
        for token, security, _ in opened:
            assert other.resolve(token, security) is not None  # now cached by the other store
            assert other.resolve_cached(token, security)[1] is not None
        one.close(opened[0][0])
        assert other.resolve_cached(opened[0][0], opened[0][1]) == (False, None)  # forgotten: ask the database
        assert other.resolve(opened[0][0], opened[0][1]) is None
        assert other.resolve_cached(opened[1][0], opened[1][1])[1] is not None  # the others stay cached
        # When the list starts over (a new file), every store forgets everything it cached.
        monkeypatch.setattr(sessions, "REVOCATIONS_MAX", 10)
        one.close(opened[1][0])
        assert other.resolve(opened[1][0], opened[1][1]) is None
        assert other.resolve_cached(opened[2][0], opened[2][1]) == (False, None)
        assert other.resolve(opened[2][0], opened[2][1]) is not None
    finally:
        first.close()
        second.close()
