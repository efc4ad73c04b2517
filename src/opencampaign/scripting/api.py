"""Host side of the script API: every call runs with the caller's `CallContext` through the same code
paths as SOAP and REST (method registry, queryDef, Write), so rights are checked there, once."""

from __future__ import annotations

import importlib
import pkgutil
import re
import weakref
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..methods.registry import REGISTRY, MethodCall, MethodError
from ..schema.model import Method, Param
from . import libraries
from .engine import HostError, LogEntry

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=True)
_INT_TYPES = {"long", "short", "byte", "int64", "int", "integer"}
_FLOAT_TYPES = {"double", "float", "decimal"}
_XML_TYPES = {"DOMElement", "DOMDocument", "element", "xml"}
_loaded_methods = False
_ACTIVE: ContextVar[ScriptApi | None] = ContextVar("opencampaign_script_api", default=None)
_SQL_TYPES = {"long": int, "int64": int, "short": int, "byte": int, "double": float, "float": float}
_NAMESPACES: weakref.WeakKeyDictionary[Any, tuple[int, list[str]]] = weakref.WeakKeyDictionary()


def load_method_modules() -> None:
    """Import every `opencampaign.methods.*` module so their implementations are registered."""
    global _loaded_methods
    if _loaded_methods:
        return
    from .. import methods

    for info in pkgutil.iter_modules(methods.__path__):
        if info.name != "registry":
            importlib.import_module(f"{methods.__name__}.{info.name}")
    importlib.import_module(f"{__package__}.methods")
    _loaded_methods = True


def element_to_j(elem: etree._Element) -> list[Any]:
    """lxml element -> compact JSON tree [name, attrs, children] understood by the prelude's `fromJ`."""
    kids: list[Any] = []
    if elem.text and elem.text.strip():
        kids.append(elem.text)
    for child in elem:
        if isinstance(child.tag, str):
            kids.append(element_to_j(child))
        if child.tail and child.tail.strip():
            kids.append(child.tail)
    tag = etree.QName(elem).localname if elem.prefix is None and "}" in str(elem.tag) else str(elem.tag)
    return [tag, {str(k): str(v) for k, v in elem.attrib.items()}, kids]


def parse_xml(text: str) -> etree._Element:
    return etree.fromstring(text.encode("utf-8"), _PARSER)


class ScriptApi:
    """One run's host: the caller, its log, the options it set and the libraries it loaded."""

    def __init__(self, instance: Any, ctx: CallContext, *, default_line_count: int = 10000):
        self.instance = instance
        self.ctx = ctx
        parent = _ACTIVE.get()
        self.logs: list[LogEntry] = parent.logs if parent is not None else []  # nested JS methods log here too
        self.loaded: set[str] = set()
        self.default_line_count = default_line_count
        load_method_modules()

    # ---- dispatch
    def handle(self, op: str, args: Any) -> Any:
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise HostError("JST-310000", f"unknown host operation {op!r}")
        return handler(args)

    def op_call(self, a: dict[str, Any]) -> dict[str, Any]:
        registry = self.instance.registry
        schema = registry.find(a["schema"])
        if schema is None:
            raise HostError("XSV-350023", f"Schema '{a['schema']}' is not defined.")
        method = registry.method(schema.id, a["method"])
        if method is None:
            raise HostError("SOP-330011", f"Method '{a['method']}' of schema '{schema.id}' is not defined.")
        this = None
        if not method.static:
            this = parse_xml(a["this"]) if a.get("this") else etree.Element(schema.name, xtkschema=schema.id)
        params = {p.name: self._param(p, v) for p, v in zip(method.inputs, a.get("args") or [], strict=False)}
        call = MethodCall(self.instance, self.ctx, schema, method, this, params)
        token = _ACTIVE.set(self)
        try:
            result = self._call(call)
        finally:
            _ACTIVE.reset(token)
        outputs = [self._output(v, a.get("json", False)) for v in result.outputs]
        value = None if not outputs else outputs[0] if len(outputs) == 1 else outputs
        new_this = result.this if result.this is not None else None
        return {"value": value, "this": element_to_j(new_this) if new_this is not None else None}

    def _call(self, call: MethodCall) -> Any:
        try:
            return REGISTRY.call(call)
        except MethodError as exc:
            if exc.code != "SOP-330006":
                raise HostError(exc.code, exc.message) from exc
            fallback = _FALLBACKS.get(f"{call.schema.id}#{call.method.name}")
            if fallback is None:
                raise HostError(exc.code, exc.message) from exc
            return fallback(self, call)

    def _param(self, p: Param, v: Any) -> Any:
        if isinstance(v, dict) and "$xml" in v:
            v = parse_xml(v["$xml"]) if p.type in _XML_TYPES else v["$xml"]
        elif isinstance(v, dict) and "$date" in v:
            v = v["$date"]
        if p.type in _XML_TYPES:
            if isinstance(v, str):
                return parse_xml(v)
            if isinstance(v, dict):
                from ..query.simplejson import json_document_to_xml

                return json_document_to_xml(v)
            return v
        if v is None:
            return None
        if p.type in _INT_TYPES:
            return int(float(v))
        if p.type in _FLOAT_TYPES:
            return float(v)
        if p.type == "boolean":
            return v if isinstance(v, bool) else str(v).lower() in ("1", "true")
        return v if isinstance(v, str) else str(v) if not isinstance(v, (int, float)) else v

    @staticmethod
    def _output(v: Any, as_json: bool) -> Any:
        if isinstance(v, etree._ElementTree):
            v = v.getroot()
        if isinstance(v, etree._Element):
            if as_json:
                from ..query.simplejson import xml_to_simplejson

                return xml_to_simplejson(v)
            return {"$xmlj": element_to_j(v)}
        if isinstance(v, (datetime, date)):
            return {"$date": v.isoformat()}
        return v

    # ---- conversions used by the prelude
    def op_toXml(self, a: dict[str, Any]) -> list[Any]:
        from ..query.simplejson import json_document_to_xml

        doc = a["json"]
        schema_id = a.get("schema") or ""
        name = schema_id.split(":")[-1] if schema_id else "document"
        if isinstance(doc, dict) and len(doc) == 1 and isinstance(next(iter(doc.values())), dict):
            name, doc = next(iter(doc.items()))
        elem = _simplejson_element(name, doc, json_document_to_xml)
        return element_to_j(elem)

    def op_toJson(self, a: dict[str, Any]) -> Any:
        from ..query.simplejson import xml_to_simplejson

        return xml_to_simplejson(parse_xml(a["xml"]))

    # ---- options
    def op_getOption(self, a: dict[str, Any]) -> Any:
        storage = self.instance.storage
        table = storage.table("xtk:option")
        with storage.engine_for("xtk:option").connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.sName == a["name"])).mappings().first()
        if row is None:
            return ""
        for col in ("sStringValue", "mMemoValue", "iLongValue", "dDoubleValue", "tsTimeStampValue"):
            if row.get(col) not in (None, ""):
                value = row[col]
                return {"$date": value.isoformat()} if isinstance(value, datetime) else value
        return ""

    def op_setOption(self, a: dict[str, Any]) -> None:
        from ..query.write import write

        value = a.get("value")
        if isinstance(value, dict) and "$date" in value:
            elem = etree.Element("option", name=a["name"], timeStampValue=value["$date"], dataType="7")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            elem = etree.Element("option", name=a["name"], doubleValue=repr(float(value)), dataType="5")
        else:
            elem = etree.Element("option", name=a["name"], stringValue="" if value is None else str(value), dataType="6")
        elem.set("xtkschema", "xtk:option")
        elem.set("_key", "@name")
        try:
            write(self.instance.storage, self.instance.registry, elem, self.ctx)
        except Exception as exc:  # DataApiError carries the Campaign code
            raise HostError(getattr(exc, "code", "") or "XSV-350000", getattr(exc, "message", None) or str(exc)) from exc

    # ---- libraries
    def op_loadLibrary(self, a: dict[str, Any]) -> str | None:
        name = a["name"]
        if name in self.loaded:
            return None
        self.loaded.add(name)
        return libraries.library(self.instance, name).code

    # ---- NLWS.<ns><Schema>.load(id): the entity through the queryDef engine (rights apply)
    def op_load(self, a: dict[str, Any]) -> list[Any]:
        schema = self.instance.registry.find(a["schema"])
        if schema is None:
            raise HostError("XSV-350023", f"Schema '{a['schema']}' is not defined.")
        key = schema.primary_key
        field = "@id" if schema.autopk or key is None else key.fields[0]
        if not field.startswith("@"):
            field = "@" + field
        value = a.get("id")
        literal = str(int(value)) if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()) \
            else "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
        qd = etree.Element("queryDef", schema=schema.id, operation="get")
        etree.SubElement(etree.SubElement(qd, "where"), "condition", expr=f"{field} = {literal}")
        out = self.op_call({"schema": "xtk:queryDef", "method": "ExecuteQuery", "this": etree.tostring(qd, encoding="unicode")})
        value = out["value"]
        if not isinstance(value, dict) or "$xmlj" not in value:
            raise HostError("XSV-350000", f"No entity of schema '{schema.id}' with {field} = {literal}.")
        return value["$xmlj"]  # type: ignore[no-any-return]

    # ---- SQL (trusted callers only)
    def op_sql(self, a: dict[str, Any]) -> Any:
        if not self.ctx.allow_sql:
            raise HostError("XSV-350010", f"The operator '{self.ctx.login}' is not allowed to run SQL statements.")
        sql, binds = bind_campaign_sql(a["sql"], a.get("args") or [])
        storage = self.instance.storage
        engine = storage.engine(storage.roles[0])
        for schema in self.instance.registry.tables():  # the database holding the first table named
            if schema.sqltable and re.search(rf"\b{re.escape(schema.sqltable)}\b", sql, re.I):
                engine = storage.engine_for(schema.id)
                break
        with engine.begin() as conn:
            res = conn.execute(sa.text(sql), binds)
            if a["mode"] == "exec":
                return res.rowcount
            if a["mode"] == "select":
                return select_document(a.get("def", ""), res.fetchall())
            row = res.first()
        if row is None:
            return 0 if a["mode"] == "int" else ""
        return int(row[0] or 0) if a["mode"] == "int" else ("" if row[0] is None else str(row[0]))


def select_document(definition: str, rows: list[Any]) -> list[Any]:
    """sqlSelect's answer: `collection,@id:long,@email,name:string` -> <select><collection id=".." ...>
    (a name without `@` is a child element); columns are taken in order."""
    parts = [p.strip() for p in definition.split(",")]
    if not parts or not parts[0] or parts[0].startswith("@"):
        raise HostError("JST-310000", f"sqlSelect: invalid definition '{definition}' (expected 'collection,@col,...')")
    fields = [(f.split(":")[0], f.split(":")[1] if ":" in f else "string") for f in parts[1:] if f]
    kids: list[Any] = []
    for row in rows:
        attrs: dict[str, str] = {}
        elems: list[Any] = []
        for (name, type_), value in zip(fields, row, strict=False):
            if value is None:
                continue
            conv = _SQL_TYPES.get(type_)
            text = _sql_text(conv(value) if conv and not isinstance(value, str) else value)
            if name.startswith("@"):
                attrs[name[1:]] = text
            else:
                elems.append([name, {}, [text]])
        kids.append([parts[0], attrs, elems])
    return ["select", {}, kids]


def _sql_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _simplejson_element(name: str, doc: Any, convert: Any) -> etree._Element:
    try:
        return convert({name: doc})
    except TypeError:
        from ..query.simplejson import simplejson_to_xml

        return simplejson_to_xml(name, doc)


def bind_campaign_sql(sql: str, args: list[Any]) -> tuple[str, dict[str, Any]]:
    """`$(sz)`, `$(l)`, `$(dt)`, `$(b)`, `$(d)` placeholders become bound parameters, in order."""
    binds: dict[str, Any] = {}
    values = iter(args)

    def repl(m: re.Match[str]) -> str:
        key = f"p{len(binds)}"
        try:
            binds[key] = next(values)
        except StopIteration:
            raise HostError("JST-310000", f"no value for placeholder {m.group(0)}") from None
        return f":{key}"

    return re.sub(r"\$\((?:sz|l|dt|b|d|t|m|ts)\)", repl, sql), binds


def library_source(instance: Any, name: str) -> str:
    """The code of the `xtk:javascript` entity `ns:name.js` (cached, see libraries.py)."""
    return libraries.library(instance, name).source


# ---- built-in data methods, used when no registered implementation exists yet
def _query_doc(call: MethodCall) -> etree._Element:
    assert call.this is not None
    return call.this


def _execute_query(api: ScriptApi, call: MethodCall) -> Any:
    from ..methods.registry import MethodResult
    from ..query.querydef import execute_query

    out = execute_query(api.instance.storage, api.instance.registry, _query_doc(call), api.ctx,
                        default_line_count=api.default_line_count)
    return MethodResult(outputs=[out])


def _build_query(api: ScriptApi, call: MethodCall) -> Any:
    from ..methods.registry import MethodResult
    from ..query.querydef import build_query

    return MethodResult(outputs=[build_query(api.instance.storage, api.instance.registry, _query_doc(call), api.ctx)])


def _write(api: ScriptApi, call: MethodCall) -> Any:
    from ..methods.registry import MethodResult
    from ..query.write import write, write_collection

    doc = next(iter(call.params.values()), None)
    func = write_collection if call.method.name == "WriteCollection" else write
    func(api.instance.storage, api.instance.registry, doc, api.ctx)
    return MethodResult()


def _wrap_data_errors(func: Any) -> Any:
    def run(api: ScriptApi, call: MethodCall) -> Any:
        try:
            return func(api, call)
        except HostError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", "")
            if not code:
                raise
            raise HostError(str(code), str(getattr(exc, "message", None) or exc)) from exc

    return run


_FALLBACKS = {
    "xtk:queryDef#ExecuteQuery": _wrap_data_errors(_execute_query),
    "xtk:queryDef#BuildQuery": _wrap_data_errors(_build_query),
    "xtk:session#Write": _wrap_data_errors(_write),
    "xtk:session#WriteCollection": _wrap_data_errors(_write),
}


def method_signature(method: Method) -> str:
    return f"{method.name}({', '.join(p.name for p in method.inputs)})"


def registry_namespaces(registry: Any) -> list[str]:
    """The sorted namespaces of a schema registry (cached while its size is unchanged)."""
    cached = _NAMESPACES.get(registry)
    if cached is None or cached[0] != len(registry):
        cached = _NAMESPACES[registry] = (len(registry), sorted(registry.namespaces()))
    return cached[1]


def run_script(instance: Any, source: str, ctx: CallContext, *, limits: Any = None,
               globals: dict[str, Any] | None = None, returns: list[str] | None = None) -> Any:
    """Run a script as `ctx` (never admin by default); returns the engine's RunResult."""
    from .engine import ENGINE, METHOD_LIMITS
    from .methods import register_js_methods

    if instance is not None:
        register_js_methods(instance.registry)
    api = ScriptApi(instance, ctx)
    namespaces = registry_namespaces(instance.registry) if instance is not None else []
    return ENGINE.run(source, api, limits=limits or METHOD_LIMITS, globals=globals, namespaces=namespaces,
                      returns=returns)
