"""The in-memory model of compiled schemas.

It is a typed view of the compiled `xtk:schema` XML (see compiler.py): the XML stays the single
source of truth (it is what clients download), and these objects make it cheap to walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from .types import XTK_TYPES, XtkType

XML_DATA_COLUMN = "mData"


@dataclass(eq=False)
class EnumValue:
    name: str
    label: str
    value: str
    desc: str = ""


@dataclass(eq=False)
class Enumeration:
    name: str
    qualified_name: str  # "nms:recipient:gender"
    basetype: str
    label: str = ""
    default: str | None = None
    values: list[EnumValue] = field(default_factory=list)

    def by_name(self, name: str) -> EnumValue | None:
        return next((v for v in self.values if v.name == name), None)

    def by_value(self, value: str) -> EnumValue | None:
        return next((v for v in self.values if v.value == value), None)


@dataclass(eq=False)
class Attribute:
    name: str
    type: str
    xpath: str  # "@email", "location/@city"
    label: str = ""
    desc: str = ""
    length: int | None = None
    sqlname: str | None = None  # None when stored in XML (mData) or calculated
    xml: bool = False
    expr: str | None = None
    default: str | None = None
    enum: str | None = None  # qualified enumeration name
    not_null: bool = False
    advanced: bool = False
    belongs_to: str | None = None
    user_enum: str | None = None
    parent: Element | None = field(default=None, repr=False)

    @property
    def is_sql(self) -> bool:
        return self.sqlname is not None

    @property
    def is_calculated(self) -> bool:
        return self.expr is not None

    @property
    def xtk_type(self) -> XtkType:
        return XTK_TYPES[self.type]

    @property
    def storage(self) -> str:
        """How the value is stored, as the documentation shows it."""
        if self.expr is not None:
            return "calculated"
        return "XML" if self.sqlname is None else self.sqlname


@dataclass(eq=False)
class Join:
    src: str  # xpath in the link's own schema
    dst: str  # xpath in the target schema


@dataclass(eq=False)
class Element:
    name: str
    xpath: str  # "" for the main element, "location", "folder"
    label: str = ""
    desc: str = ""
    type: str | None = None  # None: structure; "link"; text types (memo, html, CDATA...) for text elements
    xml: bool = False
    unbound: bool = False
    sqlname: str | None = None  # for text elements mapped to their own column
    length: int | None = None
    belongs_to: str | None = None
    advanced: bool = False
    # links
    target: str | None = None
    integrity: str | None = None
    rev_link: str | None = None
    rev_integrity: str | None = None
    rev_cardinality: str | None = None
    external_join: bool = False
    reverse: bool = False  # generated reverse half of a link declared in `target`
    joins: list[Join] = field(default_factory=list)
    attributes: dict[str, Attribute] = field(default_factory=dict)
    elements: dict[str, Element] = field(default_factory=dict)
    parent: Element | None = field(default=None, repr=False)

    @property
    def is_link(self) -> bool:
        return self.type == "link"

    @property
    def is_collection(self) -> bool:
        """A 1-N link (reverse links by default) or an XML collection."""
        return self.unbound

    @property
    def is_text(self) -> bool:
        return self.type not in (None, "link", "ANY")

    @property
    def cardinality(self) -> str:
        if not self.is_link:
            return ""
        if self.unbound:
            return "1-N"
        return "1-1" if self.rev_cardinality == "single" or (self.reverse and not self.unbound) else "N-1"

    def walk_attributes(self) -> Iterator[Attribute]:
        """Attributes of this element and of its structure sub-elements (not through links)."""
        yield from self.attributes.values()
        for child in self.elements.values():
            if not child.is_link and not child.unbound:
                yield from child.walk_attributes()

    def walk_elements(self) -> Iterator[Element]:
        for child in self.elements.values():
            yield child
            if not child.is_link:
                yield from child.walk_elements()


@dataclass(eq=False)
class Key:
    name: str
    fields: list[str]  # attribute xpaths
    internal: bool = False
    no_db_index: bool = False


@dataclass(eq=False)
class DbIndex:
    name: str
    fields: list[str]
    unique: bool = False


@dataclass(eq=False)
class Param:
    name: str
    type: str
    inout: str = "in"
    desc: str = ""


@dataclass(eq=False)
class Method:
    name: str
    static: bool = False
    const: bool = False
    access: str | None = None
    library: str | None = None
    interface: str | None = None  # "persist" for methods declared in <interface name="persist">
    label: str = ""
    desc: str = ""
    params: list[Param] = field(default_factory=list)
    belongs_to: str | None = None

    @property
    def inputs(self) -> list[Param]:
        return [p for p in self.params if p.inout in ("in", "inout")]

    @property
    def outputs(self) -> list[Param]:
        return [p for p in self.params if p.inout in ("out", "inout")]


@dataclass(eq=False)
class Schema:
    id: str
    namespace: str
    name: str
    label: str
    label_singular: str
    desc: str
    implements: str | None
    mapping_type: str
    data_source: str | None
    source: str  # file the base srcSchema came from
    extensions: list[str]
    root: Element | None  # main element
    elements: dict[str, Element]  # top-level elements other than the main one (e.g. userInfo)
    enumerations: dict[str, Enumeration]
    keys: list[Key]
    dbindexes: list[DbIndex]
    methods: list[Method]
    sqltable: str | None = None
    autopk: bool = False
    autouuid: bool = False
    pk_sequence: str | None = None
    compute_string: str | None = None
    md5: str = ""
    compiled_xml: etree._Element | None = field(default=None, repr=False)
    source_xml: etree._Element | None = field(default=None, repr=False)

    @property
    def has_table(self) -> bool:
        return self.sqltable is not None

    @property
    def primary_key(self) -> Key | None:
        internal = next((k for k in self.keys if k.internal), None)
        return internal or (self.keys[0] if self.keys else None)

    @property
    def full_label(self) -> str:
        return f"{self.label} ({self.id})"

    def sql_attributes(self) -> list[Attribute]:
        if self.root is None:
            return []
        return [a for a in self.root.walk_attributes() if a.sqlname is not None]

    def text_columns(self) -> list[Element]:
        if self.root is None:
            return []
        return [e for e in self.root.walk_elements() if e.is_text and e.sqlname is not None]

    @property
    def has_xml_data(self) -> bool:
        if self.root is None:
            return False
        if any(a.xml and a.expr is None for a in self.root.walk_attributes()):
            return True
        return any((e.xml or e.unbound) and not e.is_link for e in self.root.walk_elements())

    def links(self) -> list[Element]:
        """N-1 and 1-1 links (those that join to at most one row)."""
        if self.root is None:
            return []
        return [e for e in self.root.walk_elements() if e.is_link and not e.unbound]

    def collections(self) -> list[Element]:
        if self.root is None:
            return []
        return [e for e in self.root.walk_elements() if e.is_link and e.unbound]

    def node(self, xpath: str) -> Attribute | Element | None:
        """Resolve an xpath *within* this schema (no link traversal): "@email", "location/@city", "folder"."""
        if self.root is None:
            return None
        path = xpath.strip().strip("[]").lstrip("/")
        steps = [s for s in path.split("/") if s]
        element = self.root
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            if step.startswith("@"):
                return element.attributes.get(step[1:]) if last else None
            child = element.elements.get(step)
            if child is None:
                return None
            if last:
                return child
            element = child
        return element

    def attribute(self, xpath: str) -> Attribute | None:
        node = self.node(xpath)
        return node if isinstance(node, Attribute) else None

    def enumeration(self, qualified: str) -> Enumeration | None:
        return self.enumerations.get(qualified.rsplit(":", 1)[-1]) if qualified.startswith(self.id + ":") else None

    def method(self, name: str) -> Method | None:
        return next((m for m in self.methods if m.name == name), None)
