"""The entity-relationship graph that both diagram renderers draw.

Nodes are tables (schemas with a SQL table) showing their primary-key and foreign-key columns;
edges are the links declared in schemas (reverse halves are not drawn twice), from the table
holding the foreign key to the target, labelled with the link name and cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..schema.model import Schema
from .facts import ModelFacts, declared_links, join_source, page_name

# Above this many tables the whole-model diagram drops the column rows (title-only boxes):
# it keeps dot's layout time in seconds and the picture readable.
COMPACT_THRESHOLD = 80


@dataclass
class Column:
    name: str  # xpath
    sqlname: str
    kind: str  # "pk" | "fk" | "pkfk"


@dataclass
class Node:
    id: str  # schema id
    title: str  # label
    subtitle: str  # "ns:name · SqlTable"
    href: str
    namespace: str
    columns: list[Column] = field(default_factory=list)
    focus: bool = False
    tooltip: str = ""


@dataclass
class Edge:
    src: str
    dst: str
    name: str  # link name
    cardinality: str  # "N-1" | "1-1"
    src_column: str | None = None  # xpath of the first FK column, to attach the edge to its row
    tooltip: str = ""


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    edges: list[Edge]
    compact: bool = False
    cluster: bool = False  # group nodes by namespace

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)


def _node(facts: ModelFacts, schema: Schema, href_prefix: str, *, compact: bool, focus: bool = False) -> Node:
    info = facts[schema.id]
    columns: list[Column] = []
    if not compact:
        for attr in schema.sql_attributes():
            is_pk, is_fk = attr.xpath in info.pk, attr.xpath in info.fks
            if is_pk or is_fk:
                kind = "pkfk" if is_pk and is_fk else "pk" if is_pk else "fk"
                columns.append(Column(attr.xpath, attr.sqlname or "", kind))
    columns.sort(key=lambda c: (c.kind != "pk" and c.kind != "pkfk", c.name))
    return Node(
        id=schema.id, title=schema.label, subtitle=f"{schema.id} · {schema.sqltable}",
        href=f"{href_prefix}{page_name(schema.id)}.html", namespace=schema.namespace,
        columns=columns, focus=focus, tooltip=f"{schema.label} ({schema.id}, table {schema.sqltable})",
    )


def _edges(facts: ModelFacts, schemas: list[Schema], ids: set[str]) -> list[Edge]:
    edges = []
    for schema in schemas:
        for link in declared_links(schema):
            if link.target not in ids:
                continue
            fk = join_source(link, link.joins[0].src) if link.joins else None
            edges.append(Edge(
                src=schema.id, dst=link.target or "", name=link.name, cardinality=link.cardinality,
                src_column=fk,
                tooltip=f"{schema.id}/{link.xpath} → {link.target} ({link.cardinality}, integrity {link.integrity or 'normal'})",
            ))
    return edges


def _merge_parallel(edges: list[Edge]) -> list[Edge]:
    """One edge per pair of tables (compact diagrams have no column rows to tell them apart)."""
    merged: dict[tuple[str, str], Edge] = {}
    for e in edges:
        seen = merged.get((e.src, e.dst))
        if seen is None:
            merged[(e.src, e.dst)] = Edge(e.src, e.dst, e.name, e.cardinality, None, e.tooltip)
            continue
        seen.name += f", {e.name}"
        seen.tooltip += f"; {e.tooltip}"
        if seen.cardinality != e.cardinality:
            seen.cardinality = "N-1"
    return list(merged.values())


def model_graph(facts: ModelFacts, *, href_prefix: str = "schemas/") -> Graph:
    tables = facts.registry.tables()
    compact = len(tables) > COMPACT_THRESHOLD
    nodes = [_node(facts, s, href_prefix, compact=compact) for s in tables]
    edges = _edges(facts, tables, {s.id for s in tables})
    if compact:
        edges = _merge_parallel(edges)
    return Graph("erd", nodes, edges, compact=compact, cluster=len(facts.registry.namespaces()) > 1)


def neighbourhood_graph(facts: ModelFacts, schema: Schema, *, href_prefix: str = "") -> Graph:
    """The schema, the tables it links to and the tables linking to it."""
    registry = facts.registry
    members = [schema] + [registry.get(i) for i in facts.neighbours(schema)]
    members = [s for s in members if s.has_table]
    ids = {s.id for s in members}
    nodes = [_node(facts, s, href_prefix, compact=False, focus=s.id == schema.id) for s in members]
    # only edges touching the focused schema: the picture is about it
    edges = [e for e in _edges(facts, members, ids) if schema.id in (e.src, e.dst)]
    return Graph(page_name(schema.id), nodes, edges)
