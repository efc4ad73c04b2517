"""Schema methods implemented in JavaScript (`<method name="M" library="ns:lib.js">`).

The library defines `<ns>_<schema>_<M>`; it receives the object (`this`, as XML) first for non-static
methods, then the inputs in declared order, and returns the output (several outputs: an array). Faults
thrown in JS (`throw "..."`, `throw "ABC-123456 text"`, errors with a `code`) become MethodErrors.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

from lxml import etree

from ..methods.registry import REGISTRY, MethodCall, MethodError, MethodResult
from ..schema.model import Method, Schema
from . import libraries
from .api import ScriptApi, element_to_j, parse_xml, registry_namespaces
from .engine import ENGINE, METHOD_LIMITS, HostError, Limits, ScriptError
from .libraries import Library

SCRIPT_FAULT = "JST-310000"


def function_name(schema: Schema, method: Method) -> str:
    return f"{schema.namespace}_{schema.name}_{method.name}"


def _arg(v: Any) -> Any:
    if isinstance(v, etree._ElementTree):
        v = v.getroot()
    if isinstance(v, etree._Element):
        return {"$xmlj": element_to_j(v)}
    if hasattr(v, "isoformat"):
        return {"$date": v.isoformat()}
    return v


def _typed(value: Any, type_: str) -> Any:
    if isinstance(value, dict) and "$xml" in value:
        return parse_xml(value["$xml"]) if type_ in ("DOMElement", "DOMDocument") else value["$xml"]
    if isinstance(value, dict) and "$date" in value:
        return value["$date"]
    if value is None:
        return None
    if type_ in ("long", "short", "byte", "int64"):
        return int(float(value))
    if type_ in ("double", "float"):
        return float(value)
    if type_ == "boolean":
        return bool(value) if not isinstance(value, str) else value.lower() in ("1", "true")
    if type_ in ("DOMElement", "DOMDocument") and isinstance(value, str):
        return parse_xml(value)
    return value if not isinstance(value, float) or not value.is_integer() or type_ != "string" else str(int(value))


def js_method(call: MethodCall, *, limits: Limits = METHOD_LIMITS) -> MethodResult:
    """The generic implementation registered for every method with a `library`."""
    method, schema = call.method, call.schema
    assert method.library is not None
    api = ScriptApi(call.instance, call.ctx)
    try:
        lib = libraries.library(call.instance, method.library)
    except HostError as exc:
        raise MethodError(exc.code, exc.message) from exc
    margs = {"f": function_name(schema, method), "lib": method.library,
             "this": None if method.static or call.this is None else _arg(call.this),
             "args": [_arg(call.params.get(p.name)) for p in method.inputs]}
    try:
        value = ENGINE.invoke(f"lib\x00{lib.name}\x00{lib.version}", _wrapper(lib), margs, api, limits=limits,
                              namespaces=_namespaces(call.instance), error_source=lib.source) or {}
    except ScriptError as exc:
        raise _fault(exc) from None
    outputs = method.outputs
    raw = value.get("result")
    if len(outputs) == 1:
        values = [raw]
    elif len(outputs) > 1:
        values = list(raw) if isinstance(raw, list) else [raw]
    else:
        values = []
    typed = [_typed(v, p.type) for v, p in zip(values, outputs, strict=False)]
    this = None
    if value.get("self") and isinstance(value["self"], dict) and "$xml" in value["self"]:
        this = parse_xml(value["self"]["$xml"])
    return MethodResult(outputs=typed, this=this)


@functools.lru_cache(maxsize=256)
def _wrapper(lib: Library) -> str:
    """JS evaluating to `function (margs)`. A declarations-only library is evaluated inside the closure and
    stays warm in the context; its functions are frozen, and the closure is dropped if a call rebinds one
    of them (no state survives a call). Other libraries are loaded (at global scope) on every call."""
    names = lib.functions
    if names is None:
        return "(function () { return function (m) { loadLibrary(m.lib); return __callLib(globalThis[m.f], m); }; })()"
    table = ", ".join(f"{n}: {n}" for n in names)
    stale = " || ".join(f"{n} !== __f.{n}" for n in names) or "false"
    return ("(function () {" + lib.code + "\n;var __f = {" + table + "};\n"
            "Object.keys(__f).forEach(function (k) { Object.freeze(__f[k]); if (__f[k].prototype) Object.freeze(__f[k].prototype); });\n"
            "var __w = function (m) { return __callLib(Object.prototype.hasOwnProperty.call(__f, m.f) ? __f[m.f] : undefined, m); };\n"
            f"__w.stale = function () {{ return {stale}; }};\nreturn __w; }})()")


def _fault(error: ScriptError) -> MethodError:
    where = [f"line {error.line}"] if error.line else []
    code = error.code or SCRIPT_FAULT
    return MethodError(code, error.message, where)


def _namespaces(instance: Any) -> list[str]:
    return registry_namespaces(instance.registry) if instance is not None else []


_REGISTERED: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def register_js_methods(schema_registry: Any) -> list[str]:
    """Register `js_method` for every schema method declaring a `library` (once per schema registry, unless
    an implementation was replaced since); returns the keys."""
    done = _REGISTERED.get(schema_registry)
    if done is not None and all(REGISTRY._impls.get(k) is js_method for k in done):
        return done
    keys = []
    for schema in schema_registry:
        for method in schema.methods:
            if method.library:
                key = f"{schema.id}#{method.name}"
                REGISTRY.register(key, js_method)
                keys.append(key)
    _REGISTERED[schema_registry] = keys
    return keys
