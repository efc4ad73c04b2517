"""What the description shows about each schema, derived once from the compiled model.

HTML pages, the Markdown export and the diagrams all read these facts, so the three views agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..schema.model import Attribute, Element, Enumeration, Schema
from ..schema.registry import SchemaRegistry
from ..storage.placement import Placement, PlacementError, home_of

Node = Attribute | Element


def page_name(schema_id: str) -> str:
    return schema_id.replace(":", "_")


def anchor(xpath: str) -> str:
    # xpaths hold no whitespace, and '@', '/', '-' are valid in ids and fragments; no name starts with '/'.
    return "f-" + (xpath or "/")


@dataclass
class Flag:
    code: str  # badge text
    kind: str  # css suffix
    title: str


@dataclass
class Row:
    """One line of the Documentation view."""

    node: Node
    xpath: str
    depth: int
    kind: str  # attribute | structure | link | collection | text | xml
    type: str
    storage: str
    flags: list[Flag] = field(default_factory=list)


def walk(element: Element, depth: int = 0) -> Iterator[tuple[Node, int]]:
    """The element, its attributes, then its sub-elements, depth first (links have no children)."""
    yield element, depth
    for attr in element.attributes.values():
        yield attr, depth + 1
    for child in element.elements.values():
        yield from walk(child, depth + 1)


def element_kind(element: Element) -> str:
    if element.is_link:
        return "collection" if element.unbound else "link"
    if element.is_text:
        return "text"
    if element.xml or element.unbound:
        return "xml"
    return "structure"


@dataclass
class SchemaFacts:
    schema: Schema
    pk: set[str]
    fks: set[str]
    indexed: set[str]
    home: str | None
    home_error: str | None
    replicated: bool
    anchors: dict[int, str] = field(default_factory=dict)  # id(node) -> unique HTML id

    def __post_init__(self) -> None:
        used: set[str] = set()
        for node, _ in self._nodes():
            base = anchor(node.xpath)
            name, n = base, 1
            while name in used:  # a top-level element may share an xpath with a sub-element
                n += 1
                name = f"{base}~{n}"
            used.add(name)
            self.anchors[id(node)] = name

    def _nodes(self) -> Iterator[tuple[Node, int]]:
        tops = [self.schema.root] if self.schema.root is not None else []
        tops += list(self.schema.elements.values())
        for top in tops:
            yield from walk(top)

    def anchor_of(self, node: Node) -> str:
        return self.anchors.get(id(node), anchor(node.xpath))

    def anchor_of_xpath(self, xpath: str) -> str:
        node = self.schema.node(xpath)
        return self.anchor_of(node) if node is not None else anchor(xpath)

    @property
    def database(self) -> str:
        if self.home_error:
            return "unknown"
        if self.home is None:
            return "none (no table)"
        return f"{self.home} (replicated to cloud)" if self.replicated else self.home

    def column(self, sqlname: str) -> str:
        return f"{self.schema.sqltable}.{sqlname}" if self.schema.sqltable else sqlname

    def rows(self) -> list[Row]:
        return [self._row(node, depth) for node, depth in self._nodes()]

    def _row(self, node: Node, depth: int) -> Row:
        if isinstance(node, Attribute):
            return Row(node, node.xpath, depth, "attribute", node.type, self._attr_storage(node), self.attr_flags(node))
        kind = element_kind(node)
        if node.is_link:
            storage = "link"
        elif node.sqlname:
            storage = self.column(node.sqlname)
        elif kind in ("text", "xml") or node.xml:
            storage = "XML"
        else:
            storage = ""
        xtype = node.type or ("collection" if node.unbound else "element")
        return Row(node, node.xpath, depth, kind, xtype, storage, self.element_flags(node))

    def _attr_storage(self, attr: Attribute) -> str:
        storage = attr.storage
        return self.column(storage) if attr.sqlname is not None and attr.expr is None else storage

    def attr_flags(self, attr: Attribute) -> list[Flag]:
        flags = []
        if attr.xpath in self.pk:
            flags.append(Flag("PK", "pk", "Primary key"))
        if attr.xpath in self.fks:
            flags.append(Flag("FK", "fk", "Foreign key of a link"))
        if attr.expr is not None:
            flags.append(Flag("calc", "calc", "Calculated field (SQL expression, no column)"))
        elif attr.sqlname is not None:
            flags.append(Flag("SQL", "sql", f"SQL field {attr.sqlname}"))
        else:
            flags.append(Flag("XML", "xml", "Stored in the XML memo (mData)"))
        if attr.xpath in self.indexed:
            flags.append(Flag("idx", "idx", "Indexed field"))
        if attr.enum or attr.user_enum:
            flags.append(Flag("enum", "enum", f"Enumeration {attr.enum or attr.user_enum}"))
        return flags

    def element_flags(self, element: Element) -> list[Flag]:
        kind = element_kind(element)
        if kind == "link":
            card = element.cardinality
            return [Flag(card, "link", f"{card} link to {element.target}")]
        if kind == "collection":
            return [Flag("1-N", "coll", f"1-N collection of {element.target}")]
        if kind == "text":
            if element.sqlname:
                return [Flag("memo", "memo", f"Text stored in column {element.sqlname}")]
            return [Flag("memo", "xml", "Text stored in the XML memo (mData)")]
        if kind == "xml":
            title = "XML collection" if element.unbound else "XML element"
            return [Flag("XML", "xml", f"{title} (stored in mData)")]
        return []


class ModelFacts:
    """Facts for a whole registry, with the cross-schema indexes (incoming links, enumeration users)."""

    def __init__(self, registry: SchemaRegistry, placement: Placement | None = None):
        self.registry = registry
        self.placement = placement if placement is not None else _safe_placement(registry)
        self.incoming: dict[str, list[tuple[Schema, Element]]] = {}
        self.enum_users: dict[str, list[tuple[Schema, Attribute]]] = {}
        for schema in registry:
            for link in declared_links(schema):
                self.incoming.setdefault(link.target or "", []).append((schema, link))
            for attr in all_attributes(schema):
                if attr.enum:
                    self.enum_users.setdefault(attr.enum, []).append((schema, attr))
        self._facts = {s.id: self._build(s) for s in registry}

    def __getitem__(self, schema_id: str) -> SchemaFacts:
        return self._facts[schema_id]

    def _build(self, schema: Schema) -> SchemaFacts:
        pk = set(schema.primary_key.fields) if schema.primary_key and schema.has_table else set()
        fks = {join_source(link, j.src) for link in declared_links(schema) for j in link.joins}
        indexed = {f for i in schema.dbindexes for f in i.fields}
        indexed |= {f for k in schema.keys if not k.no_db_index for f in k.fields}
        home, error = None, None
        try:
            home = home_of(schema)
        except PlacementError as exc:
            error = str(exc)
        replicated = bool(self.placement and home and self.placement.is_replicated(schema.id))
        return SchemaFacts(schema, pk, fks, {_norm(f) for f in indexed}, home, error, replicated)

    def enumeration(self, qualified: str) -> tuple[Schema, Enumeration] | None:
        owner_id, _, name = qualified.rpartition(":")
        owner = self.registry.find(owner_id)
        if owner is None or name not in owner.enumerations:
            return None
        return owner, owner.enumerations[name]

    def neighbours(self, schema: Schema) -> list[str]:
        """Schemas this one links to and that link to it (itself excluded)."""
        ids = {e.target for e in all_links(schema) if e.target}
        ids |= {src.id for src, _ in self.incoming.get(schema.id, [])}
        ids.discard(schema.id)
        return sorted(i for i in ids if i in self.registry)


def _safe_placement(registry: SchemaRegistry) -> Placement | None:
    try:
        return Placement(registry, single_database=False)
    except PlacementError:
        return None  # a bad dataSource is reported on that schema's page instead


def _norm(xpath: str) -> str:
    return xpath.strip().strip("[]").lstrip("/")


def join_source(link: Element, src: str) -> str:
    """A join source is relative to the element holding the link."""
    src = _norm(src)
    parent = link.parent
    return f"{parent.xpath}/{src}" if parent is not None and parent.xpath else src


def all_links(schema: Schema) -> list[Element]:
    if schema.root is None:
        return []
    return [e for e in schema.root.walk_elements() if e.is_link]


def declared_links(schema: Schema) -> list[Element]:
    """Links declared in this schema (not the reverse halves generated by other schemas' links)."""
    return [e for e in all_links(schema) if not e.reverse]


def all_attributes(schema: Schema) -> list[Attribute]:
    tops = [schema.root] if schema.root is not None else []
    tops += list(schema.elements.values())
    return [n for top in tops for n, _ in walk(top) if isinstance(n, Attribute)]


def field_count(schema: Schema) -> int:
    """Attributes plus text elements: what the console lists as fields."""
    tops = [schema.root] if schema.root is not None else []
    tops += list(schema.elements.values())
    return sum(
        1 for top in tops for n, _ in walk(top)
        if isinstance(n, Attribute) or (isinstance(n, Element) and n.is_text)
    )


def join_text(link: Element) -> str:
    return " AND ".join(f"{j.src} = [{link.target}]{j.dst}" for j in link.joins)
