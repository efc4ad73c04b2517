"""Site-wide pages: the schema index, all enumerations and the entity-relationship diagram."""

from __future__ import annotations

from .facts import ModelFacts, all_links, field_count, page_name
from .html import Markup, page, tag
from .schema_page import enumeration_block
from .scripts import FILTER_SCRIPT


def index(facts: ModelFacts) -> bytes:
    registry = facts.registry
    sections = []
    for ns, schemas in sorted(registry.namespaces().items()):
        rows = []
        for s in schemas:
            info = facts[s.id]
            links = all_links(s)
            n_links = sum(1 for e in links if not e.unbound)
            rows.append(tag(
                "tr",
                tag("td", tag("a", s.id, href=f"schemas/{page_name(s.id)}.html")),
                tag("td", s.label),
                tag("td", tag("code", s.sqltable) if s.sqltable else "—"),
                tag("td", info.database, class_=f"db db-{info.home or 'none'}"),
                tag("td", field_count(s), class_="num"),
                tag("td", n_links, class_="num"),
                tag("td", len(links) - n_links, class_="num"),
                tag("td", ", ".join(s.extensions)),
                data_search=f"{s.id} {s.label} {s.sqltable or ''} {info.database}".lower(),
            ))
        head = tag("thead", tag("tr", [tag("th", h) for h in (
            "Schema", "Label", "SQL table", "Database", "Fields", "Links", "1-N", "Extended by")]))
        sections.append(tag(
            "section",
            tag("h2", f"Namespace {ns}", " ", tag("span", f"{len(schemas)} schemas", class_="muted")),
            tag("table", head, tag("tbody", rows), class_="doc list"),
            id=f"ns-{ns}", data_filter_group=True,
        ))
    tables = registry.tables()
    body = [
        tag("h1", "Data model"),
        tag("p", f"{len(registry)} schemas in {len(registry.namespaces())} namespaces, {len(tables)} SQL tables. "
            "Each schema page shows the Structure and Documentation views, links, keys, enumerations, "
            "methods and the compiled XML."),
        tag("p", tag("input", type="search", placeholder="Filter schemas (id, label, table, database)…",
                     data_filter="schema-list", aria_label="Filter schemas", autofocus=True),
            " ", tag("span", "", id="schema-list-count", class_="muted")),
        tag("div", sections, id="schema-list"),
    ]
    return page("Data model", body, scripts=[FILTER_SCRIPT])


def enumerations(facts: ModelFacts) -> bytes:
    blocks = []
    count = 0
    for schema in facts.registry:
        if not schema.enumerations:
            continue
        items = []
        for enum in schema.enumerations.values():
            count += 1
            users = facts.enum_users.get(enum.qualified_name, [])
            used = [[tag("a", f"{s.id}/{a.xpath}",
                         href=f"schemas/{page_name(s.id)}.html#{facts[s.id].anchor_of(a)}"), " "] for s, a in users]
            items.append(enumeration_block(enum, anchor_id=f"enum-{enum.qualified_name}"))
            if used:
                items.append(tag("p", "Used by: ", used, class_="muted"))
        blocks.append(tag("section", tag("h2", tag("a", schema.id, href=f"schemas/{page_name(schema.id)}.html"),
                                         " ", tag("span", schema.label, class_="label")), items))
    body = [tag("h1", "Enumerations"), tag("p", f"{count} enumerations."), blocks]
    return page("Enumerations - data model", body)


def erd(facts: ModelFacts, *, renderer: str, compact: bool) -> bytes:
    how = (
        "Drawn by Graphviz dot, one cluster per namespace."
        if renderer == "graphviz"
        else "Drawn by the built-in layout (Graphviz dot is not installed): referenced tables above the "
        "tables that link to them."
    )
    detail = (
        "The model is large, so boxes only show the table; open a schema page for its columns and "
        "neighbourhood diagram."
        if compact
        else "Boxes list the primary-key (PK) and foreign-key (FK) columns."
    )
    legend = Markup(
        "Arrows go from the table holding the foreign key to the linked table; the ends carry the "
        "cardinality (N-1 or 1-1). Click a table to open its page."
    )
    body = [
        tag("h1", "Entity-relationship diagram"),
        tag("p", how, " ", detail),
        tag("p", legend, class_="muted"),
        tag("p", tag("a", "Open erd.svg full size", href="erd.svg")),
        tag("div", tag("object", tag("a", "Open the diagram", href="erd.svg"), data="erd.svg", type="image/svg+xml"),
            class_="diagram"),
    ]
    return page("Entity-relationship diagram - data model", body)
