"""A WSDL per schema that the Python SOAP client zeep loads and calls (Logon, GetOption, ExecuteQuery, Write)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from .live_server import LiveServer
from .test_soap import ADMIN_PASSWORD, server  # noqa: F401 - the module-scoped server fixture

WSDL = "/nl/jsp/schemawsdl.jsp?schema="


@pytest.fixture
def session_client(server: LiveServer) -> Iterator[tuple[zeep.Client, requests.Session, str]]:  # noqa: F811
    public = zeep.Client(server.url + WSDL + "xtk:session")
    logon = public.service.Logon(sessiontoken="", strLogin="admin", strPassword=ADMIN_PASSWORD, elemParameters=None)
    http = requests.Session()
    http.headers.update({"X-Session-Token": logon.pstrSessionToken, "X-Security-Token": logon.pstrSecurityToken})
    client = zeep.Client(server.url + WSDL + "xtk:session", transport=Transport(session=http))
    yield client, http, logon.pstrSessionToken
    http.close()


def test_logon_and_get_option(server: LiveServer, session_client):  # noqa: F811
    client, _http, token = session_client
    assert token.startswith("___")
    option = client.service.GetOption(sessiontoken=token, strName="XtkDatabaseId")
    assert option.pbtType == 6 and option.pstrValue.startswith("u")
    info = client.service.GetUserInfo(sessiontoken=token)  # a lone output comes back unwrapped
    assert etree.QName(info).localname == "userInfo" and info.get("login") == "admin"


def test_write_then_execute_query(server: LiveServer, session_client):  # noqa: F811
    client, http, token = session_client
    doc = etree.fromstring('<recipient xtkschema="nms:recipient" _operation="insert" email="zeep@example.com" '
                           'firstName="Zeep"/>')
    assert client.service.Write(sessiontoken=token, domDoc={"_value_1": doc}) is None
    query_client = zeep.Client(server.url + WSDL + "xtk:queryDef", transport=Transport(session=http))
    query = etree.fromstring('<queryDef schema="nms:recipient" operation="get"><select><node expr="@firstName"/>'
                             '</select><where><condition expr="@email=\'zeep@example.com\'"/></where></queryDef>')
    result = query_client.service.ExecuteQuery(sessiontoken=token, entity={"_value_1": query})
    row = result.pdomOutput._value_1
    assert etree.QName(row).localname == "recipient" and row.get("firstName") == "Zeep"
    with pytest.raises(Fault) as failure:
        query_client.service.ExecuteQuery(sessiontoken=token, entity={"_value_1": etree.fromstring(
            '<queryDef schema="nms:nothing" operation="select"/>')})
    assert failure.value.message.startswith("SOP-330011")


def test_wsdl_describes_interface_methods_and_needs_a_session_beyond_xtk_session(server: LiveServer):  # noqa: F811
    public = httpx.get(server.url + WSDL + "xtk:session")
    assert public.status_code == 200
    root = etree.fromstring(public.content)
    actions = {op.get("soapAction") for op in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}operation")}
    assert {"xtk:session#Logon", "xtk:persist|xtk:session#Write", "xtk:session#GetOption"} <= actions
    assert httpx.get(server.url + WSDL + "nms:delivery").status_code == 401
    assert httpx.get(server.url + WSDL + "nms:nothing").status_code == 404
