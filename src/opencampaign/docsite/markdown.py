"""Markdown export of the whole description: one section per schema, GitHub-style tables."""

from __future__ import annotations

from ..schema.model import Attribute, Element, Schema
from .facts import ModelFacts, all_links, join_text


def md(value: object) -> str:
    """Inline text: schema text must not turn into HTML, table cells or emphasis."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    for char, repl in (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"),
                       ("*", "\\*"), ("_", "\\_"), ("`", "\\`"), ("[", "\\["), ("]", "\\]")):
        text = text.replace(char, repl)
    return text


def code(value: object) -> str:
    text = " ".join(str(value).split())
    if not text:
        return ""
    if "`" in text:
        return md(text)
    return "`" + text.replace("|", "\\|") + "`"


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _fields(facts: ModelFacts, schema: Schema) -> list[str]:
    rows = []
    for row in facts[schema.id].rows():
        node = row.node
        enum, default = "", ""
        storage = code(row.storage) if row.storage not in ("XML", "calculated", "link", "") else row.storage
        if isinstance(node, Attribute):
            default = code(node.default) if node.default else ""
            if node.enum:
                found = facts.enumeration(node.enum)
                values = ", ".join(f"{v.name}={v.value}" for v in found[1].values) if found else ""
                enum = f"{code(node.enum)} ({md(values)})" if values else code(node.enum)
            if node.expr is not None:
                storage = f"calculated: {code(node.expr)}"
        elif isinstance(node, Element) and node.is_link:
            storage = f"link → {code(node.target)}"
        flags = " ".join(f.code for f in row.flags)
        rows.append([
            code(row.xpath or f"/{node.name}"), md(node.label), md(row.type), md(node.length), storage,
            enum, default, md(node.desc), md(flags), md(node.belongs_to),
        ])
    return md_table(["XPath", "Label", "Type", "Length", "Storage", "Enumeration", "Default", "Description",
                     "Flags", "Extension"], rows)


def _schema(facts: ModelFacts, schema: Schema) -> list[str]:
    info = facts[schema.id]
    lines = [f"## {md(schema.id)} — {md(schema.label)}", ""]
    if schema.desc:
        lines += [md(schema.desc), ""]
    facts_list = [
        ("SQL table", code(schema.sqltable) if schema.sqltable else "none"),
        ("Database", md(info.database)),
        ("Mapping", md(schema.mapping_type)),
        ("Primary key", md(", ".join(schema.primary_key.fields)) if schema.primary_key and schema.has_table else ""),
        ("Source", code(schema.source)),
        ("Extended by", ", ".join(code(e) for e in schema.extensions)),
    ]
    lines += [f"- **{k}**: {v}" for k, v in facts_list if v] + [""]
    lines += ["### Fields", ""] + _fields(facts, schema)
    links = all_links(schema)
    if links:
        lines += ["### Links", ""] + md_table(
            ["Link", "Target", "Cardinality", "Integrity", "Join", "Reverse link", "Extension"],
            [[code(e.xpath), code(e.target), md(e.cardinality + (" (reverse)" if e.reverse else "")),
              md(e.integrity or "normal"), code(join_text(e)),
              md(e.rev_link if e.reverse else (e.rev_link or schema.name)), md(e.belongs_to)] for e in links],
        )
    if schema.keys:
        lines += ["### Keys", ""] + md_table(
            ["Key", "Fields", "Primary"],
            [[md(k.name), ", ".join(code(f) for f in k.fields), "yes" if k is schema.primary_key else ""]
             for k in schema.keys],
        )
    if schema.dbindexes:
        lines += ["### Indexes", ""] + md_table(
            ["Index", "Fields", "Unique"],
            [[md(i.name), ", ".join(code(f) for f in i.fields), "yes" if i.unique else ""] for i in schema.dbindexes],
        )
    if schema.enumerations:
        lines += ["### Enumerations", ""]
        for enum in schema.enumerations.values():
            lines += [f"#### {md(enum.qualified_name)} ({md(enum.basetype)})", ""]
            lines += md_table(["Name", "Value", "Label", "Description"],
                              [[code(v.name), code(v.value), md(v.label), md(v.desc)] for v in enum.values])
    if schema.methods:
        rows = []
        for m in schema.methods:
            kind = ", ".join(k for k, on in (("static", m.static), ("const", m.const)) if on) or "instance"
            params = "; ".join(f"{p.inout} {p.name}: {p.type}" for p in m.params)
            rows.append([code(m.name), kind, md(m.access), md(params), md(m.label or m.desc), md(m.belongs_to)])
        lines += ["### Methods", ""] + md_table(
            ["Method", "Kind", "Access", "Parameters", "Description", "Extension"], rows)
    return lines


def render(facts: ModelFacts) -> bytes:
    registry = facts.registry
    lines = ["# Data model", "",
             f"{len(registry)} schemas in {len(registry.namespaces())} namespaces, "
             f"{len(registry.tables())} SQL tables.", ""]
    for ns, schemas in sorted(registry.namespaces().items()):
        lines.append(f"- **{md(ns)}**: " + ", ".join(md(s.id) for s in schemas))
    lines.append("")
    for schema in registry:
        lines += _schema(facts, schema)
    return ("\n".join(lines).rstrip() + "\n").encode("utf-8")
