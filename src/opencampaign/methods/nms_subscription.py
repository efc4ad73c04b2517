"""nms:subscription#Subscribe / #Unsubscribe (business-rest-auth.md §1.1).

The recipient is reconciled through its `_key` (comma-separated xpaths, e.g. `@email` or `@id`);
Subscribe may create it and updates its other attributes. Every change is recorded in
nms:subHisto; subscribing twice and unsubscribing a non-subscriber change nothing. An empty
service name in Unsubscribe denylists the recipient (`@blackList=1`). Rows are written through
the Write engine; the small lookups read the tables directly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..query.errors import DataApiError
from ..query.persist import new_instance
from ..query.values import format_value, parse_value
from ..query.write import write
from ..schema.model import Schema
from .registry import REGISTRY, MethodCall, MethodError, MethodResult

RECIPIENT = "nms:recipient"
SERVICE = "nms:service"
SUBSCRIPTION = "nms:subscription"
HISTORY = "nms:subHisto"
UNKNOWN_SERVICE = "NMS-450001"  # invented codes, NMS family
CLOSED_SERVICE = "NMS-450002"
UNKNOWN_RECIPIENT = "NMS-450003"
BAD_RECIPIENT = "NMS-450004"


def _now() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def service_names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


class Subscriptions:
    def __init__(self, instance: Any, ctx: CallContext, origin: str = "api"):
        self.storage = instance.storage
        self.registry = instance.registry
        self.ctx = ctx
        self.origin = origin

    def _rows(self, schema_id: str, where: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
        table = self.storage.table(schema_id)
        query = sa.select(*[table.c[c] for c in columns]).where(*[table.c[k] == v for k, v in where.items()])
        with self.storage.engine(self.storage.home(schema_id)).connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.limit(2))]

    def service(self, name: str) -> dict[str, Any]:
        rows = self._rows(SERVICE, {"sName": name}, ["iServiceId", "sName", "iValidityDuration", "tsStart", "tsEnd"])
        if not rows or not rows[0]["iServiceId"]:
            raise MethodError(UNKNOWN_SERVICE, f"The service '{name}' does not exist.", client=True)
        return rows[0]

    def find_recipient(self, element: etree._Element) -> int | None:
        schema = self.registry.get(RECIPIENT)
        where = self._key_columns(schema, element)
        rows = self._rows(RECIPIENT, where, ["iRecipientId"])
        if len(rows) > 1:
            raise MethodError(BAD_RECIPIENT, "The key of the recipient matches several recipients.", client=True)
        return int(rows[0]["iRecipientId"]) if rows and rows[0]["iRecipientId"] else None

    @staticmethod
    def _key_columns(schema: Schema, element: etree._Element) -> dict[str, Any]:
        key = element.get("_key") or ""
        xpaths = [k.strip().strip("[]") for k in key.split(",") if k.strip()]
        if not xpaths:
            raise MethodError(BAD_RECIPIENT, "The recipient has no '_key' attribute (e.g. _key=\"@email\").",
                              client=True)
        where: dict[str, Any] = {}
        for xpath in xpaths:
            steps = xpath.split("/")
            if not steps[-1].startswith("@"):
                steps[-1] = "@" + steps[-1]
            attr = schema.attribute("/".join(steps))
            if attr is None or attr.sqlname is None:
                raise MethodError(BAD_RECIPIENT, f"Invalid key '{xpath}' for the recipient.", client=True)
            node = element
            for step in steps[:-1]:
                node = node.find(step) if node is not None else None
            text = node.get(steps[-1][1:]) if node is not None else None
            if text is None:
                raise MethodError(BAD_RECIPIENT, f"The recipient has no value for its key '{xpath}'.", client=True)
            try:
                where[attr.sqlname] = parse_value(attr.type, text)
            except ValueError as exc:
                raise MethodError(BAD_RECIPIENT, f"Invalid value for key '{xpath}': {exc}", client=True) from None
        return where

    def _profile_doc(self, element: etree._Element) -> etree._Element:
        doc = etree.Element("recipient")
        for name, value in element.attrib.items():
            if not name.startswith("_") and name not in ("xtkschema", "id") and not name.startswith("{"):
                doc.set(name, value)
        for child in element:
            if isinstance(child.tag, str):
                doc.append(etree.fromstring(etree.tostring(child)))
        return doc

    def recipient(self, element: etree._Element, create: bool) -> int:
        found = self.find_recipient(element)
        doc = self._profile_doc(element)
        if found is None:
            if not create:
                raise MethodError(UNKNOWN_RECIPIENT, "Unable to find the recipient (no profile matches its key).",
                                  client=True)
            base = new_instance(self.storage, self.registry, etree.Element("recipient", xtkschema=RECIPIENT),
                                self.ctx)
            for name, value in doc.attrib.items():
                base.set(name, value)
            for child in doc:
                base.append(child)
            self._write(base)
            return int(base.get("id") or 0)
        if len(doc.attrib) or len(doc):
            doc.set("xtkschema", RECIPIENT)
            doc.set("_key", "@id")
            doc.set("id", str(found))
            doc.set("_operation", "update")
            self._write(doc)
        return found

    def _write(self, doc: etree._Element) -> None:
        try:
            write(self.storage, self.registry, doc, self.ctx)
        except DataApiError as exc:
            raise MethodError(exc.code, exc.message, exc.detail_chain, client=exc.client) from None

    def is_subscribed(self, recipient_id: int, service_id: int) -> bool:
        return bool(self._rows(SUBSCRIPTION, {"iRecipientId": recipient_id, "iServiceId": service_id},
                               ["iRecipientId"]))

    def subscribe(self, service: dict[str, Any], recipient_id: int) -> bool:
        """Subscribes; False when already subscribed (nothing changes)."""
        today = date.today()
        start, end = service.get("tsStart"), service.get("tsEnd")
        if (start and _as_date(start) > today) or (end and _as_date(end) < today):
            raise MethodError(CLOSED_SERVICE, f"The service '{service['sName']}' is not open for subscription.",
                              client=True)
        if self.is_subscribed(recipient_id, service["iServiceId"]):
            return False
        now = _now()
        sub = etree.Element("subscription", xtkschema=SUBSCRIPTION, _operation="insert")
        sub.set("recipient-id", str(recipient_id))
        sub.set("service-id", str(service["iServiceId"]))
        sub.set("created", format_value("datetime", now))
        sub.set("origin", self.origin)
        days = int(service.get("iValidityDuration") or 0)
        if days > 0:
            sub.set("expirationDate", format_value("datetime", now + timedelta(days=days)))
        self._write(sub)
        self._history(recipient_id, service["iServiceId"], 1, now)
        return True

    def unsubscribe(self, service: dict[str, Any], recipient_id: int) -> bool:
        if not self.is_subscribed(recipient_id, service["iServiceId"]):
            return False
        sub = etree.Element("subscription", xtkschema=SUBSCRIPTION, _operation="delete")
        sub.set("_key", "@recipient-id,@service-id")
        sub.set("recipient-id", str(recipient_id))
        sub.set("service-id", str(service["iServiceId"]))
        self._write(sub)
        self._history(recipient_id, service["iServiceId"], 0, _now())
        return True

    def _history(self, recipient_id: int, service_id: int, action: int, when: datetime) -> None:
        doc = etree.Element("subHisto", xtkschema=HISTORY, _operation="insert")
        doc.set("recipient-id", str(recipient_id))
        doc.set("service-id", str(service_id))
        doc.set("action", str(action))
        doc.set("date", format_value("datetime", when))
        doc.set("origin", self.origin)
        self._write(doc)

    def denylist(self, recipient_id: int) -> None:
        doc = etree.Element("recipient", xtkschema=RECIPIENT, _key="@id", _operation="update")
        doc.set("id", str(recipient_id))
        doc.set("blackList", "1")
        self._write(doc)


def _as_date(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def _recipient_param(call: MethodCall) -> etree._Element:
    element = call.params.get("recipient")
    if isinstance(element, etree._ElementTree):
        element = element.getroot()
    if not isinstance(element, etree._Element):
        raise MethodError(BAD_RECIPIENT, "The recipient parameter must be an XML element.", client=True)
    if element.tag != "recipient" and len(element) and isinstance(element[0].tag, str):
        element = element[0]  # a wrapper such as <content><recipient .../></content>
    return element


def _origin(call: MethodCall) -> str:
    return call.headers.get("origin") or "api"


@REGISTRY.implements("nms:subscription#Subscribe")
def subscribe(call: MethodCall) -> MethodResult:
    subs = Subscriptions(call.instance, call.ctx, _origin(call))
    names = service_names(call.params.get("serviceName"))
    services = [subs.service(name) for name in names]  # every name is checked before any change
    recipient_id = subs.recipient(_recipient_param(call), bool(call.params.get("create")))
    for service in services:
        subs.subscribe(service, recipient_id)
    return MethodResult()


@REGISTRY.implements("nms:subscription#Unsubscribe")
def unsubscribe(call: MethodCall) -> MethodResult:
    subs = Subscriptions(call.instance, call.ctx, _origin(call))
    names = service_names(call.params.get("serviceName"))
    services = [subs.service(name) for name in names]
    recipient_id = subs.find_recipient(_recipient_param(call))
    if recipient_id is None:
        return MethodResult()  # unknown recipient: silent no-op, as Campaign
    if not names:
        subs.denylist(recipient_id)
    for service in services:
        subs.unsubscribe(service, recipient_id)
    return MethodResult()


def call_method(instance: Any, ctx: CallContext, name: str, params: dict[str, Any],
                headers: dict[str, str] | None = None) -> MethodResult:
    """Calls nms:subscription#<name> through the registry (rights checks included)."""
    schema = instance.registry.get(SUBSCRIPTION)
    method = schema.method(name)
    if method is None:
        raise MethodError("SOP-330006", f"Method '{name}' is not declared by '{SUBSCRIPTION}'.", client=True)
    return REGISTRY.call(MethodCall(instance, ctx, schema, method, None, params, headers or {}))
