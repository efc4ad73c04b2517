"""The SOAP router over real HTTP: envelope rules, routing, tokens, faults, hostile input, sessions.

A real `opencampaign serve` process is driven with httpx; replies are checked the way acc-js-sdk
reads them (literal `SOAP-ENV:Body`, unprefixed `<MethodResponse>`, literal `xsi:type`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest
from lxml import etree

from opencampaign.schema.model import Method, Param
from opencampaign.soap import codec

from .live_server import LiveServer

ADMIN_PASSWORD = "soap-admin-pw"
ROUTER = "/nl/jsp/soaprouter.jsp"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def envelope(urn: str, method: str, params: str, *, token: str = "", security: str = "") -> str:
    header = (f"<Cookie>__sessiontoken={token}</Cookie>" if token else "") + f"<X-Security-Token>{security}</X-Security-Token>"
    return ('<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xmlns:SOAP-ENV="{SOAP_ENV}"><SOAP-ENV:Header>{header}</SOAP-ENV:Header><SOAP-ENV:Body>'
            f'<m:{method} xmlns:m="urn:{urn}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
            f'<sessiontoken xsi:type="xsd:string">{token}</sessiontoken>{params}</m:{method}></SOAP-ENV:Body>'
            '</SOAP-ENV:Envelope>')


def doc_param(name: str, xml: str) -> str:
    return (f'<{name} xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
            f'{xml}</{name}>')


def str_param(name: str, value: str) -> str:
    return f'<{name} xsi:type="xsd:string">{value}</{name}>'


class Reply:
    def __init__(self, response: httpx.Response, method: str):
        self.response = response
        self.text = response.text
        self.root = etree.fromstring(response.content)
        body = next(c for c in self.root if c.tag == f"{{{SOAP_ENV}}}Body")
        self.body = body
        first = body[0]
        self.fault = first if first.tag == f"{{{SOAP_ENV}}}Fault" else None
        self.result = None if self.fault is not None else first
        self.method = method

    @property
    def faultstring(self) -> str:
        assert self.fault is not None, self.text
        return self.fault.findtext("faultstring") or ""

    @property
    def code(self) -> str:
        match = re.match(r"(\w{3}-\d{6})", self.faultstring)
        return match.group(1) if match else ""

    @property
    def outputs(self) -> list[etree._Element]:
        assert self.result is not None, self.text
        return list(self.result)


class SoapClient:
    """A minimal Campaign SOAP client: user/password logon, then both tokens on every call."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)
        self.token = ""
        self.security = ""

    def call(self, action: str, params: str = "", *, headers: dict[str, str] | None = None,
             token: str | None = None, security: str | None = None) -> Reply:
        urn, _, method = action.rpartition("#")
        tok = self.token if token is None else token
        sec = self.security if security is None else security
        hdrs = {"Content-Type": "application/soap+xml;charset=UTF-8", "SoapAction": action,
                "X-Session-Token": tok, "X-Security-Token": sec}
        hdrs.update(headers or {})
        response = self.http.post(ROUTER, content=envelope(urn, method, params, token=tok, security=sec).encode(),
                                  headers=hdrs)
        assert response.status_code == 200, response.text
        return Reply(response, method)

    def logon(self, login: str = "admin", password: str = ADMIN_PASSWORD) -> Reply:
        reply = self.call("xtk:session#Logon", str_param("login", login) + str_param("password", password)
                          + '<parameters xsi:type="ns:Element" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml"/>',
                          token="", security="")
        if reply.fault is None:
            self.token = reply.outputs[0].text or ""
            self.security = reply.outputs[2].text or ""
        return reply

    def write(self, xml: str) -> Reply:
        return self.call("xtk:persist|xtk:session#Write", doc_param("doc", xml))

    def query(self, xml: str) -> Reply:
        return self.call("xtk:queryDef#ExecuteQuery", doc_param("document", xml))

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("soap") / "instance"
    with LiveServer(data, env={"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[SoapClient]:
    soap = SoapClient(server.url)
    assert soap.logon().fault is None
    yield soap
    soap.close()


@pytest.mark.parametrize(("xtk_type", "value", "xsi_type", "text"), [
    ("string", "a<b", "xsd:string", "a<b"), ("primarykey", "xtk:operator|12", "xsd:primarykey", "xtk:operator|12"),
    ("boolean", True, "xsd:boolean", "true"), ("byte", 6, "xsd:byte", "6"), ("short", -2, "xsd:short", "-2"),
    ("long", 100000, "xsd:int", "100000"), ("int64", 2**40, "xsd:long", str(2**40)),
    ("datetime", datetime(2020, 12, 31, 12, 34, 56, 789000), "xsd:dateTime", "2020-12-31T12:34:56.789Z"),
    ("date", date(2020, 12, 31), "xsd:date", "2020-12-31T00:00:00.000Z"),
])
def test_output_types_are_the_literal_xsi_types_of_the_sdk(xtk_type, value, xsi_type, text):
    param = Param("value", xtk_type, "out")
    output = codec.encode_output(Method("M", static=True, params=[param]), param, value)
    assert (output.xsi_type, output.text) == (xsi_type, text)
    assert f"xsi:type='{xsi_type}'" in output.render()


def test_xml_outputs_and_schema_local_types_are_ns_element():
    for kind in ("DOMDocument", "DOMElement", "sessionUserInfo"):
        param = Param("doc", kind, "out")
        output = codec.encode_output(Method("M", static=True, params=[param]), param, etree.Element("userInfo"))
        assert output.xsi_type == "ns:Element" and output.xml == "<userInfo/>"
    empty = codec.encode_output(Method("M", params=[param]), param, None).render()
    assert "literalxml'></" in empty  # an empty pdomDoc: the SDK reads it as null


# --- envelope and routing ------------------------------------------------------------------------


def test_logon_reply_has_the_shape_the_sdk_parses(server: LiveServer):
    soap = SoapClient(server.url)
    reply = soap.logon()
    text = reply.text
    assert "<SOAP-ENV:Body>" in text and "<LogonResponse xmlns='urn:xtk:session'" in text
    session, info, security = reply.outputs
    assert session.get(XSI_TYPE) == "xsd:string" and session.text.startswith("___")
    assert security.get(XSI_TYPE) == "xsd:string" and security.text.startswith("@")
    assert info.get(XSI_TYPE) == "ns:Element"
    user = info.find("{urn:xtk:session}sessionInfo/{urn:xtk:session}userInfo")
    assert user is not None and user.get("login") == "admin"
    assert user.find("{urn:xtk:session}login-right").get("right") == "admin"
    server_info = info.find("{urn:xtk:session}sessionInfo/{urn:xtk:session}serverInfo")
    assert server_info.get("buildNumber") and server_info.get("majNumber") == "8"


def test_output_types_follow_the_sdk_table(client: SoapClient):
    option = client.call("xtk:session#GetOption", str_param("name", "XtkDatabaseId"))
    value, kind = option.outputs
    assert value.get(XSI_TYPE) == "xsd:string" and re.fullmatch(r"u[0-9A-F]{40}", value.text)
    assert kind.get(XSI_TYPE) == "xsd:byte" and kind.text == "6"
    missing = client.call("xtk:session#GetOption", str_param("name", "NoSuchOption"))
    assert [o.text or "" for o in missing.outputs] == ["", "0"]
    time_reply = client.call("xtk:session#GetServerTime")
    (moment,) = time_reply.outputs
    assert moment.get(XSI_TYPE) == "xsd:dateTime"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", moment.text)
    ids = client.call("xtk:session#GetNewIds", '<count xsi:type="xsd:int">3</count>')
    assert len(ids.outputs[0].text.split(",")) == 3


def test_get_entity_serves_compiled_source_and_empty_documents(client: SoapClient):
    def entity(pk: str) -> etree._Element:
        reply = client.call("xtk:persist#GetEntityIfMoreRecent", str_param("pk", pk) + str_param("md5", "")
                            + '<mustExist xsi:type="xsd:boolean">false</mustExist>')
        assert "<GetEntityIfMoreRecentResponse" in reply.text
        return reply.outputs[0]

    compiled = entity("xtk:schema|xtk:session")[0]
    assert compiled.tag.endswith("schema") and compiled.get("implements") == "xtk:persist"
    assert [etree.QName(c).localname for c in compiled if isinstance(c.tag, str)][-2:] == ["methods", "interface"]
    source = entity("xtk:srcSchema|nms:recipient")[0]
    assert etree.QName(source).localname == "srcSchema"
    assert len(entity("xtk:schema|nms:doesNotExist")) == 0
    assert len(entity("xtk:form|nms:recipient")) == 0


def test_interface_urns_and_schema_order(client: SoapClient):
    # Adobe's documented form (xtk:session#Write) and the SDK's (xtk:persist|xtk:session#Write) both work.
    for action in ("xtk:session#Write", "xtk:persist|xtk:session#Write"):
        reply = client.call(action, doc_param("doc", '<option xtkschema="xtk:option" _key="@name" name="UrnForm" '
                                                      'dataType="6" stringValue="x"/>'))
        assert reply.fault is None and "<WriteResponse xmlns='urn:xtk:session'" in reply.text
    new = client.call("xtk:persist|nms:delivery#NewInstance",
                      doc_param("document", '<delivery label="L" xtkschema="nms:delivery"/>'))
    entity = new.outputs[0]
    assert entity.tag == "{urn:nms:delivery}entity" and entity.get(XSI_TYPE) == "ns:Element"
    delivery = entity[0]
    assert delivery.get("_operation") == "insert" and int(delivery.get("id")) > 0
    assert "<NewInstanceResponse xmlns='urn:nms:delivery'" in new.text


def test_cache_refresher_and_build_query_ex(client: SoapClient):
    def modified(cache: str) -> etree._Element:
        reply = client.call("xtk:session#GetModifiedEntities", doc_param("cacheEntities", cache))
        return reply.outputs[0][0]

    first = modified('<cache><xtk:option xmlns:xtk="urn:xtk:option"/></cache>')
    assert first.get("emptyCache") == "true" and first.get("buildNumber") and first.get("time")
    since = first.get("time")
    client.write('<option xtkschema="xtk:option" _operation="insert" name="RefreshedOpt" dataType="6" stringValue="v"/>')
    later = modified(f'<cache buildNumber="{first.get("buildNumber")}" lastModified="{since}">'
                     '<xtk:option xmlns:xtk="urn:xtk:option"/></cache>')
    assert later.get("emptyCache") is None
    assert "xtk:option|RefreshedOpt" in [e.get("pk") for e in later]
    other_build = modified(f'<cache buildNumber="1" lastModified="{since}"><xtk:schema xmlns:xtk="urn:xtk:schema"/></cache>')
    assert other_build.get("emptyCache") == "true"
    sql, fmt = client.call("xtk:queryDef#BuildQueryEx", doc_param("document", (
        '<queryDef schema="nms:recipient" operation="select"><select><node expr="@email"/><node expr="@id"/>'
        '</select></queryDef>'))).outputs
    assert "NmsRecipient" in sql.text and fmt.text == "string:email,long:id"


def test_unknown_and_unimplemented_methods_fault_cleanly(client: SoapClient):
    unknown = client.call("xtk:session#NoSuchMethod")
    assert unknown.code == "SOP-330006" and "NoSuchMethod" in unknown.faultstring
    assert unknown.fault.findtext("faultcode") == "SOAP-ENV:Client"
    declared = client.call("xtk:session#ChangePassword", str_param("oldPassword", "a") + str_param("newPassword", "b"))
    assert declared.code == "SOP-330006" and "not implemented" in declared.faultstring
    wrong_schema = client.call("nms:nothing#Write")
    assert wrong_schema.code == "SOP-330006"
    not_implementing = client.call("xtk:persist|xtk:operatorGroup#NewInstance", doc_param("document", "<x/>"))
    assert not_implementing.code == "SOP-330006"


def test_data_errors_carry_the_chain_innermost_first(client: SoapClient):
    reply = client.query('<queryDef schema="nms:recipient" operation="select"><select><node expr="@nope"/></select>'
                         '</queryDef>')
    assert reply.code == "SOP-330011"
    detail = reply.fault.findtext("detail").splitlines()
    assert any("XTK-170036" in line for line in detail)
    assert detail[-1] == reply.faultstring
    bad_write = client.write('<recipient xtkschema="nms:recipient" unknownAttr="1"/>')
    assert bad_write.code == "SOP-330011" and "XSV-350023" in bad_write.fault.findtext("detail")


def test_access_rights(client: SoapClient):
    anonymous = client.call("xtk:session#GetOption", str_param("name", "x"), token="", security="")
    assert anonymous.code == "XSV-350008"
    admin_only = client.call("xtk:session#KillSession", str_param("id", "1"))
    assert admin_only.code == "SOP-330006"  # admin passes the rights check; the method is not implemented


def init_with_bob(data: Path) -> None:
    """An initialised instance with operator `bob` (password `bob-pw`, right `export` only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    env.update({"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD, "OPENCAMPAIGN_OPERATOR_PASSWORD": "bob-pw"})
    for args in (["init"], ["operator", "create", "bob", "--right", "export"]):
        subprocess.run([sys.executable, "-m", "opencampaign.cli", *args, "--data-dir", str(data)], env=env,
                       check=True, capture_output=True, timeout=120)


def test_named_rights_of_a_plain_operator(tmp_path: Path):
    data = tmp_path / "instance"
    init_with_bob(data)
    with LiveServer(data, env={"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}) as live:
        bob = SoapClient(live.url)
        assert bob.logon("bob", "bob-pw").fault is None
        info = bob.call("xtk:session#GetUserInfo").outputs[0][0]
        assert [r.get("right") for r in info.iter("{*}login-right")] == ["export"]
        refused = bob.call("xtk:session#KillSession", str_param("id", "1"))
        assert refused.code == "SOP-330007" and "admin" in refused.faultstring
        admin = SoapClient(live.url)
        admin.logon()
        operator_id = info.get("loginId")
        pk = str_param("pk", f"xtk:operator|{operator_id}") + str_param("md5", "") + "<mustExist>false</mustExist>"
        assert len(bob.call("xtk:persist#GetEntityIfMoreRecent", pk).outputs[0]) == 0  # rows: administrators only
        row = admin.call("xtk:persist#GetEntityIfMoreRecent", pk).outputs[0][0]
        assert row.get("name") == "bob" and row.find("{*}access").get("password") is None


# --- tokens --------------------------------------------------------------------------------------


def test_tokens_from_every_place_and_the_csrf_guard(server: LiveServer, client: SoapClient):
    params = str_param("name", "XtkDatabaseId")
    body = envelope("xtk:session", "GetOption", params, token=client.token)
    base = {"Content-Type": "text/xml", "SOAPAction": "xtk:session#GetOption"}
    http = client.http

    def post(headers: dict[str, str], content: str = body) -> Reply:
        response = http.post(ROUTER, content=content.encode(), headers={**base, **headers})
        return Reply(response, "GetOption")

    assert post({"X-Session-Token": client.token, "X-Security-Token": client.security}).fault is None
    # session token only in the SOAP header / body, security token in the SOAP header
    in_envelope = envelope("xtk:session", "GetOption", params, token=client.token, security=client.security)
    assert post({}, in_envelope).fault is None
    # a browser: the real cookie plus the security token header
    only_cookie = envelope("xtk:session", "GetOption", params)
    assert post({"Cookie": f"__sessiontoken={client.token}", "X-Security-Token": client.security}, only_cookie).fault is None
    # CSRF: a session token without its security token is refused
    refused = post({"Cookie": f"__sessiontoken={client.token}"}, only_cookie)
    assert refused.code == "XSV-350008" and "security token" in refused.faultstring
    assert post({"X-Session-Token": client.token, "X-Security-Token": "@wrong=="}).code == "XSV-350008"
    # a session token is also accepted as a bearer token (no CSRF risk: browsers never send it by themselves)
    assert post({"Authorization": f"Bearer {client.token}"}, only_cookie).fault is None
    forged = post({"Authorization": "Bearer eyJhbGciOi.not-ours"}, only_cookie)
    assert forged.code == "XSV-350008" and "bearer token was refused" in forged.text


def test_invalid_credentials_do_not_block_anonymous_methods(client: SoapClient):
    reply = client.call("xtk:session#GetServerTime", token="___stale", security="@stale==")
    assert reply.fault is None


def test_logoff_ends_the_session(server: LiveServer):
    soap = SoapClient(server.url)
    soap.logon()
    assert soap.call("xtk:session#Logoff").fault is None
    assert soap.call("xtk:session#GetOption", str_param("name", "x")).code == "XSV-350008"


def test_bad_logon_and_bearer_logon_are_refused(server: LiveServer):
    soap = SoapClient(server.url)
    bad = soap.logon(password="wrong")
    assert bad.code == "XSV-350012"
    bearer = soap.call("xtk:session#BearerTokenLogon", str_param("bearerToken", "eyJ"), token="", security="")
    assert bearer.code == "XSV-350008" and "malformed bearer token" in bearer.text


def test_sessions_survive_a_restart_and_expire(tmp_path: Path):
    data = tmp_path / "instance"
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with LiveServer(data, env=env) as live:
        soap = SoapClient(live.url)
        soap.logon()
        tokens = (soap.token, soap.security)
    env["OPENCAMPAIGN_SESSION__TTL_SECONDS"] = "2"
    with LiveServer(data, env=env) as live:
        soap = SoapClient(live.url)
        soap.token, soap.security = tokens
        assert soap.call("xtk:session#GetOption", str_param("name", "x")).fault is None  # read back from the database
        soap.logon()  # a new session lives 2 s
        assert soap.call("xtk:session#GetOption", str_param("name", "x")).fault is None
        time.sleep(2.5)
        assert soap.call("xtk:session#GetOption", str_param("name", "x")).code == "XSV-350008"


# --- hostile input -------------------------------------------------------------------------------


def test_hostile_xml_is_refused_without_reading_files(server: LiveServer, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
           f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}"><SOAP-ENV:Body><m:GetOption xmlns:m="urn:xtk:session">'
           '<sessiontoken/><name>&e;</name></m:GetOption></SOAP-ENV:Body></SOAP-ENV:Envelope>')
    laughs = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>' + envelope("xtk:session", "GetServerTime", "<x>&c;</x>"))
    deep = envelope("xtk:session", "GetServerTime", "<a>" * 5000 + "</a>" * 5000)
    headers = {"Content-Type": "text/xml", "SOAPAction": "xtk:session#GetServerTime"}
    for body in (xxe, laughs, deep, "not xml at all", "<a><b></a>"):
        start = time.monotonic()
        response = httpx.post(server.url + ROUTER, content=body.encode(), headers=headers, timeout=10)
        assert time.monotonic() - start < 5
        assert response.status_code == 200 and "SOP-330001" in response.text, response.text
        assert "TOP-SECRET" not in response.text


def test_doctype_inside_cdata_is_content_not_a_declaration(client: SoapClient):
    reply = client.write('<recipient xtkschema="nms:recipient" _operation="insert" email="html@example.com">'
                         '<desc><![CDATA[<!DOCTYPE html><html><body>Hi</body></html>]]></desc></recipient>')
    assert reply.fault is None, reply.text


def test_http_level_refusals(server: LiveServer):
    url = server.url + ROUTER
    ok_body = envelope("xtk:session", "GetServerTime", "").encode()
    wrong_type = httpx.post(url, content=ok_body, headers={"Content-Type": "application/json",
                                                           "SOAPAction": "xtk:session#GetServerTime"})
    assert wrong_type.status_code == 415 and "SOP-330002" in wrong_type.text
    huge = b"<a>" + b"x" * (4 * 1024 * 1024 + 10) + b"</a>"
    too_big = httpx.post(url, content=huge, headers={"Content-Type": "text/xml", "SOAPAction": "xtk:session#GetServerTime"})
    assert too_big.status_code == 413
    no_action = httpx.post(url, content=envelope("xtk:session", "GetServerTime", "").replace(
        'xmlns:m="urn:xtk:session"', 'xmlns:m="http://example.com/"').encode(), headers={"Content-Type": "text/xml"})
    assert "SOP-330002" in no_action.text and "SOAPAction" in no_action.text
    from_body = httpx.post(url, content=ok_body, headers={"Content-Type": "text/xml"})  # SOAP 1.2 style: urn in the body
    assert "<GetServerTimeResponse" in from_body.text
    mismatch = httpx.post(url, content=ok_body, headers={"Content-Type": "text/xml", "SOAPAction": "xtk:session#Logon"})
    assert "SOP-330002" in mismatch.text
    malformed = httpx.post(url, content=ok_body, headers={"Content-Type": "text/xml", "SOAPAction": "garbage"})
    assert "SOP-330002" in malformed.text
    assert httpx.get(url).status_code == 405


def test_request_ids_are_echoed_and_logged(server: LiveServer):
    response = httpx.get(server.url + "/nl/jsp/ping.jsp", headers={"x-request-id": "conformance-42"})
    assert response.headers["x-request-id"] == "conformance-42"
    fresh = httpx.get(server.url + "/nl/jsp/ping.jsp")
    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fresh.headers["x-request-id"])
    hostile = httpx.get(server.url + "/nl/jsp/ping.jsp", headers={"x-request-id": "bad id <script>" * 40})
    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", hostile.headers["x-request-id"])
    deadline = time.monotonic() + 5
    while "rid=conformance-42" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "rid=conformance-42" in server.log.read_text()


def test_health_pages(server: LiveServer):
    ping = httpx.get(server.url + "/nl/jsp/ping.jsp")
    lines = ping.text.split("\n")
    assert lines[0] == "OK" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", lines[1]) and lines[2] == ""
    mc = httpx.get(server.url + "/nl/jsp/mcPing.jsp").text.split("\n")
    assert mc[0] == "Ok" and re.fullmatch(r"\d+/\d+ pending events", mc[2])


# --- the hot path: calls on the event loop, cached sessions, depth checks ----------------------------

GET_ADMIN = doc_param("document", '<queryDef schema="xtk:operator" operation="get"><select><node expr="@name"/>'
                      "</select><where><condition expr=\"@name = 'admin'\"/></where></queryDef>")


def test_logoff_ends_a_session_cached_for_calls_on_the_event_loop(server: LiveServer):
    soap = SoapClient(server.url)
    soap.logon()
    for _ in range(3):  # a get-by-key on SQLite with a cached session runs on the event loop
        assert soap.call("xtk:queryDef#ExecuteQuery", GET_ADMIN).fault is None
    wrong = soap.call("xtk:queryDef#ExecuteQuery", GET_ADMIN, security="@wrong==")
    assert wrong.code == "XSV-350008"
    assert soap.call("xtk:session#GetServerTime", security="@wrong==").fault is None  # anonymous method
    assert soap.call("xtk:session#Logoff").fault is None
    assert soap.call("xtk:queryDef#ExecuteQuery", GET_ADMIN).code == "XSV-350008"
    soap.close()


def test_nesting_one_level_too_deep_is_refused(server: LiveServer):
    # Envelope, Body and method element are 3 levels; <x> elements make up the rest.
    def body(depth: int) -> bytes:
        inner = depth - 3
        return envelope("xtk:session", "GetServerTime", "<x>" * inner + "</x>" * inner).encode()

    headers = {"Content-Type": "text/xml", "SOAPAction": "xtk:session#GetServerTime"}
    ok = httpx.post(server.url + ROUTER, content=body(128), headers=headers)
    assert "<GetServerTimeResponse" in ok.text, ok.text
    deep = httpx.post(server.url + ROUTER, content=body(129), headers=headers)
    assert "SOP-330001" in deep.text and "nesting deeper than 128" in deep.text, deep.text


def test_depth_check_counts_every_kind_of_node():
    from opencampaign.xmlsafe import XMLInputError, parse_xml

    assert parse_xml("<a><b><c/></b></a>", max_depth=3).tag == "a"  # few '<': no walk needed
    for deep in ("<a><b><c><d/></c></b></a>", "<a><b><c><!--d--></c></b></a>", "<a><b><c><?d?></c></b></a>"):
        with pytest.raises(XMLInputError, match="nesting deeper than 3"):
            parse_xml(deep, max_depth=3)
    wide = "<a>" + "<b><c>text</c><!--x--></b>" * 50 + "</a>"  # many '<': the tree is checked, and passes
    assert len(parse_xml(wide, max_depth=3)) == 50


def test_inline_policy_runs_only_short_calls_on_the_event_loop(tmp_path: Path):
    from opencampaign.instance import Instance
    from opencampaign.soap.dispatch import parse_action
    from opencampaign.soap.envelope import parse_request
    from opencampaign.soap.router import SLOW_CPU, SoapRouter

    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD, "OPENCAMPAIGN_SINGLE_DATABASE": "1"}
    instance = Instance.open(tmp_path / "i", environ=env)
    try:
        router = SoapRouter(instance)

        def key(action: str, params: str = "") -> str | None:
            urn, _, method = action.rpartition("#")
            request = parse_request(envelope(urn, method, params).encode())
            return router.inline.key(router.dispatcher.target(parse_action(action)), request)

        query = "xtk:queryDef#ExecuteQuery"
        assert key("xtk:session#GetServerTime") is not None
        get = key(query, GET_ADMIN)
        assert get is not None
        assert key(query, GET_ADMIN.replace('operation="get"', 'operation="select"')) is None  # unbounded
        assert key(query, GET_ADMIN.replace("xtk:operator", "nms:nothing")) is None  # errors from a thread
        assert key("xtk:persist|xtk:session#Write", doc_param("doc", "<x/>")) is None  # writes wait on a lock
        assert key("xtk:session#GetOption", str_param("name", "x")) is None
        router.inline.observe(get, SLOW_CPU * 2, SLOW_CPU * 2)  # a slow one: such calls go back to threads
        assert key(query, GET_ADMIN) is None
        redis = {**env, "OPENCAMPAIGN_TPS_DEFAULT": "10", "OPENCAMPAIGN_LIMITS__STORAGE": "redis://127.0.0.1:6379"}
        other = Instance.open(tmp_path / "i", environ=redis)
        try:
            assert not SoapRouter(other).inline.enabled  # a shared limiter: a network round trip per call
        finally:
            other.close()
    finally:
        instance.close()


def test_reads_from_a_postgresql_on_this_machine_run_inline_unless_configured_off(tmp_path: Path, pg_databases):
    from opencampaign.instance import Instance
    from opencampaign.soap.dispatch import parse_action
    from opencampaign.soap.envelope import parse_request
    from opencampaign.soap.router import SoapRouter

    url = pg_databases.new()
    assert "127.0.0.1" in url
    base = {"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD, "OPENCAMPAIGN_SINGLE_DATABASE": "1",
            "OPENCAMPAIGN_LOCAL_DB": url}
    request = parse_request(envelope("xtk:queryDef", "ExecuteQuery", GET_ADMIN).encode())
    target_action = parse_action("xtk:queryDef#ExecuteQuery")
    expected = {"auto": True, "sqlite": False, "off": False}
    for mode, inline in expected.items():
        instance = Instance.open(tmp_path / mode, environ={**base, "OPENCAMPAIGN_SERVER__INLINE_READS": mode})
        try:
            instance.init(environ={**base})
            router = SoapRouter(instance)
            key = router.inline.key(router.dispatcher.target(target_action), request)
            assert (key is not None) is inline, mode
        finally:
            instance.close()
    remote = {**base, "OPENCAMPAIGN_LOCAL_DB": url.replace("127.0.0.1", "db.example.com")}
    instance = Instance.open(tmp_path / "remote", environ=remote)
    try:
        router = SoapRouter(instance)  # a PostgreSQL on another host: a network round trip, from a thread
        assert router.inline.key(router.dispatcher.target(target_action), request) is None
    finally:
        instance.close()
    instance = Instance.open(tmp_path / "bad", environ={**base, "OPENCAMPAIGN_SERVER__INLINE_READS": "always"})
    try:
        with pytest.raises(ValueError, match="inline_reads"):
            SoapRouter(instance)
    finally:
        instance.close()


def test_a_body_that_never_arrives_gets_408(tmp_path: Path):
    import asyncio

    from opencampaign.instance import Instance
    from opencampaign.soap.router import BodyDeadlines, SoapRouter

    instance = Instance.open(tmp_path / "i", environ={"OPENCAMPAIGN_SINGLE_DATABASE": "1"})
    try:
        router = SoapRouter(instance)
        router.deadlines = BodyDeadlines(timeout=0.2, period=0.05)
        sent: list[dict] = []

        async def receive() -> dict:
            await asyncio.sleep(3600)  # headers came, the body never does
            return {}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": ROUTER, "client": ("127.0.0.1", 1), "state": {},
                 "headers": [(b"content-type", b"text/xml"), (b"soapaction", b"xtk:session#GetServerTime")]}

        async def run() -> None:
            await asyncio.wait_for(router(scope, receive, send), 10)
            assert not router.deadlines.reading and not router.deadlines.expired

        asyncio.run(run())
        assert sent[0]["status"] == 408 and b"SOP-330002" in sent[1]["body"]
    finally:
        instance.close()
