"""OpenAPI 3.0 document generated from the resource mapping, and a self-contained docs page."""

from __future__ import annotations

import html
from typing import Any

from .mapping import APIS, Field, Mapping, Resource
from .metadata import field_type
from .resources import INT_TYPES

_INT_BOUNDS = {"byte": (-128, 127), "short": (-(2**15), 2**15 - 1), "long": (-(2**31), 2**31 - 1),
               "int64": (-(2**63), 2**63 - 1)}
ERROR = {"$ref": "#/components/schemas/Error"}


def _field_schema(f: Field) -> dict[str, Any]:
    if f.enum is not None:
        return {"type": "string", "enum": [v.name for v in f.enum.values]}
    kind = field_type(f)
    if f.type in INT_TYPES:
        low, high = _INT_BOUNDS[f.type]
        return {"type": "integer", "minimum": low, "maximum": high}
    if f.type in ("double", "float", "percent", "money", "timespan"):
        return {"type": "number", "minimum": -1e15, "maximum": 1e15}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "date":
        return {"type": "string", "format": "date", "example": "2020-01-31"}
    if kind == "datetime":
        return {"type": "string", "example": "2020-01-31 12:00:00.000Z", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$"}
    out: dict[str, Any] = {"type": "string"}
    if f.length:
        out["maxLength"] = f.length
    return out


def _body_schema(resource: Resource, api: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in resource.visible_fields(api):
        if f.read_only:
            continue
        target = props
        for step in f.path[:-1]:
            target = target.setdefault(step, {"type": "object", "properties": {}, "additionalProperties": False})[
                "properties"]
        target[f.path[-1]] = _field_schema(f)
    return {"type": "object", "properties": props, "additionalProperties": False}


def _list_params() -> list[dict[str, Any]]:
    return [
        {"name": "_lineCount", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "_lineStart", "in": "query", "schema": {"type": "string"},
         "description": "Opaque cursor: follow next.href"},
        {"name": "_forcePagination", "in": "query", "schema": {"type": "boolean"}},
    ]


def _responses(ok: str, *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {ok: {"description": "Success", "content": {"application/json": {"schema": {}}}}
                           if ok != "204" else {"description": "No content"}}
    for code in (400, 401, 404, *codes):
        out[str(code)] = {"description": "Error", "content": {"application/json": {"schema": ERROR}}}
    return out


PKEY = {"name": "PKey", "in": "path", "required": True, "schema": {"type": "string"}}


def _resource_paths(resource: Resource, api: str) -> dict[str, Any]:
    name, tag = resource.name, f"{api}/{resource.name}"
    body = {"required": True, "content": {"application/json": {"schema": _body_schema(resource, api)}}}
    order = {"name": "_order", "in": "query", "schema": {
        "type": "string", "enum": [f.name for f in resource.visible_fields(api) if f.sortable]
        + [f"{f.name} desc" for f in resource.visible_fields(api) if f.sortable]}}
    paths: dict[str, Any] = {
        f"/{api}/{name}": {
            "get": {"tags": [tag], "summary": f"List {resource.label}", "parameters": [*_list_params(), order],
                    "responses": _responses("200")},
            "post": {"tags": [tag], "summary": f"Create a {name}", "requestBody": body,
                     "responses": _responses("201", 409)},
        },
        f"/{api}/{name}/_count": {"get": {"tags": [tag], "summary": "Count", "responses": _responses("200")}},
        f"/{api}/{name}/{{PKey}}": {
            "parameters": [PKEY],
            "get": {"tags": [tag], "summary": f"Get a {name}", "responses": _responses("200")},
            "patch": {"tags": [tag], "summary": f"Update a {name}", "requestBody": body,
                      "responses": {**_responses("200", 409), "204": {"description": "Empty body"}}},
            "delete": {"tags": [tag], "summary": f"Delete a {name}", "responses": _responses("200")},
        },
        f"/{api}/resourceType/{name}": {"get": {"tags": [tag], "summary": "Metadata", "responses": _responses("200")}},
    }
    for flt in resource.filters.values():
        params = [{"name": p.partition("=")[0], "in": "query", "required": True, "schema": {"type": "string"}}
                  for p in flt.params]
        paths[f"/{api}/{name}/{flt.name}"] = {"get": {
            "tags": [tag], "summary": flt.label, "parameters": [*params, *_list_params()],
            "responses": _responses("200")}}
    for coll in resource.collections.values():
        entry: dict[str, Any] = {"parameters": [PKEY], "get": {
            "tags": [tag], "summary": f"{coll.name} of a {name}", "parameters": _list_params(),
            "responses": _responses("200")}}
        if coll.resource == "subscription":
            ref = "service" if resource.schema_id == "nms:recipient" else "subscriber"
            entry["post"] = {"tags": [tag], "summary": "Subscribe", "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": [ref], "properties": {ref: {
                    "type": "object", "required": ["PKey"], "properties": {"PKey": {"type": "string"}}}}}}}},
                "responses": _responses("201")}
            paths[f"/{api}/{name}/{{PKey}}/{coll.name}/{{member}}"] = {
                "parameters": [PKEY, {"name": "member", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"tags": [tag], "summary": "Get a subscription", "responses": _responses("200")},
                "delete": {"tags": [tag], "summary": "Unsubscribe", "responses": _responses("204")}}
        paths[f"/{api}/{name}/{{PKey}}/{coll.name}"] = entry
    return paths


def openapi_document(mapping: Mapping, base: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for api in APIS:
        paths[f"/{api}"] = {"get": {"tags": [api], "summary": f"Resources of {api}", "responses": _responses("200")}}
        for resource in mapping.top_level(api):
            paths.update(_resource_paths(resource, api))
    return {
        "openapi": "3.0.3",
        "info": {"title": "opencampaign REST API", "version": "1.0",
                 "description": "Campaign Standard-style REST API (profileAndServices, profileAndServicesExt, "
                                "customResources). PKeys are opaque: follow hrefs."},
        "servers": [{"url": base}],
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "integer"}, "message": {"type": "string"}}}},
            "securitySchemes": {
                "sessionToken": {"type": "apiKey", "in": "header", "name": "X-Session-Token"},
                "securityToken": {"type": "apiKey", "in": "header", "name": "X-Security-Token"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"sessionToken": [], "securityToken": []}, {"basic": []}],
    }


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>opencampaign REST API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}h2{border-bottom:1px solid #ccc}
.op{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.4em}.m{display:inline-block;width:5em;
font-weight:bold}.get{color:#2a6}.post{color:#26a}.patch{color:#a62}.delete{color:#a22}pre{background:#f6f6f6;
padding:.5em;overflow:auto;max-height:30em}input,textarea{font:inherit}textarea{width:100%%;height:6em}</style>
</head><body><h1>opencampaign REST API</h1><p>OpenAPI document: <a href="%(spec)s">%(spec)s</a>.
Authorization header (e.g. <code>Basic …</code>): <input id="auth" size="40"></p><div id="ops"></div>
<script>
const spec = "%(spec)s";
function el(t, a, ...c){const e=document.createElement(t);Object.assign(e,a||{});c.forEach(x=>e.append(x));return e;}
fetch(spec).then(r=>r.json()).then(doc=>{
  const root=doc.servers[0].url, ops=document.getElementById("ops"); let last="";
  for(const [path,item] of Object.entries(doc.paths)){
    for(const m of ["get","post","patch","delete"]){ if(!item[m]) continue;
      const tag=(item[m].tags||[""])[0]; if(tag!==last){ops.append(el("h2",{textContent:tag}));last=tag;}
      const url=el("input",{value:root+path,size:80}), body=el("textarea",{placeholder:"JSON body"}), out=el("pre");
      const run=el("button",{textContent:"Send",onclick:async()=>{
        const h={"Content-Type":"application/json"}, a=document.getElementById("auth").value; if(a) h.Authorization=a;
        const r=await fetch(url.value,{method:m.toUpperCase(),headers:h,body:m==="get"||m==="delete"?undefined:body.value||undefined});
        out.textContent=r.status+"\\n"+await r.text();}});
      ops.append(el("div",{className:"op"},el("span",{className:"m "+m,textContent:m.toUpperCase()}),
        el("code",{textContent:path})," ",el("span",{textContent:item[m].summary||""}),el("br"),url,
        m==="post"||m==="patch"?body:"",run,out));
    }
  }
});
</script></body></html>"""


def docs_page(spec_url: str) -> str:
    return _PAGE % {"spec": html.escape(spec_url)}
