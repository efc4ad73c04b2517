"""REST request handling over the resource mapping (synchronous; run in the thread pool)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlencode

from lxml import etree

from ..context import CallContext
from ..methods.nms_subscription import call_method
from ..query.values import parse_value
from .data import DataAccess, Selection, p
from .errors import RestError, bad_request, not_found
from .mapping import EXT_API, Field, Filter, Mapping, Resource
from .metadata import filters_catalogue, metadata
from .pkeys import PKeyCodec, load_secret
from .resources import Shaper, format_json, parse_body, parse_json_value, pk_values, selection

DEFAULT_LINE_COUNT = 25
MAX_LINE_COUNT = 1000
NULL_FLAG = "nullflag"
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class Request:
    """One call: who, where, and the helpers that depend on both."""

    def __init__(self, ctx: CallContext, api: str, query: dict[str, str], shaper: Shaper):
        self.ctx = ctx
        self.api = api
        self.query = query
        self.shaper = shaper
        self.variables: dict[str, Any] = {}

    def var(self, value: Any) -> str:
        name = f"rest{len(self.variables)}"
        self.variables[name] = value
        return f"$({name})"

    @property
    def data_ctx(self) -> CallContext:
        return dataclasses.replace(self.ctx, variables={**self.ctx.variables, **self.variables})


class Handlers:
    def __init__(self, instance: Any, base: str):
        self.instance = instance
        self.base = base
        self.mapping = Mapping(instance.registry)
        self.codec = PKeyCodec(load_secret(instance.data_dir))
        self.data = DataAccess(instance)

    # -- dispatch ------------------------------------------------------------------------------
    def dispatch(self, ctx: CallContext, method: str, api: str, path: str, query: dict[str, str],
                 body: Any, root: str) -> tuple[int, Any]:
        segs = [s for s in path.split("/") if s]
        if segs and segs[-1].endswith(".json"):
            segs[-1] = segs[-1][:-5]
        req = Request(ctx, api, query, Shaper(self.codec, root, api, self.mapping))
        if not segs:
            _only(method, "GET")
            return 200, self.api_index(req)
        head, rest = segs[0], segs[1:]
        if head == "resourceType" and rest:
            _only(method, "GET")
            resource = self._resource(api, rest[0], top_only=False)
            if rest[1:] == ["filters"]:
                return 200, filters_catalogue(resource, req.shaper)
            if len(rest) > 1:
                raise not_found("Unknown metadata path")
            return 200, metadata(resource, req.shaper, self.mapping)
        if head == "history" and len(rest) == 1 and api != "customResources":
            _only(method, "GET")
            profile = self._resource(api, "profile")
            rid = self._decode(profile, rest[0])[0]
            history = self.mapping.resources["history"]
            return 200, self.list(req, history, [f"[@recipient-id] = {req.var(rid)}"], f"history/{rest[0]}")
        resource = self._resource(api, head)
        if not rest:
            if method == "POST":
                return 201, self.create(req, resource, body)
            _only(method, "GET")
            return 200, self.list(req, resource, [], resource.name)
        first = rest[0]
        if first == "metadata" and len(rest) == 1:
            _only(method, "GET")
            return 200, metadata(resource, req.shaper, self.mapping)
        if first.startswith("@"):
            return self.item_path(req, method, resource, first, rest[1:], body)
        pkey = self._by_business_key(req, resource, first)
        if pkey is not None:
            return self.item_path(req, method, resource, pkey, rest[1:], body)
        _only(method, "GET")
        return 200, self.filtered(req, resource, rest)

    def api_index(self, req: Request) -> dict[str, Any]:
        content = []
        for resource in self.mapping.top_level(req.api):
            content.append({"content": resource.label, "data": f"/{req.api}/{resource.name}/",
                            "href": req.shaper.href(f"resourceType/{resource.name}"), "name": resource.name,
                            "type": "collection"})
        return {"content": content}

    def _resource(self, api: str, name: str, *, top_only: bool = True) -> Resource:
        resource = self.mapping.get(api, name)
        if resource is None or (top_only and not resource.top_level):
            raise not_found(f"Unknown resource '{name[:64]}' in '{api}'")
        return resource

    def _decode(self, resource: Resource, pkey: str) -> list[Any]:
        values = self.codec.decode(resource.schema_id, pkey)
        if values is None or len(values) != len(resource.pk_xpaths):
            raise not_found(f"Unable to decrypt PKey. (PKey={pkey[:64]})")
        return values

    def _by_business_key(self, req: Request, resource: Resource, value: str) -> str | None:
        """`/service/<name>`: a single-field unique key of the schema can stand for the PKey (§4.2)."""
        if value in resource.filters or value == "_count" or value in resource.fields:
            return None
        for key in resource.schema.keys:
            field = next((f for f in resource.fields.values() if [f.xpath] == key.fields), None)
            if key.internal or field is None:
                continue
            try:
                typed = parse_json_value(field, value)
            except RestError:
                continue
            sel = Selection(resource.schema_id, {f"k{i}": p(x) for i, x in enumerate(resource.pk_xpaths)},
                            where=[f"{p(field.xpath)} = {req.var(typed)}"], limit=2,
                            types={f"k{i}": t for i, t in enumerate(resource.pk_types)})
            rows = self.data.select(sel, req.data_ctx)
            if len(rows) == 1:
                return req.shaper.pkey(resource, pk_values(resource, rows[0]))
        return None

    # -- lists -----------------------------------------------------------------------------------
    def filtered(self, req: Request, resource: Resource, segs: list[str]) -> Any:
        where: list[str] = []
        path = [resource.name]
        count = False
        projection: Field | None = None
        for i, seg in enumerate(segs):
            if seg == "_count" and i == len(segs) - 1:
                count = True
            elif seg in resource.filters:
                where.append(self._filter_condition(req, resource, resource.filters[seg]))
                path.append(seg)
            elif i == len(segs) - 1 and seg in {f.name for f in resource.visible_fields(req.api)}:
                projection = resource.fields[seg]
                path.append(seg)
            else:
                raise not_found(f"Unknown filter or field '{seg[:64]}' of resource '{resource.name}'")
        if count:
            return {"count": self.count(req, resource, where)}
        return self.list(req, resource, where, "/".join(path), projection=projection)

    def _filter_condition(self, req: Request, resource: Resource, flt: Filter) -> str:
        values: dict[str, str] = {}
        for spec in flt.params:
            name, _, like = spec.partition("=")
            raw = req.query.get(name)
            if raw is None or raw == "":
                raise bad_request(f"Missing parameter '{name}' of filter '{flt.name}'")
            field = resource.fields.get(like or name)
            values[name] = req.var(parse_json_value(field, raw) if field is not None else raw)
        if flt.condition.startswith("byText"):
            return self._by_text(req, resource, flt, req.query["text"])
        return "(" + _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), flt.condition) + ")"

    def _by_text(self, req: Request, resource: Resource, flt: Filter, text: str) -> str:
        default = flt.condition.partition(":")[2] or "@email,@lastName"
        xpaths = [p(x) for x in default.split(",")]
        wanted = req.query.get("filterType")
        if wanted:
            field = resource.fields.get(wanted)
            if field is None or not field.sortable or field.type != "string":
                raise bad_request(f"Invalid filterType '{wanted[:64]}'")
            xpaths = [p(field.xpath)]
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        pattern = req.var(escaped)
        return "(" + " OR ".join(f"{x} LIKE {pattern}" for x in xpaths) + ")"

    def count(self, req: Request, resource: Resource, where: list[str]) -> int:
        sel = Selection(resource.schema_id, {}, where=where)
        return self.data.count(sel, req.data_ctx)

    def _order(self, req: Request, resource: Resource) -> list[tuple[Field, bool]]:
        text = req.query.get("_order", "").strip()
        order: list[tuple[Field, bool]] = []
        for part in [s.strip() for s in text.split(",") if s.strip()]:
            name, _, direction = part.partition(" ")
            field = resource.fields.get(name)
            if field is None or not field.sortable or (field.custom and req.api != EXT_API):
                raise bad_request(f"Cannot sort on '{name[:64]}'")
            direction = direction.strip().lower()
            if direction not in ("", "asc", "desc"):
                raise bad_request(f"Invalid sort direction '{direction[:16]}'")
            order.append((field, direction == "desc"))
        return order

    def _line_count(self, req: Request) -> int:
        raw = req.query.get("_lineCount", str(DEFAULT_LINE_COUNT))
        try:
            value = int(raw)
        except ValueError:
            raise bad_request("_lineCount must be an integer") from None
        if not 1 <= value <= MAX_LINE_COUNT:
            raise bad_request(f"_lineCount must be between 1 and {MAX_LINE_COUNT}")
        return value

    def list(self, req: Request, resource: Resource, where: list[str], path: str, *,
             projection: Field | None = None, item_path: str | None = None) -> dict[str, Any]:
        line_count = self._line_count(req)
        order = self._order(req, resource)
        # (expression, descending, type); each sort field is preceded by its "is set" flag so that
        # NULLs sort lowest whatever the database's NULL ordering.
        keys: list[tuple[str, bool, str]] = []
        for f, desc in order:
            keys += [(f"Iif({p(f.xpath)} IS NULL, 0, 1)", desc, NULL_FLAG), (p(f.xpath), desc, f.type)]
        keys += [(p(x), False, t) for x, t in zip(resource.pk_xpaths, resource.pk_types, strict=True)]
        purpose = f"cursor:{resource.schema_id}:{req.query.get('_order', '')}"
        where = list(where)
        start = req.query.get("_lineStart")
        if start:
            values = self.codec.decode(purpose, start)
            if values is None or len(values) != len(keys):
                raise bad_request("Invalid _lineStart: follow the next.href of a previous page")
            where.append(self._after(req, keys, values))
        sel = selection(resource, req.api, only=projection)
        sel.fields.update({f"o{i}": k[0] for i, k in enumerate(keys)})
        sel.types.update({f"o{i}": "long" if k[2] == NULL_FLAG else k[2] for i, k in enumerate(keys)})
        sel.where, sel.limit = where, line_count + 1
        sel.order = [(k[0], k[1]) for k in keys]
        rows = self.data.select(sel, req.data_ctx)
        more = len(rows) > line_count
        rows = rows[:line_count]
        if projection is None:
            self.titles(req, resource, rows)
        if projection is not None:
            content: list[Any] = [format_json(projection, r["f_" + projection.name]) for r in rows]
        else:
            prefix = item_path or resource.name
            content = [req.shaper.item(resource, r, f"{prefix}/{req.shaper.pkey(resource, pk_values(resource, r))}")
                       for r in rows]
        params = {k: v for k, v in req.query.items() if k not in ("_lineStart", "_count")}
        out: dict[str, Any] = {"content": content}
        count_params = {k: v for k, v in params.items() if k not in ("_lineCount", "_order", "_forcePagination")}
        count_path = path.rsplit("/", 1)[0] if projection is not None else path
        out["count"] = {"href": req.shaper.href(f"{count_path}/_count") + _qs(count_params)}
        if more:
            last = [rows[-1][f"o{i}"] for i in range(len(keys))]
            for i, key in enumerate(keys):
                if key[2] == NULL_FLAG and not last[i]:
                    last[i + 1] = None
            cursor = self.codec.encode(purpose, [_jsonable(v) for v in last])
            out["next"] = {"href": req.shaper.href(path) + _qs({**params, "_lineCount": str(line_count),
                                                                "_lineStart": cursor})}
        out["serverSidePagination"] = True
        return out

    def titles(self, req: Request, resource: Resource, rows: list[dict[str, Any]]) -> None:
        """Sets `t_<link>` on rows: one query per link on the (small) target table, not a join per row."""
        for link in resource.visible_links(req.api):
            ids = sorted({r["l_" + link.name] for r in rows} - {None, 0, ""}, key=str)
            if not link.title_xpath or not ids:
                continue
            cond = " OR ".join(f"{p(link.dst_xpath)} = {req.var(i)}" for i in ids)
            sel = Selection(link.target, {"i": p(link.dst_xpath), "t": p(link.title_xpath)}, where=[cond],
                            types={"i": link.id_type}, limit=len(ids))
            found = {r["i"]: r["t"] for r in self.data.select(sel, req.data_ctx)}
            for row in rows:
                row["t_" + link.name] = found.get(row["l_" + link.name])

    def _after(self, req: Request, keys: list[tuple[str, bool, str]], values: list[Any]) -> str:
        """Keyset condition: rows strictly after `values` in the order of `keys` (NULLs lowest)."""
        terms = []
        for i, (xpath, desc, xtk_type) in enumerate(keys):
            xtk_type = "long" if xtk_type == NULL_FLAG else xtk_type
            value = _typed(xtk_type, values[i])
            equal = [(f"{keys[j][0]} IS NULL" if values[j] is None
                      else f"{keys[j][0]} = {req.var(_typed(_kind(keys[j][2]), values[j]))}") for j in range(i)]
            if value is None:
                after = None if desc else f"{xpath} IS NOT NULL"
            else:
                after = f"({xpath} < {req.var(value)} OR {xpath} IS NULL)" if desc else f"{xpath} > {req.var(value)}"
            if after is not None:
                terms.append("(" + " AND ".join([*equal, after]) + ")")
        return "(" + (" OR ".join(terms) or "1 = 0") + ")"

    # -- items ---------------------------------------------------------------------------------
    def read(self, req: Request, resource: Resource, pk: list[Any]) -> dict[str, Any] | None:
        sel = selection(resource, req.api)
        sel.where = [f"{p(x)} = {req.var(_typed(t, v))}"
                     for x, t, v in zip(resource.pk_xpaths, resource.pk_types, pk, strict=True)]
        sel.limit = 1
        rows = self.data.select(sel, req.data_ctx)
        self.titles(req, resource, rows)
        return rows[0] if rows else None

    def _must_read(self, req: Request, resource: Resource, pkey: str) -> tuple[list[Any], dict[str, Any]]:
        pk = self._decode(resource, pkey)
        row = self.read(req, resource, pk)
        if row is None:
            raise not_found(f"Unable to find the '{resource.name}' of PKey '{pkey[:64]}'")
        return pk, row

    def item_path(self, req: Request, method: str, resource: Resource, pkey: str, rest: list[str],
                  body: Any) -> tuple[int, Any]:
        pk, row = self._must_read(req, resource, pkey)
        if not rest:
            if method == "GET":
                return 200, req.shaper.item(resource, row)
            if method == "PATCH":
                return self.patch(req, resource, pk, pkey, body)
            if method == "DELETE":
                self.data.delete(resource.schema, dict(zip(resource.pk_xpaths, pk, strict=True)), req.ctx)
                return 200, {}
            raise RestError(405, f"Method {method} is not allowed here")
        coll = resource.collections.get(rest[0])
        if coll is None:
            raise not_found(f"Unknown collection '{rest[0][:64]}' of resource '{resource.name}'")
        target = self.mapping.resources[coll.resource]
        owner_cond = f"{p(coll.back_xpath)} = {req.var(pk[0])}"
        base_path = f"{resource.name}/{pkey}/{coll.name}"
        if len(rest) == 1:
            if method == "POST":
                return 201, self.subscribe(req, resource, pk, target, base_path, body)
            _only(method, "GET")
            return 200, self.list(req, target, [owner_cond], base_path, item_path=base_path)
        if rest[1] == "_count" and len(rest) == 2:
            _only(method, "GET")
            return 200, {"count": self.count(req, target, [owner_cond])}
        if len(rest) != 2 or not rest[1].startswith("@"):
            raise not_found("Unknown path")
        member_pk, member = self._must_read(req, target, rest[1])
        if pk[0] not in pk_values(target, member):
            raise not_found(f"Unable to find the member of PKey '{rest[1][:64]}' in '{coll.name}'")
        if method == "GET":
            return 200, req.shaper.item(target, member, f"{base_path}/{rest[1]}")
        if method == "DELETE" and target.schema_id == "nms:subscription":
            self._unsubscribe(req, member_pk)
            return 204, None
        raise RestError(405, f"Method {method} is not allowed here")

    def create(self, req: Request, resource: Resource, body: Any) -> dict[str, Any]:
        values = parse_body(resource, req.api, body if body is not None else {}, codec=self.codec,
                            mapping=self.mapping, update=False)
        doc = self.data.insert(resource.schema, values, req.ctx)
        pk = [parse_value(t, doc.get(x.lstrip("@"))) for x, t in zip(resource.pk_xpaths, resource.pk_types,
                                                                       strict=True)]
        row = self.read(req, resource, pk)
        if row is None:
            raise RestError(500, "The created resource could not be read back")
        return req.shaper.item(resource, row)

    def patch(self, req: Request, resource: Resource, pk: list[Any], pkey: str, body: Any) -> tuple[int, Any]:
        if body is None or body == {}:
            return 204, None
        values = parse_body(resource, req.api, body, codec=self.codec, mapping=self.mapping, update=True)
        if values:
            key = dict(zip(resource.pk_xpaths, pk, strict=True))
            self.data.update(resource.schema, key, values, req.ctx)
        return 200, {"PKey": pkey, "href": req.shaper.href(f"{resource.name}/{pkey}")}

    # -- subscriptions (through the method registry) ------------------------------------------
    def _service_name(self, req: Request, service_id: Any) -> str:
        rows = self.data.select(Selection("nms:service", {"name": "@name"},
                                          where=[f"@id = {req.var(service_id)}"], limit=1), req.data_ctx)
        if not rows:
            raise not_found("Unable to find the service")
        return str(rows[0]["name"])

    def subscribe(self, req: Request, resource: Resource, pk: list[Any], target: Resource, base_path: str,
                  body: Any) -> dict[str, Any]:
        if target.schema_id != "nms:subscription":
            raise RestError(405, "Only subscriptions can be created through this collection")
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object")
        if resource.schema_id == "nms:recipient":
            ref, key = body.get("service"), "service"
            other = self.mapping.by_schema["nms:service"]
        else:
            key = next((k for k in ("subscriber", "profile", "recipient") if k in body), "subscriber")
            ref, other = body.get(key), self.mapping.by_schema["nms:recipient"]
        if not isinstance(ref, dict) or not isinstance(ref.get("PKey"), str):
            raise bad_request(f"'{key}' must be an object with a 'PKey'")
        other_id = self._decode(other, ref["PKey"])[0]
        if self.read(req, other, [other_id]) is None:
            raise not_found(f"Unable to find the '{other.name}' of PKey '{ref['PKey'][:64]}'")
        rid, sid = (pk[0], other_id) if resource.schema_id == "nms:recipient" else (other_id, pk[0])
        name = self._service_name(req, sid)
        call_method(self.instance, req.ctx, "Subscribe",
                    {"serviceName": name, "recipient": _recipient(rid), "create": False}, {"origin": "rest"})
        row = self.read(req, target, [rid, sid])
        if row is None:
            raise RestError(500, "The subscription could not be read back")
        spk = req.shaper.pkey(target, [rid, sid])
        return req.shaper.item(target, row, f"{base_path}/{spk}")

    def _unsubscribe(self, req: Request, member_pk: list[Any]) -> None:
        rid, sid = member_pk
        name = self._service_name(req, sid)
        call_method(self.instance, req.ctx, "Unsubscribe", {"serviceName": name, "recipient": _recipient(rid)},
                    {"origin": "rest"})


def _recipient(recipient_id: Any) -> etree._Element:
    return etree.Element("recipient", _key="@id", id=str(recipient_id))


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise RestError(405, f"Method {method} is not allowed here")


def _qs(params: dict[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _kind(xtk_type: str) -> str:
    return "long" if xtk_type == NULL_FLAG else xtk_type


def _typed(xtk_type: str, value: Any) -> Any:
    if isinstance(value, str) and xtk_type not in ("string", "memo", "html", "CDATA", "uuid"):
        return parse_value(xtk_type, value)
    return value
