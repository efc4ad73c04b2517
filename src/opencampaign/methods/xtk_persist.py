"""xtk:persist: Write, WriteCollection, NewInstance, Duplicate, DeleteCollection and
GetEntityIfMoreRecent (business-rest-auth.md §1.6, soap-protocol.md §4.1, §8).

The data work is in `query.write` / `query.persist`; this module adapts the calls. Interface
methods are registered under `xtk:persist#...` and serve every schema that implements it.
"""

from __future__ import annotations

from copy import deepcopy

import sqlalchemy as sa
from lxml import etree

from ..query.persist import delete_collection, duplicate, new_instance, parse_primary_key, row_document
from ..query.values import parse_value
from ..query.write import write, write_collection
from ..xmlsafe import XMLInputError, parse_xml
from .registry import REGISTRY, MethodCall, MethodError, MethodResult

OPTION = "xtk:option"
ENTITY = "xtk:entity"
PRIVATE_SCHEMAS = {"xtk:sessionInfo"}
SECRET_COLUMNS = {"sPassword", "sSecurityTokenHash", "sToken"}  # never returned, even to administrators
# What the SDK's setOption writes for boolean options (XtkCaster.asString(true)) in a long column.
_BOOLEAN_TEXT = {"true": "1", "false": "0"}
_VALUE_FIELDS = {"stringValue", "memoValue", "longValue", "doubleValue", "timeStampValue"}


def _document(call: MethodCall, name: str = "doc") -> etree._Element:
    doc = call.params.get(name)
    if doc is None:
        raise MethodError("SOP-330012", f"The '{name}' parameter of '{call.method.name}' holds no document.",
                          client=True)
    return doc


def _normalise_option(doc: etree._Element) -> etree._Element:
    """What acc-js-sdk 1.2.0's setOption sends, made storable: `longValue="true"` for boolean options
    (type 15) becomes 1/0, and a value sent as a child element is moved to its attribute. A date
    option arrives as an empty `<timeStampValue/>` (the SDK serialises a Date object as an empty
    element): refused with a clear message rather than silently ignored."""
    for elem in doc.iter():
        if not isinstance(elem.tag, str):
            continue
        for child in [c for c in elem if isinstance(c.tag, str) and c.tag in _VALUE_FIELDS]:
            text = "".join(child.itertext())
            if not text.strip():
                raise MethodError("XSV-350023", f"Unable to save document of type 'Options (xtk:option)': the "
                                  f"option value was sent as an empty <{child.tag}/> element. acc-js-sdk 1.2.0 "
                                  "setOption cannot send dates; write the option with a timeStampValue attribute.",
                                  client=True)
            elem.set(child.tag, text)
            elem.remove(child)
        value = elem.get("longValue")
        if value is not None and value.strip().lower() in _BOOLEAN_TEXT:
            elem.set("longValue", _BOOLEAN_TEXT[value.strip().lower()])
    return doc


@REGISTRY.implements("xtk:persist#Write")
def write_method(call: MethodCall) -> MethodResult:
    doc = _document(call)
    if doc.get("xtkschema") == OPTION:
        doc = _normalise_option(doc)
    write(call.instance.storage, call.instance.registry, doc, call.ctx)
    return MethodResult([])


@REGISTRY.implements("xtk:persist#WriteCollection")
def write_collection_method(call: MethodCall) -> MethodResult:
    doc = _document(call)
    if doc.get("xtkschema") == OPTION:
        doc = _normalise_option(doc)
    write_collection(call.instance.storage, call.instance.registry, doc, call.ctx)
    return MethodResult([])


@REGISTRY.implements("xtk:persist#NewInstance")
def new_instance_method(call: MethodCall) -> MethodResult:
    this = deepcopy(call.this) if call.this is not None else etree.Element(call.schema.name)
    this.set("xtkschema", this.get("xtkschema") or call.schema.id)
    entity = new_instance(call.instance.storage, call.instance.registry, this, call.ctx)
    return MethodResult([], this=entity)


@REGISTRY.implements("xtk:persist#Duplicate")
def duplicate_method(call: MethodCall) -> MethodResult:
    pk = str(call.params.get("pk") or "")
    schema_id = call.this.get("xtkschema") if call.this is not None else None
    entity = duplicate(call.instance.storage, call.instance.registry, schema_id or call.schema.id, pk, call.ctx)
    return MethodResult([], this=entity)


@REGISTRY.implements("xtk:persist#DeleteCollection")
def delete_collection_method(call: MethodCall) -> MethodResult:
    delete_collection(call.instance.storage, call.instance.registry, str(call.params.get("schema") or ""),
                      call.params.get("where"), bool(call.params.get("ignoreDeleteStatus")), call.ctx)
    return MethodResult([])


@REGISTRY.implements("xtk:persist#GetEntityIfMoreRecent")
def get_entity_if_more_recent(call: MethodCall) -> MethodResult:
    """`xtk:schema|id` (compiled), `xtk:srcSchema|id` (source) or `<schema>|<key>` (a stored entity);
    an empty document when unknown, or when the caller's MD5 is current."""
    pk = str(call.params.get("pk") or "")
    md5 = str(call.params.get("md5") or "")
    entity = _entity(call, pk, md5)
    if entity is None and call.params.get("mustExist"):
        raise MethodError("XSV-350028", f"The entity '{pk[:200]}' does not exist.", client=True)
    return MethodResult([entity])


def _entity(call: MethodCall, pk: str, md5: str) -> etree._Element | None:
    kind, _, name = pk.partition("|")
    registry = call.instance.registry
    if kind == "xtk:schema":
        schema = registry.find(name)
        if schema is None or schema.compiled_xml is None or (md5 and md5 == schema.md5):
            return None
        return schema.compiled_xml
    if kind == "xtk:srcSchema":
        source = registry.source(name)
        if source is not None:
            return source.root
    stored = _stored_document(call, kind, name, md5)
    if stored is not None:
        return stored
    schema = registry.find(kind)
    if schema is None or not schema.has_table or not name or kind in PRIVATE_SCHEMAS:
        return None
    if not call.ctx.is_admin:  # rows go through queryDef for everyone else (access rules live there)
        return None
    return _stored_row(call, kind, pk)


def _stored_document(call: MethodCall, entity_schema: str, full_name: str, md5: str) -> etree._Element | None:
    """Forms, navigation trees, stored source schemas...: rows of xtk:entity (`xtk:form|nms:recipient`)."""
    namespace, sep, name = full_name.partition(":")
    if not sep:
        return None
    storage = call.instance.storage
    table = storage.table(ENTITY)
    with storage.engine_for(ENTITY).connect() as conn:
        row = conn.execute(sa.select(table.c.mData, table.c.sMd5).where(
            table.c.sEntitySchema == entity_schema, table.c.sNamespace == namespace, table.c.sName == name)).first()
    if row is None or not row.mData or (md5 and md5 == row.sMd5):
        return None
    try:
        return parse_xml(row.mData, source=f"{entity_schema}|{full_name}")
    except XMLInputError:
        return None


def _stored_row(call: MethodCall, schema_id: str, pk: str) -> etree._Element | None:
    """A row of a table-backed schema by its primary key (`nms:delivery|1234`), for administrators."""
    storage = call.instance.storage
    schema = call.instance.registry.get(schema_id)
    _, values = parse_primary_key(pk)
    key = schema.primary_key
    if key is None or len(key.fields) != len(values):
        return None
    table = storage.table(schema_id)
    clauses = []
    for xpath, text in zip(key.fields, values, strict=True):
        attr = schema.attribute(xpath)
        if attr is None or attr.sqlname is None:
            return None
        try:
            clauses.append(table.c[attr.sqlname] == parse_value(attr.type, text))
        except ValueError:
            return None
    with storage.engine_for(schema_id).connect() as conn:
        row = conn.execute(sa.select(table).where(*clauses).limit(1)).first()
    if row is None:
        return None
    record = {k: v for k, v in row._mapping.items() if k not in SECRET_COLUMNS}
    doc = row_document(schema, record)
    doc.set("xtkschema", schema_id)
    return doc
