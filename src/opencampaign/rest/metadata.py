"""Resource metadata (`resourceType/<name>`, §4.4) and the filter catalogue, from the mapping."""

from __future__ import annotations

from typing import Any

from .mapping import Field, Mapping, Resource
from .resources import Shaper


def field_type(f: Field) -> str:
    if f.enum is not None:
        return "enumeration"
    return {"long": "long", "int64": "int64", "byte": "byte", "short": "short", "double": "double",
            "float": "float", "boolean": "boolean", "date": "date", "datetime": "datetime"}.get(f.type, "string")


def field_metadata(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"apiName": f.name, "type": field_type(f), "label": f.label, "help": f.desc,
                           "category": f.path[0] if len(f.path) > 1 else "", "sortable": f.sortable,
                           "readOnly": f.read_only, "mandatory": f.mandatory, "path": "/".join(f.path)}
    if f.length:
        out["length"] = f.length
    if f.enum is not None:
        out["values"] = {v.name: {"label": v.label, "value": v.value} for v in f.enum.values}
    return out


def metadata(resource: Resource, shaper: Shaper, mapping: Mapping) -> dict[str, Any]:
    content = {f.name: field_metadata(f) for f in resource.visible_fields(shaper.api)}
    for link in resource.visible_links(shaper.api):
        target = mapping.by_schema.get(link.target)
        content[link.name] = {"apiName": link.name, "type": "link", "label": link.label, "readOnly": False,
                              "resType": target.name if target else link.target, "resTarget": link.target,
                              "sortable": False, "mandatory": False}
    for coll in resource.collections.values():
        content[coll.name] = {"apiName": coll.name, "type": "collection", "label": coll.label,
                              "resType": coll.resource, "readOnly": True, "sortable": False, "mandatory": False}
    return {
        "content": content,
        "data": f"/{shaper.api}/{resource.name}/",
        "filters": {"href": shaper.href(f"resourceType/{resource.name}/filters")},
        "help": resource.schema.desc,
        "href": shaper.href(f"{resource.name}/metadata"),
        "label": resource.label,
        "name": resource.name,
        "schema": resource.schema_id,
        "type": "item",
        "readOnly": False,
        "mandatory": False,
        "pkgStatus": "never",
    }


def filters_catalogue(resource: Resource, shaper: Shaper) -> dict[str, Any]:
    content = {}
    for flt in resource.filters.values():
        params = [p.partition("=")[0] for p in flt.params]
        query = "&".join(f"{p}=${p}" for p in params)
        content[flt.name] = {
            "PKey": flt.name, "category": "", "condition": flt.condition, "formType": "webForm",
            "label": flt.label, "parameters": params,
            "data": f"/{shaper.api}/{resource.name}/{flt.name}" + (f"?{query}" if query else ""),
            "metadata": {"href": shaper.href(f"resourceType/{resource.name}")},
        }
    return {"content": content, "href": shaper.href(f"resourceType/{resource.name}/filters")}
