"""JSON shapes of resources (§4.2): rows to items, JSON bodies to field values, and selections."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from ..query.values import parse_value
from .data import Selection, p
from .errors import RestError, bad_request
from .mapping import EXT_API, Field, Resource
from .pkeys import PKeyCodec

NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
INT_TYPES = {"byte", "short", "long", "int64"}
FLOAT_TYPES = {"float", "double", "percent", "money", "timespan"}
DATETIME_TYPES = {"datetime", "datetimetz", "datetimenotz"}


def selection(resource: Resource, api: str, only: Field | None = None) -> Selection:
    """The primary key, and every visible field and link id (or just the field `only`)."""
    fields: dict[str, str] = {f"k{i}": p(x) for i, x in enumerate(resource.pk_xpaths)}
    types = {f"k{i}": t for i, t in enumerate(resource.pk_types)}
    if only is not None:
        fields["f_" + only.name], types["f_" + only.name] = p(only.xpath), only.type
        return Selection(resource.schema_id, fields, types=types)
    for f in resource.visible_fields(api):
        fields["f_" + f.name] = p(f.xpath)
        types["f_" + f.name] = f.type
    for link in resource.visible_links(api):
        fields["l_" + link.name] = p(link.id_xpath)
        types["l_" + link.name] = link.id_type
    return Selection(resource.schema_id, fields, types=types)


def pk_values(resource: Resource, row: dict[str, Any]) -> list[Any]:  # typed by the selection
    return [row[f"k{i}"] for i in range(len(resource.pk_xpaths))]


def format_json(f: Field, value: Any) -> Any:
    if f.enum is not None:
        found = f.enum.by_value(str(int(value) if isinstance(value, bool | int | float) else value or 0))
        return found.name if found else value
    if value is None:
        return "" if f.type in ("string", "memo", "html", "CDATA", "uuid") else None
    if f.type == "boolean":
        return bool(value)
    if f.type in DATETIME_TYPES and isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if f.type == "date" and isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return value


class Shaper:
    """Builds items for one API under one base URL."""

    def __init__(self, codec: PKeyCodec, base: str, api: str, mapping: Any):
        self.codec = codec
        self.base = base.rstrip("/")
        self.api = api
        self.mapping = mapping

    def href(self, path: str) -> str:
        return f"{self.base}/{self.api}/{path.lstrip('/')}"

    def pkey(self, resource: Resource, values: list[Any]) -> str:
        return self.codec.encode(resource.schema_id, [_plain(v) for v in values])

    def item(self, resource: Resource, row: dict[str, Any], path: str | None = None) -> dict[str, Any]:
        pkey = self.pkey(resource, pk_values(resource, row))
        path = path or f"{resource.name}/{pkey}"
        out: dict[str, Any] = {"PKey": pkey, "href": self.href(path)}
        for f in resource.visible_fields(self.api):
            target = out
            for step in f.path[:-1]:
                target = target.setdefault(step, {})
            target[f.path[-1]] = format_json(f, row.get("f_" + f.name))
        for link in resource.visible_links(self.api):
            out[link.name] = self.link(link.target, row.get("l_" + link.name), row.get("t_" + link.name))
        for coll in resource.collections.values():
            if self.mapping.get(self.api, coll.resource) is not None or coll.resource in ("subscription", "history"):
                out[coll.name] = {"href": self.href(f"{path}/{coll.name}/")}
        return out

    def link(self, target_schema: str, target_id: Any, title: Any) -> dict[str, Any]:
        if target_id in (None, 0, ""):
            return {}
        target = self.mapping.by_schema.get(target_schema)
        pkey = self.codec.encode(target_schema, [_plain(target_id)])
        out: dict[str, Any] = {"PKey": pkey}
        if target is not None and target.top_level and self.api in target.apis:
            out["href"] = self.href(f"{target.name}/{pkey}")
        if title is not None:
            out["title"] = str(title)
        return out


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | str | float) or value is None else str(value)


def parse_body(resource: Resource, api: str, body: Any, *, codec: PKeyCodec, mapping: Any,
               update: bool) -> dict[str, Any]:
    """A JSON object to `xpath -> Python value`; unknown or read-only properties are refused."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    fields = {f.path: f for f in resource.visible_fields(api)}
    links = {link.name: link for link in resource.visible_links(api)}
    values: dict[str, Any] = {}

    def walk(obj: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in obj.items():
            path = (*prefix, key)
            if not prefix and key in ("PKey", "href"):
                continue
            if not prefix and key in resource.collections:
                raise bad_request(f"'{key}' property is not valid: use its href to change it")
            if not prefix and key in links:
                values[links[key].id_xpath] = link_id(links[key], value, codec)
                continue
            f = fields.get(path)
            if f is None:
                if isinstance(value, dict) and any(p[: len(path)] == path for p in fields):
                    walk(value, path)
                    continue
                raise bad_request(f"'{key}' property is not valid")
            if f.read_only:
                raise bad_request(f"Cannot update the '{f.name}' property that is read-only")
            values[f.write_xpath or f.xpath] = parse_json_value(f, value)

    walk(body, ())
    return values


def link_id(link: Any, value: Any, codec: PKeyCodec) -> Any:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("PKey"), str):
        raise bad_request(f"'{link.name}' must be an object with a 'PKey'")
    decoded = codec.decode(link.target, value["PKey"])
    if decoded is None or len(decoded) != 1:
        raise RestError(404, f"Unable to decrypt PKey. (PKey={value['PKey'][:64]})")
    return decoded[0]


def parse_json_value(f: Field, value: Any) -> Any:
    name = f.name
    if value is None:
        return None
    if f.enum is not None:
        found = f.enum.by_name(str(value)) if isinstance(value, str) else f.enum.by_value(str(value))
        if found is None:
            allowed = ", ".join(v.name for v in f.enum.values)
            raise bad_request(f"Invalid value for '{name}': expected one of {allowed}")
        return int(found.value) if f.type in INT_TYPES else found.value
    try:
        if f.type == "boolean":
            if isinstance(value, bool):
                return value
            if value in (0, 1, "0", "1", "true", "false"):
                return value in (1, "1", "true")
            raise ValueError("expected a boolean")
        if f.type in INT_TYPES or f.type in FLOAT_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("expected a number")
            parsed = parse_value(f.type, str(value))
            return parsed
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if NOT_XML.search(value):
            raise ValueError("control characters are not allowed")
        if f.type in DATETIME_TYPES or f.type in ("date", "time"):
            return parse_value(f.type, value) if value else None
        parsed = parse_value(f.type, value)
    except ValueError as exc:
        raise bad_request(f"Invalid value for '{name}': {exc}") from None
    if isinstance(parsed, str) and f.length and len(parsed) > f.length:
        raise bad_request(f"Value of '{name}' is too long ({len(parsed)} characters, maximum {f.length})")
    return parsed


def is_ext(api: str) -> bool:
    return api == EXT_API
