"""The resource mapping: REST resources declared as data over the compiled schemas.

Built once per instance from the schema registry. Built-in resources come from `BUILTIN`; every
custom schema with a table (a namespace outside Campaign's reserved ones) becomes `cus<Name>`,
under `profileAndServicesExt` when it links to profiles, else under `customResources`. Fields
added by extension schemas only show under `profileAndServicesExt`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..schema.model import Attribute, Element, Enumeration, Schema
from ..schema.registry import SchemaRegistry
from ..schema.source import RESERVED_NAMESPACES

PROFILE_API = "profileAndServices"
EXT_API = "profileAndServicesExt"
CUSTOM_API = "customResources"
APIS = (PROFILE_API, EXT_API, CUSTOM_API)

# resource name -> (schema id, top level, label); sub-collection names -> (owner schema, link name)
BUILTIN: dict[str, tuple[str, bool]] = {
    "profile": ("nms:recipient", True),
    "service": ("nms:service", True),
    "subscription": ("nms:subscription", False),
    "history": ("nms:subHisto", False),
}
COLLECTION_NAMES = {"subscription": "subscriptions", "subHisto": "history"}
LINK_NAMES = {("nms:subscription", "recipient"): "subscriber", ("nms:subHisto", "recipient"): "subscriber"}
# Fields clients never set (besides calculated fields, keys and link ids).
READ_ONLY = frozenset({"created", "lastModified", "deleteStatus"})
ALIAS = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")  # a calculated field that only renames a column
# Path filters: name -> (parameters, XTK condition with $param placeholders, label)
BUILTIN_FILTERS: dict[str, dict[str, tuple[tuple[str, ...], str, str]]] = {
    "nms:recipient": {
        "byEmail": (("email",), "@email = $email", "By email"),
        "byText": (("text",), "byText", "By text (email or last name prefix)"),
    },
    "nms:service": {
        "byChannel": (("channel=type",), "@type = $channel", "By channel"),
        "byText": (("text",), "byText:@name,@label", "By text (name or label prefix)"),
        "byName": (("name",), "@name = $name", "By internal name"),
    },
}


@dataclass
class Field:
    name: str  # API name, unique within the resource
    path: tuple[str, ...]  # JSON path: ("email",) or ("location", "city")
    xpath: str  # "@email", "location/@city"
    type: str
    label: str = ""
    desc: str = ""
    enum: Enumeration | None = None
    read_only: bool = False
    sortable: bool = False
    custom: bool = False
    mandatory: bool = False
    length: int | None = None
    write_xpath: str | None = None  # where a writable alias (expr="@type") stores its value


@dataclass
class Link:
    name: str
    xpath: str  # the link element's xpath ("folder")
    target: str  # target schema id
    id_xpath: str  # "@folder-id": the foreign key of a single-column join
    title_xpath: str | None  # "@label" in the target, read in one batched query per page
    label: str = ""
    custom: bool = False
    id_type: str = "long"
    dst_xpath: str = "@id"  # the joined field in the target


@dataclass
class Collection:
    name: str  # "subscriptions"
    resource: str  # target resource name
    back_xpath: str  # "@recipient-id" in the target
    label: str = ""


@dataclass
class Filter:
    name: str
    params: tuple[str, ...]
    condition: str
    label: str


@dataclass
class Resource:
    name: str
    schema: Schema
    top_level: bool
    apis: tuple[str, ...]
    pk_xpaths: list[str]
    pk_types: list[str]
    label: str = ""
    fields: dict[str, Field] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)
    filters: dict[str, Filter] = field(default_factory=dict)

    def visible_fields(self, api: str) -> list[Field]:
        return [f for f in self.fields.values() if api == EXT_API or not f.custom]

    def visible_links(self, api: str) -> list[Link]:
        return [link for link in self.links.values() if api == EXT_API or not link.custom]

    @property
    def schema_id(self) -> str:
        return self.schema.id


def is_custom(belongs_to: str | None) -> bool:
    return bool(belongs_to) and (belongs_to or "").split(":", 1)[0] not in RESERVED_NAMESPACES


def custom_name(schema: Schema) -> str:
    return "cus" + schema.name[:1].upper() + schema.name[1:]


class Mapping:
    def __init__(self, registry: SchemaRegistry):
        self.registry = registry
        self.resources: dict[str, Resource] = {}
        self.by_schema: dict[str, Resource] = {}
        for name, (schema_id, top) in BUILTIN.items():
            schema = registry.find(schema_id)
            if schema is not None and schema.has_table:
                self._add(name, schema, top, (PROFILE_API, EXT_API))
        for schema in registry.tables():
            if schema.namespace in RESERVED_NAMESPACES or schema.id in self.by_schema:
                continue
            name = custom_name(schema)
            if name in self.resources:
                name = schema.namespace + schema.name[:1].upper() + schema.name[1:]
            linked = any(link.target == "nms:recipient" for link in schema.links())
            self._add(name, schema, True, (EXT_API,) if linked else (CUSTOM_API,))
        for resource in self.resources.values():
            self._fill(resource)

    def _add(self, name: str, schema: Schema, top: bool, apis: tuple[str, ...]) -> None:
        key = schema.primary_key
        pk_xpaths = list(key.fields) if key else []
        pk_types = [(schema.attribute(x).type if schema.attribute(x) else "long") for x in pk_xpaths]
        resource = Resource(name, schema, top, apis, pk_xpaths, pk_types, label=schema.label)
        self.resources[name] = resource
        self.by_schema[schema.id] = resource

    def _fill(self, resource: Resource) -> None:
        schema = resource.schema
        assert schema.root is not None
        link_ids = {j.src for link in schema.links() for j in link.joins if j.src.endswith("-id")}
        for attr in schema.root.walk_attributes():
            if attr.xml and attr.expr is None:
                continue  # XML-memo fields: not queryable by the SQL engine
            if attr.xpath in link_ids or attr.xpath in resource.pk_xpaths:
                continue
            self._add_field(resource, attr)
        for link in schema.links():
            self._add_link(resource, link)
        for coll in schema.collections():
            target = self.by_schema.get(coll.target or "")
            if target is None or len(coll.joins) != 1:
                continue
            name = COLLECTION_NAMES.get(coll.name, coll.name)
            resource.collections[name] = Collection(name, target.name, coll.joins[0].dst, coll.label)
        for name, (params, condition, label) in BUILTIN_FILTERS.get(schema.id, {}).items():
            resource.filters[name] = Filter(name, params, condition, label)
        for name, params, condition, label in declared_filters(self.registry, schema):
            resource.filters[name] = Filter(name, params, condition, label)

    def _add_field(self, resource: Resource, attr: Attribute) -> None:
        steps = [s for s in attr.xpath.split("/") if s]
        path = tuple(s.lstrip("@") for s in steps)
        name = path[-1] if path[-1] not in resource.fields else "_".join(path)
        enum = None
        if attr.enum:
            owner = self.registry.find(attr.enum.rsplit(":", 1)[0])
            enum = owner.enumeration(attr.enum) if owner else None
        alias = attr.expr.strip() if attr.expr and ALIAS.fullmatch(attr.expr.strip()) else None
        if alias is not None and resource.schema.attribute(alias) is None:
            alias = None
        read_only = (attr.expr is not None and alias is None) or path[-1] in READ_ONLY
        resource.fields[name] = Field(
            name, path, attr.xpath, attr.type, attr.label, attr.desc, enum, read_only,
            sortable=attr.sqlname is not None, custom=is_custom(attr.belongs_to), mandatory=attr.not_null,
            length=attr.length, write_xpath=alias or attr.xpath)

    def _add_link(self, resource: Resource, link: Element) -> None:
        schema = resource.schema
        if len(link.joins) != 1 or link.xpath in resource.fields:
            return
        target = self.registry.find(link.target or "")
        if target is None:
            return
        title = None
        for candidate in ("@label", "@name"):
            if target.attribute(candidate) is not None:
                title = candidate
                break
        name = LINK_NAMES.get((resource.schema_id, link.name), link.name)
        resource.links[name] = Link(name, link.xpath, target.id, link.joins[0].src, title,
                                         link.label, custom=is_custom(link.belongs_to),
                                         id_type=getattr(schema.attribute(link.joins[0].src), "type", "long"),
                                         dst_xpath=link.joins[0].dst)

    def get(self, api: str, name: str) -> Resource | None:
        resource = self.resources.get(name)
        if resource is None or api not in resource.apis:
            return None
        return resource

    def top_level(self, api: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.top_level and api in r.apis]


def declared_filters(registry: SchemaRegistry, schema: Schema) -> list[tuple[str, tuple[str, ...], str, str]]:
    """`<restFilter name="byCity" params="city" condition="location/@city = $city" label="..."/>`
    in a source schema (or its extensions) declares a REST path filter."""
    found: list[tuple[str, tuple[str, ...], str, str]] = []
    ids = [schema.id, *schema.extensions]
    for source_id in ids:
        source = registry.source(source_id)
        xml = getattr(source, "root", None) if source is not None else None
        if xml is None:
            xml = schema.source_xml if source_id == schema.id else None
        if xml is None:
            continue
        for node in xml.iter("restFilter"):
            name, condition = node.get("name", ""), node.get("condition", "")
            if name and condition:
                params = tuple(p.strip() for p in node.get("params", "").split(",") if p.strip())
                found.append((name, params, condition, node.get("label", name)))
    return found
