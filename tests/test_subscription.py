"""nms:subscription#Subscribe / #Unsubscribe, in process through the method registry and over SOAP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.methods.nms_subscription import call_method
from opencampaign.methods.registry import MethodError
from opencampaign.query.write import write
from tests.live_server import LiveServer

ID_COLUMNS = {"nms:recipient": "iRecipientId", "nms:subscription": "iRecipientId", "nms:subHisto": "iSubHistoId"}
ADMIN = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    inst = Instance.open(tmp_path / "data")
    inst.init(environ={"OPENCAMPAIGN_ADMIN_PASSWORD": "pw"})
    for name, extra in (("news", {}), ("promo", {"validityDuration": "10"}),
                        ("future", {"start": (date.today() + timedelta(days=5)).isoformat()})):
        doc = etree.Element("service", xtkschema="nms:service", _operation="insert", name=name, label=name,
                            type="0", **extra)
        write(inst.storage, inst.registry, doc, ADMIN)
    yield inst
    inst.close()


def rcp(**attrs: str) -> etree._Element:
    return etree.Element("recipient", **attrs)


def rows(inst: Instance, schema_id: str) -> list[dict]:
    table = inst.storage.table(schema_id)
    with inst.storage.engine(inst.storage.home(schema_id)).connect() as conn:
        pk = table.c[ID_COLUMNS[schema_id]]
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(pk != 0).order_by(pk))]


def subscribe(inst: Instance, names: str, recipient: etree._Element, create: bool = False) -> None:
    call_method(inst, ADMIN, "Subscribe", {"serviceName": names, "recipient": recipient, "create": create})


def unsubscribe(inst: Instance, names: str, recipient: etree._Element) -> None:
    call_method(inst, ADMIN, "Unsubscribe", {"serviceName": names, "recipient": recipient})


def test_subscribe_creates_recipient_and_history(instance: Instance) -> None:
    subscribe(instance, "news, promo", rcp(_key="@email", email="a@example.com", lastName="Doe"), create=True)
    recipients = [r for r in rows(instance, "nms:recipient") if r["sEmail"] == "a@example.com"]
    assert len(recipients) == 1 and recipients[0]["sLastName"] == "Doe"
    subs = rows(instance, "nms:subscription")
    assert len(subs) == 2
    promo = [s for s in subs if s["tsExpirationDate"] is not None]
    assert len(promo) == 1  # the 10-day service sets the expiration date
    history = rows(instance, "nms:subHisto")
    assert [h["iAction"] for h in history] == [1, 1]


def test_subscribe_twice_is_idempotent(instance: Instance) -> None:
    key = rcp(_key="@email", email="b@example.com")
    subscribe(instance, "news", key, create=True)
    subscribe(instance, "news", key)
    assert len(rows(instance, "nms:subscription")) == 1
    assert len(rows(instance, "nms:subHisto")) == 1


def test_subscribe_updates_profile_and_requires_create(instance: Instance) -> None:
    with pytest.raises(MethodError) as err:
        subscribe(instance, "news", rcp(_key="@email", email="nobody@example.com"))
    assert err.value.client
    subscribe(instance, "news", rcp(_key="@email", email="c@example.com"), create=True)
    subscribe(instance, "promo", rcp(_key="@email", email="c@example.com", firstName="Carl"))
    assert [r["sFirstName"] for r in rows(instance, "nms:recipient") if r["sEmail"] == "c@example.com"] == ["Carl"]


def test_unknown_and_closed_services(instance: Instance) -> None:
    with pytest.raises(MethodError, match="does not exist"):
        subscribe(instance, "nope", rcp(_key="@email", email="d@example.com"), create=True)
    with pytest.raises(MethodError, match="not open"):
        subscribe(instance, "future", rcp(_key="@email", email="d@example.com"), create=True)
    assert rows(instance, "nms:subscription") == []


def test_unsubscribe(instance: Instance) -> None:
    key = rcp(_key="@email", email="e@example.com")
    subscribe(instance, "news,promo", key, create=True)
    unsubscribe(instance, "news", key)
    assert len(rows(instance, "nms:subscription")) == 1
    assert [h["iAction"] for h in rows(instance, "nms:subHisto")] == [1, 1, 0]
    unsubscribe(instance, "news", key)  # not subscribed: no-op, no history
    unsubscribe(instance, "news", rcp(_key="@email", email="ghost@example.com"))  # unknown: no-op
    assert len(rows(instance, "nms:subHisto")) == 3


def test_unsubscribe_empty_service_denylists(instance: Instance) -> None:
    key = rcp(_key="@email", email="f@example.com")
    subscribe(instance, "news", key, create=True)
    unsubscribe(instance, "", key)
    recipient = [r for r in rows(instance, "nms:recipient") if r["sEmail"] == "f@example.com"][0]
    assert recipient["iBlackList"] == 1
    assert len(rows(instance, "nms:subscription")) == 1  # subscriptions are kept


def test_subscribe_by_id_key(instance: Instance) -> None:
    subscribe(instance, "news", rcp(_key="@email", email="g@example.com"), create=True)
    rid = [r for r in rows(instance, "nms:recipient") if r["sEmail"] == "g@example.com"][0]["iRecipientId"]
    subscribe(instance, "promo", rcp(_key="@id", id=str(rid)))
    assert len(rows(instance, "nms:subscription")) == 2
    with pytest.raises(MethodError):
        subscribe(instance, "promo", rcp(email="nokey@example.com"), create=True)


SOAP = """<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def soap(url: str, action: str, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/nl/jsp/soaprouter.jsp", content=SOAP.format(body=body),
                      headers={"SOAPAction": action, "Content-Type": "text/xml; charset=utf-8", **(headers or {})})


def test_soap_subscribe_and_rest_session(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", "--demo") as live:
        logon = soap(live.url, "xtk:session#Logon", """<m:Logon xmlns:m="urn:xtk:session">
            <sessiontoken xsi:type="xsd:string"/><strLogin xsi:type="xsd:string">admin</strLogin>
            <strPassword xsi:type="xsd:string">admin-test</strPassword>
            <elemParameters xsi:type="ns:Element"><parameters/></elemParameters></m:Logon>""")
        assert logon.status_code == 200, logon.text
        out = etree.fromstring(logon.content)
        session = out.findtext(".//{*}pstrSessionToken") or out.findtext(".//pstrSessionToken")
        security = out.findtext(".//{*}pstrSecurityToken") or out.findtext(".//pstrSecurityToken")
        assert session and security
        headers = {"X-Session-Token": session, "X-Security-Token": security}
        r = soap(live.url, "nms:subscription#Subscribe", f"""<m:Subscribe xmlns:m="urn:nms:subscription">
            <sessiontoken xsi:type="xsd:string">{session}</sessiontoken>
            <service xsi:type="xsd:string">newsletter</service>
            <content xsi:type="ns:Element"><recipient _key="@email" email="soap@example.com"/></content>
            <create xsi:type="xsd:boolean">true</create></m:Subscribe>""", headers)
        assert r.status_code == 200 and b"SubscribeResponse" in r.content, r.text
        rest = httpx.get(f"{live.url}/rest/profileAndServices/profile/byEmail", params={"email": "soap@example.com"},
                         headers=headers)
        assert rest.status_code == 200, rest.text
        profile = rest.json()["content"][0]
        subs = httpx.get(profile["subscriptions"]["href"], headers=headers).json()["content"]
        assert [s["serviceName"] for s in subs] == ["newsletter"]
        bad = httpx.get(f"{live.url}/rest/profileAndServices/profile", headers={"X-Session-Token": "nope",
                                                                               "X-Security-Token": "x"})
        assert bad.status_code == 401 and bad.json()["code"] == 401
