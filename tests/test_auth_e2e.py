"""Identity and protection end to end: CLI account -> token -> SOAP (official SDK) and REST; rights;
lockout over Logon; TPS limits answering 429, also across two server workers sharing Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .live_server import LiveServer
from .test_soap import SoapClient
from .test_soap_sdk import NODE_DIR, node_modules  # noqa: F401 - fixture

PASSWORD = "admin-e2e"
SERVER_TIME = ('<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
               'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body>'
               '<m:GetServerTime xmlns:m="urn:xtk:session"><sessiontoken xsi:type="xsd:string"/></m:GetServerTime>'
               '</SOAP-ENV:Body></SOAP-ENV:Envelope>')


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    full.update(env or {})
    result = subprocess.run([sys.executable, "-m", "opencampaign.cli", *args], capture_output=True, text=True,
                            env=full, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("auth") / "instance"
    data.mkdir()
    (data / "opencampaign.toml").write_text('[limits.api]\n"xtk:session#GetServerTime" = 5\n')
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": PASSWORD}
    with LiveServer(data, "--demo", env=env) as live:
        yield live


def token_for(server: LiveServer, name: str, *groups: str) -> str:
    args = ["account", "create", name, "--json", "--data-dir", str(server.data_dir)]
    for group in groups:
        args += ["--group", group]
    created = json.loads(cli(*args).stdout)
    assert set(created) >= {"client_id", "client_secret"}
    response = httpx.post(f"{server.url}/ims/token/v3", data={
        "grant_type": "client_credentials", "client_id": created["client_id"],
        "client_secret": created["client_secret"], "scope": "campaign_sdk"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    return body["access_token"]


def test_token_endpoint_refuses_bad_credentials_without_saying_why(server: LiveServer):
    bad = httpx.post(f"{server.url}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "nobody",
                                                         "client_secret": "x"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    wrong_grant = httpx.post(f"{server.url}/ims/token/v3", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400
    keys = httpx.get(f"{server.url}/ims/keys").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["kid"] for k in keys)


def test_bearer_token_works_on_soap_with_the_official_sdk(server: LiveServer, node_modules):  # noqa: F811
    token = token_for(server, "sdk-client", "campaign - prod - admin")
    env = {**os.environ, "ACC_URL": server.url, "ACC_IMS_TOKEN": token}
    result = subprocess.run(["node", "ims.js"], cwd=NODE_DIR, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert int(out["directCount"]) == 3000  # the demo recipients
    assert out["exchangedLogin"].endswith("@techacct.opencampaign")
    assert out["exchangedOption"] == "set"
    assert out["tampered"] == "SDK-000012"  # how the SDK reports an XSV-350008 fault (soap-protocol.md §9.2)


def test_bearer_token_works_on_rest_and_rights_follow_the_groups(server: LiveServer):
    admin = token_for(server, "rest-admin", "campaign - prod - admin")
    page = httpx.get(f"{server.url}/rest/profileAndServices/profile?_lineCount=2",
                     headers={"Authorization": f"Bearer {admin}"})
    assert page.status_code == 200 and len(page.json()["content"]) == 2
    expired = httpx.get(f"{server.url}/rest/profileAndServices/profile", headers={"Authorization": "Bearer abc.def.ghi"})
    assert expired.status_code == 401 and "code" in expired.json()
    delivery = token_for(server, "rest-delivery", "campaign - prod - deliveryOperators")
    soap = SoapClient(server.url)
    reply = soap.call("xtk:persist|xtk:session#Write", (
        '<doc xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
        '<operator xtkschema="xtk:operator" name="intruder" _operation="insert"/></doc>'),
        headers={"Authorization": f"Bearer {delivery}"})
    assert reply.fault is not None, reply.text  # a non-admin cannot write operators


def test_three_wrong_passwords_lock_the_account(server: LiveServer):
    env = {"OPENCAMPAIGN_OPERATOR_PASSWORD": "right-one"}
    cli("operator", "create", "victim", "--data-dir", str(server.data_dir), env=env)
    client = SoapClient(server.url)
    for _ in range(3):
        assert client.logon("victim", "wrong").code == "XSV-350012"
    assert client.logon("victim", "right-one").code == "XSV-350012"  # banned now, same answer
    assert client.logon("admin", PASSWORD).fault is None


def test_burst_above_the_limit_gets_429_with_retry_after(server: LiveServer):
    client = httpx.Client(base_url=server.url)
    statuses = []
    headers = None
    for _ in range(12):
        response = client.post("/nl/jsp/soaprouter.jsp", content=SERVER_TIME,
                               headers={"SOAPAction": "xtk:session#GetServerTime", "Content-Type": "text/xml"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            headers = response.headers
            assert "SOP-330429" in response.text
        else:
            assert response.headers["RateLimit-Limit"] == "5"
    assert statuses.count(429) >= 5 and statuses[:5] == [200] * 5
    assert headers is not None and int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Remaining"] == "0" and "RateLimit-Reset" in headers


def test_limit_holds_across_two_workers_sharing_redis(tmp_path: Path, pg_databases):
    env = {"OPENCAMPAIGN_LOCAL_DB": pg_databases.new(), "OPENCAMPAIGN_SINGLE_DATABASE": "1",
           "OPENCAMPAIGN_ADMIN_PASSWORD": PASSWORD, "OPENCAMPAIGN_TPS_DEFAULT": "50",
           "OPENCAMPAIGN_LIMITS__STORAGE": "redis://127.0.0.1:6379", "OPENCAMPAIGN_SERVER__LOG_LEVEL": "warning",
           # Its own counters in the shared Redis: other instances (another test run) count apart.
           "OPENCAMPAIGN_LIMITS__NAMESPACE": f"oc-test-{uuid.uuid4().hex}"}
    with LiveServer(tmp_path / "instance", "--workers", "2", env=env) as live:
        asyncio.run(_flood(live.url, seconds=3))  # warm-up: both workers' pools and caches
        admitted, refused = asyncio.run(_flood(live.url, seconds=10))
    # Ignore the first and last partial seconds. The limit is never passed in any second (both workers
    # count in one place), and over the run the two together admit close to 50 per second: not half of
    # it. The lower bound leaves room for pauses of the load generator itself (this test process
    # shares the machine and collects garbage): a pause leaves slots unused, never adds any.
    full_seconds = sorted(admitted)[1:-1]
    assert len(full_seconds) >= 8
    assert all(admitted[s] <= 53 for s in full_seconds), admitted
    mean = sum(admitted[s] for s in full_seconds) / len(full_seconds)
    assert 42.5 <= mean <= 52.5, admitted
    assert refused > sum(admitted.values()), "the load must exceed the limit for the test to mean anything"


async def _flood(url: str, seconds: float) -> tuple[Counter[int], int]:
    body = SERVER_TIME
    headers = {"SOAPAction": "xtk:session#GetServerTime", "Content-Type": "text/xml"}
    admitted: Counter[int] = Counter()
    refused = 0
    deadline = time.time() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal refused
        while time.time() < deadline:
            response = await client.post(f"{url}/nl/jsp/soaprouter.jsp", content=body, headers=headers)
            if response.status_code == 200:
                admitted[int(time.time())] += 1
            elif response.status_code == 429:
                refused += 1

    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(one(client) for _ in range(16)))
    return admitted, refused


def test_instances_sharing_one_redis_count_apart_by_namespace():
    from opencampaign.security.ratelimit import RateLimits

    run = uuid.uuid4().hex
    first, twin = (RateLimits(default_tps=3, storage_uri="redis://127.0.0.1:6379", namespace=f"oc-a-{run}")
                   for _ in range(2))
    other = RateLimits(default_tps=3, storage_uri="redis://127.0.0.1:6379", namespace=f"oc-b-{run}")
    api = "xtk:session#GetServerTime"
    assert [first.hit("alice", api).allowed for _ in range(3)] == [True] * 3
    assert not twin.hit("alice", api).allowed  # same namespace: the same counters (workers of one instance)
    assert other.hit("alice", api).allowed  # another instance on the same Redis counts its own calls
