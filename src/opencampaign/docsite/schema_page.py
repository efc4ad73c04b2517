"""One page per schema: the console's Structure and Documentation views, plus links, keys,
enumerations, methods, database placement, the neighbourhood diagram and the XML documents."""

from __future__ import annotations

import copy

from lxml import etree

from ..schema.model import Attribute, Element, Enumeration, Method, Schema
from .facts import Flag, ModelFacts, Row, SchemaFacts, all_links, element_kind, join_text, page_name
from .html import Child, Markup, badge, page, table, tag
from .scripts import FILTER_SCRIPT

LEGEND = [
    Flag("SQL", "sql", "SQL field (own column)"),
    Flag("PK", "pk", "Primary key"),
    Flag("FK", "fk", "Foreign key of a link"),
    Flag("calc", "calc", "Calculated field (expression)"),
    Flag("XML", "xml", "Stored in the XML memo column mData"),
    Flag("memo", "memo", "Text (memo) element"),
    Flag("idx", "idx", "Indexed field"),
    Flag("enum", "enum", "Enumerated values"),
    Flag("N-1", "link", "N-1 or 1-1 link"),
    Flag("1-N", "coll", "1-N collection"),
]


def flags_markup(flags: list[Flag]) -> Markup:
    return Markup("".join(badge(f.code, f.kind, f.title) for f in flags))


def schema_link(schema_id: str) -> Markup:
    """A link from one schema page to another (both live in schemas/)."""
    return tag("a", schema_id, href=f"{page_name(schema_id)}.html")


def enum_link(facts: ModelFacts, schema: Schema, qualified: str) -> Markup:
    found = facts.enumeration(qualified)
    if found is None:
        return tag("code", qualified)
    owner, enum = found
    href = ("" if owner.id == schema.id else f"{page_name(owner.id)}.html") + f"#enum-{enum.name}"
    return tag("a", qualified, href=href)


def enum_summary(enum: Enumeration) -> Markup:
    return tag("span", ", ".join(f"{v.name}={v.value}" for v in enum.values), class_="values")


def _heading(schema: Schema, info: SchemaFacts) -> Markup:
    s = schema
    items: list[tuple[str, Child]] = [
        ("Schema", tag("code", s.id)),
        ("Label", f"{s.label} / {s.label_singular}"),
        ("Mapping", s.mapping_type),
        ("SQL table", tag("code", s.sqltable) if s.sqltable else "none"),
        ("Database", info.database),
        ("Primary key", ", ".join(s.primary_key.fields) if s.primary_key and s.has_table else None),
        ("Key generation", ("autouuid" if s.autouuid else f"autopk, sequence {s.pk_sequence}") if s.autopk else None),
        ("Data source", s.data_source),
        ("Implements", s.implements),
        ("Compute string", tag("code", s.compute_string) if s.compute_string else None),
        ("Source file", tag("code", s.source)),
        ("Extended by", [[tag("code", e), " "] for e in s.extensions] or None),
        ("MD5", tag("code", s.md5)),
    ]
    if info.home_error:
        items.append(("Placement problem", info.home_error))
    rows = [[tag("dt", k), tag("dd", v)] for k, v in items if v]
    return tag("dl", rows, class_="facts")


def _tree_node(schema: Schema, info: SchemaFacts, node: Attribute | Element) -> Markup:
    if isinstance(node, Attribute):
        return tag(
            "li",
            tag("a", f"@{node.name}", href=f"#{info.anchor_of(node)}", class_="name"),
            " ", flags_markup(info.attr_flags(node)),
            tag("span", node.label, class_="label") if node.label else None,
            class_="attr adv" if node.advanced else "attr",
        )
    target = [" → ", schema_link(node.target)] if node.is_link and node.target else None
    children = [_tree_node(schema, info, a) for a in node.attributes.values()]
    children += [_tree_node(schema, info, e) for e in node.elements.values()]
    return tag(
        "li",
        tag("a", node.name, href=f"#{info.anchor_of(node)}", class_="name"),
        " ", flags_markup(info.element_flags(node)), target,
        tag("span", node.label, class_="label") if node.label else None,
        tag("ul", children) if children else None,
        class_=f"elem k-{element_kind(node)}",
    )


def structure(schema: Schema, info: SchemaFacts) -> Markup:
    tops = ([schema.root] if schema.root is not None else []) + list(schema.elements.values())
    if not tops:
        return tag("p", "This schema has no element.", class_="muted")
    legend = tag("p", [[badge(f.code, f.kind, f.title), " ", f.title, " "] for f in LEGEND], class_="legend")
    return Markup(legend + tag("ul", [_tree_node(schema, info, t) for t in tops], class_="tree"))


def _doc_row(facts: ModelFacts, schema: Schema, row: Row) -> Markup:
    node = row.node
    enum_cell: Child = None
    default: str | None = None
    if isinstance(node, Attribute):
        default = node.default
        if node.enum:
            found = facts.enumeration(node.enum)
            enum_cell = [enum_link(facts, schema, node.enum), tag("br"), enum_summary(found[1]) if found else None]
        elif node.user_enum:
            enum_cell = f"open list '{node.user_enum}'"
    storage: Child = tag("code", row.storage) if row.storage not in ("", "XML", "calculated", "link") else row.storage
    if isinstance(node, Attribute) and node.expr is not None:
        storage = ["calculated: ", tag("code", node.expr)]
    elif isinstance(node, Element) and node.is_link and node.target:
        storage = [row.type if not node.unbound else "collection", " → ", schema_link(node.target)]
    xpath = tag("code", row.xpath or f"/{node.name}")
    cells: list[Child] = [
        [xpath, " ", flags_markup(row.flags)],
        node.label,
        row.type,
        node.length,
        storage,
        enum_cell,
        default,
        node.desc,
        node.belongs_to,
    ]
    tds = [tag("td", c, style=f"padding-left:{0.4 + row.depth}em" if i == 0 else None) for i, c in enumerate(cells)]
    search = f"{row.xpath} {node.label} {row.storage}".lower()
    return tag("tr", tds, id=facts[schema.id].anchor_of(node), data_search=search, class_=f"k-{row.kind}")


def documentation(facts: ModelFacts, schema: Schema, info: SchemaFacts) -> Markup:
    headers = ["XPath", "Label", "Type", "Length", "SQL column / storage", "Enumeration", "Default",
               "Description", "Extension"]
    head = tag("thead", tag("tr", [tag("th", h) for h in headers]))
    body = tag("tbody", [_doc_row(facts, schema, r) for r in info.rows()])
    box = tag("input", type="search", placeholder="Filter fields…", data_filter="doc-table",
              aria_label="Filter fields")
    return Markup(box + tag("div", tag("table", head, body, id="doc-table", class_="doc"), class_="scroll"))


def _reverse_cell(facts: ModelFacts, schema: Schema, link: Element) -> Child:
    name = link.rev_link if link.reverse else (link.rev_link or schema.name)
    if not name or name == "_NONE_" or not link.target:
        return "none"
    target = facts.registry.find(link.target)
    node = target.node(name) if target else None
    if node is None:
        return name
    return tag("a", name, href=f"{page_name(link.target)}.html#{facts[link.target].anchor_of(node)}")


def links(facts: ModelFacts, schema: Schema) -> Markup:
    info = facts[schema.id]
    rows = []
    for link in all_links(schema):
        integrity = link.integrity or "normal"
        rows.append([
            tag("a", link.xpath, href=f"#{info.anchor_of(link)}"),
            link.label,
            schema_link(link.target) if link.target else None,
            [link.cardinality, " (reverse)" if link.reverse else None, " outer join" if link.external_join else None],
            integrity,
            tag("code", join_text(link)),
            _reverse_cell(facts, schema, link),
            link.belongs_to,
        ])
    if not rows:
        return tag("p", "No link.", class_="muted")
    return table(["Link", "Label", "Target", "Cardinality", "Integrity", "Join", "Reverse link", "Extension"],
                 rows, class_="doc")


def keys_and_indexes(schema: Schema, info: SchemaFacts) -> Markup:
    if not schema.keys and not schema.dbindexes:
        return tag("p", "No key or index.", class_="muted")

    def fields(xpaths: list[str]) -> Child:
        return [[tag("a", f, href=f"#{info.anchor_of_xpath(f)}"), " "] for f in xpaths]

    keys = table(["Key", "Fields", "Primary", "Unique index"], [
        [k.name, fields(k.fields), "yes" if k is schema.primary_key else "", "no" if k.no_db_index else "yes"]
        for k in schema.keys
    ], class_="doc")
    indexes = table(["Index", "SQL name", "Fields", "Unique"], [
        [i.name, tag("code", f"{schema.sqltable}_{i.name}"), fields(i.fields), "yes" if i.unique else ""]
        for i in schema.dbindexes
    ], class_="doc")
    return Markup(tag("h3", "Keys") + keys + tag("h3", "Indexes") + indexes)


def enumeration_block(enum: Enumeration, *, anchor_id: str) -> Markup:
    meta = f"basetype {enum.basetype}" + (f", default {enum.default}" if enum.default else "")
    values = table(["Name", "Value", "Label", "Description"],
                   [[tag("code", v.name), tag("code", v.value), v.label, v.desc] for v in enum.values], class_="doc")
    return tag("div", tag("h3", enum.qualified_name, " ", tag("span", enum.label, class_="label")),
               tag("p", meta, class_="muted"), values, id=anchor_id, class_="enum")


def enumerations(schema: Schema) -> Markup:
    if not schema.enumerations:
        return tag("p", "No enumeration.", class_="muted")
    return Markup("".join(enumeration_block(e, anchor_id=f"enum-{e.name}") for e in schema.enumerations.values()))


def _method_row(method: Method) -> list[Child]:
    kind = ", ".join(k for k, on in (("static", method.static), ("const", method.const)) if on) or "instance"
    params = table(["Parameter", "Type", "Direction", "Description"],
                   [[p.name, p.type, p.inout, p.desc] for p in method.params], class_="params") if method.params else "none"
    where = method.library or (f"interface {method.interface}" if method.interface else None)
    return [tag("code", method.name, id=f"m-{method.name}"), kind, method.access or "", where,
            [method.label, tag("br") if method.label and method.desc else None, method.desc], params,
            method.belongs_to]


def methods(schema: Schema) -> Markup:
    if not schema.methods:
        return tag("p", "No method.", class_="muted")
    return table(["Method", "Kind", "Access", "Library", "Description", "Parameters", "Extension"],
                 [_method_row(m) for m in schema.methods], class_="doc")


def xml_text(node: etree._Element | None) -> str:
    if node is None:
        return ""
    clone = copy.deepcopy(node)
    etree.indent(clone, space="  ")
    return etree.tostring(clone, encoding="unicode")


def xml_documents(facts: ModelFacts, schema: Schema) -> Markup:
    blocks = [tag("details", tag("summary", f"Compiled schema xtk:schema|{schema.id}"),
                  tag("pre", tag("code", xml_text(schema.compiled_xml))))]
    blocks.append(tag("details", tag("summary", f"Source schema xtk:srcSchema|{schema.id} ({schema.source})"),
                      tag("pre", tag("code", xml_text(schema.source_xml)))))
    for ext_id in schema.extensions:
        src = facts.registry.source(ext_id)
        if src is not None:
            blocks.append(tag("details", tag("summary", f"Extension xtk:srcSchema|{ext_id} ({src.source})"),
                              tag("pre", tag("code", xml_text(src.root)))))
    return Markup("".join(blocks))


def diagram(schema: Schema, has_svg: bool) -> Markup:
    if not has_svg:
        return tag("p", "No diagram: this schema has no table.", class_="muted")
    svg = f"{page_name(schema.id)}.svg"
    return tag("div", tag("object", tag("a", "Open the diagram", href=svg), data=svg, type="image/svg+xml"),
               tag("p", tag("a", "Open full size", href=svg), class_="muted"), class_="diagram")


SECTIONS = [("structure", "Structure"), ("documentation", "Documentation"), ("links", "Links"),
            ("keys", "Keys & indexes"), ("enumerations", "Enumerations"), ("methods", "Methods"),
            ("diagram", "Diagram"), ("xml", "XML")]


def render(facts: ModelFacts, schema: Schema, *, has_svg: bool) -> bytes:
    info = facts[schema.id]
    parts = {
        "structure": structure(schema, info),
        "documentation": documentation(facts, schema, info),
        "links": links(facts, schema),
        "keys": keys_and_indexes(schema, info),
        "enumerations": enumerations(schema),
        "methods": methods(schema),
        "diagram": diagram(schema, has_svg),
        "xml": xml_documents(facts, schema),
    }
    body = [
        tag("p", tag("a", "All schemas", href="../index.html"), " / ", schema.namespace, class_="crumbs"),
        tag("h1", schema.label, " ", tag("code", schema.id, class_="id")),
        tag("p", schema.desc, class_="desc") if schema.desc else None,
        _heading(schema, info),
        tag("nav", [tag("a", title, href=f"#{key}") for key, title in SECTIONS], class_="sections"),
        [tag("section", tag("h2", title), parts[key], id=key) for key, title in SECTIONS],
    ]
    return page(f"{schema.label} ({schema.id}) - data model", body, root="../", scripts=[FILTER_SCRIPT])
