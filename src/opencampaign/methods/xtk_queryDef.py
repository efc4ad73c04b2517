"""xtk:queryDef: ExecuteQuery, SelectAll, BuildQuery, BuildQueryEx (soap-protocol.md §7).

The object (`this`) is the queryDef document; the engine is `query.querydef`.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from lxml import etree

from ..query.errors import unknown_schema
from ..query.querydef import build_query, execute_query
from .registry import REGISTRY, MethodCall, MethodError, MethodResult


def _query(call: MethodCall) -> Any:
    if call.this is None:
        raise MethodError("SOP-330012", "The queryDef document is missing.", client=True)
    return call.this


_LIMITS: dict[int, tuple[Any, dict[str, int]]] = {}  # id(settings) -> (settings, limits): read once


def _limits(instance: Any) -> dict[str, int]:
    settings = instance.settings
    known = _LIMITS.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    limits = {"default_line_count": int(settings.get("query", "default_line_count", 10000)),
              "max_expression_length": int(settings.get("query", "max_expression_length", 65536))}
    if len(_LIMITS) > 64:
        _LIMITS.clear()
    _LIMITS[id(settings)] = (settings, limits)
    return limits


@REGISTRY.implements("xtk:queryDef#ExecuteQuery")
def execute_query_method(call: MethodCall) -> MethodResult:
    instance = call.instance
    output = execute_query(instance.storage, instance.registry, _query(call), call.ctx, **_limits(instance),
                           as_text=call.xml_as_text)
    return MethodResult([output])


# `this` may be a LiftedQuery: the SOAP router's prepared requests give the queryDef with its
# constants already lifted out (soap/prepared.py); execute_query takes either form.
execute_query_method.accepts_lifted_documents = True  # type: ignore[attr-defined]


@REGISTRY.implements("xtk:queryDef#BuildQuery")
def build_query_method(call: MethodCall) -> MethodResult:
    instance = call.instance
    return MethodResult([build_query(instance.storage, instance.registry, _query(call), call.ctx, **_limits(instance))])


@REGISTRY.implements("xtk:queryDef#BuildQueryEx")
def build_query_ex_method(call: MethodCall) -> MethodResult:
    """The SQL, and a sqlSelect-style format string: one `type:alias` entry per selected node."""
    instance = call.instance
    query = _query(call)
    sql = build_query(instance.storage, instance.registry, query, call.ctx, **_limits(instance))
    schema = instance.registry.find(query.get("schema", ""))
    formats = []
    for node in query.findall("select/node"):
        expr = node.get("expr", "")
        attr = schema.attribute(expr) if schema is not None else None
        kind = attr.type if attr is not None else "string"
        alias = (node.get("alias") or expr).strip("[]").lstrip("@").replace("/@", "_").replace("/", "_")
        formats.append(f"{kind}:{alias}")
    return MethodResult([sql, ",".join(formats)])


@REGISTRY.implements("xtk:queryDef#SelectAll")
def select_all(call: MethodCall) -> MethodResult:
    """Adds every stored field of the queried schema to `<select>`; the query comes back as the entity."""
    query = deepcopy(_query(call))
    schema_id = query.get("schema", "")
    schema = call.instance.registry.find(schema_id)
    if schema is None or schema.root is None:
        raise unknown_schema(schema_id)
    select = query.find("select")
    if select is None:
        select = etree.SubElement(query, "select")
    present = {n.get("expr") for n in select.findall("node")}
    wanted = [a.xpath for a in schema.root.walk_attributes() if a.expr is None and a.type != "blob"]
    wanted += [e.xpath for e in schema.root.walk_elements() if e.is_text and not e.is_link]
    for xpath in wanted:
        if xpath not in present:
            etree.SubElement(select, "node", expr=xpath)
    return MethodResult([], this=query)
