"""The REST layer's seam to the data API: reads as queryDef-like selections, writes as Write documents.

Reads: a `Selection` (XTK expressions for fields, conditions, order) becomes a queryDef document
run by `query.querydef`; values come back typed. Writes are entity documents for `query.write`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..context import CallContext
from ..query import write as write_engine
from ..query.persist import new_instance
from ..query.querydef import execute_query
from ..query.values import format_value, parse_value
from ..schema.model import Schema


@dataclass
class Selection:
    schema_id: str
    fields: dict[str, str]  # alias -> XTK expression
    where: list[str] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (expression, descending)
    limit: int | None = None
    types: dict[str, str] = field(default_factory=dict)  # alias -> XTK type of the value


def p(xpath: str) -> str:
    """An xpath as an expression operand (brackets allow `@folder-id`, `location/@city`)."""
    return xpath if xpath.startswith("[") else f"[{xpath}]"


def quote(text: str) -> str:
    """An XTK string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return quote(escaped + "%")


class DataAccess:
    def __init__(self, instance: Any):
        self.instance = instance
        self.storage = instance.storage
        self.registry = instance.registry

    def schema(self, schema_id: str) -> Schema:
        return self.registry.get(schema_id)

    def _document(self, sel: Selection, operation: str) -> etree._Element:
        doc = etree.Element("queryDef", schema=sel.schema_id, operation=operation)
        if sel.limit is not None:
            doc.set("lineCount", str(sel.limit))
        if sel.fields:
            select = etree.SubElement(doc, "select")
            for alias, expr in sel.fields.items():
                etree.SubElement(select, "node", expr=expr, alias="@" + alias)
        if sel.where:
            where = etree.SubElement(doc, "where")
            for cond in sel.where:
                etree.SubElement(where, "condition", expr=cond)
        if sel.order:
            order = etree.SubElement(doc, "orderBy")
            for expr, desc in sel.order:
                node = etree.SubElement(order, "node", expr=expr)
                if desc:
                    node.set("sortDesc", "true")
        return doc

    def select(self, sel: Selection, ctx: CallContext) -> list[dict[str, Any]]:
        """Rows of the queryDef output, typed by `sel.types` (others stay text)."""
        out = execute_query(self.storage, self.registry, self._document(sel, "select"), ctx,
                            default_line_count=sel.limit or 10000)
        types = sel.types
        rows = []
        for elem in out:
            attrib = elem.attrib
            rows.append({alias: _typed(types.get(alias), attrib.get(alias, "")) for alias in sel.fields})
        return rows

    def count(self, sel: Selection, ctx: CallContext) -> int:
        out = execute_query(self.storage, self.registry, self._document(sel, "count"), ctx)
        return int(out.get("count") or 0)

    # -- writes: Write documents ---------------------------------------------------------------
    def insert(self, schema: Schema, values: dict[str, Any], ctx: CallContext) -> etree._Element:
        """Creates a row; returns the NewInstance document (with the new @id and defaults)."""
        doc = new_instance(self.storage, self.registry, etree.Element(schema.name, xtkschema=schema.id), ctx)
        _fill(doc, schema, values)
        write_engine.write(self.storage, self.registry, doc, ctx)
        return doc

    def update(self, schema: Schema, key: dict[str, Any], values: dict[str, Any], ctx: CallContext) -> None:
        doc = _keyed(schema, key, "update")
        _fill(doc, schema, values)
        write_engine.write(self.storage, self.registry, doc, ctx)

    def delete(self, schema: Schema, key: dict[str, Any], ctx: CallContext) -> None:
        write_engine.write(self.storage, self.registry, _keyed(schema, key, "delete"), ctx)


def _keyed(schema: Schema, key: dict[str, Any], operation: str) -> etree._Element:
    doc = etree.Element(schema.name, xtkschema=schema.id, _operation=operation)
    doc.set("_key", ",".join(key))
    _fill(doc, schema, key)
    return doc


def _fill(doc: etree._Element, schema: Schema, values: dict[str, Any]) -> None:
    """Sets `xpath -> Python value` pairs on an entity document (None clears the field)."""
    for xpath, value in values.items():
        attr = schema.attribute(xpath)
        text = "" if value is None else format_value(attr.type if attr else "string", value)
        steps = [s for s in xpath.split("/") if s]
        node = doc
        for step in steps[:-1]:
            child = node.find(step)
            node = child if child is not None else etree.SubElement(node, step)
        node.set(steps[-1].lstrip("@"), text)


def _typed(xtk_type: str | None, text: str) -> Any:
    if xtk_type is None:
        return text
    try:
        return parse_value(xtk_type, text)
    except ValueError:
        return text
