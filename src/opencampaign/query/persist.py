"""xtk:persist methods on the storage: NewInstance, DeleteCollection, GetNewIds and Duplicate
(data-model.md §4, docs/write.md).

The write engine itself is split by what it holds: `write_fields` (failures, field values,
defaults), `write_plan` (the plan, cascades, unique keys), `write_exec` (statements,
transactions, compensation) and `write` (documents to a plan). Names used by callers are
re-exported here.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..schema.model import XML_DATA_COLUMN, Schema
from ..schema.registry import SchemaRegistry
from ..storage.storage import Storage
from . import xmldata
from .errors import DataApiError, database_error, echo, unknown_schema
from .values import format_value, parse_value
from .write_exec import Statement, build_statements, execute, map_database_error, run_statement
from .write_fields import (
    DELETE_FAILED,
    INVALID_ARGUMENT,
    SAVE_FAILED,
    WriteFailure,
    collection_links,
    column_attr,
    fail_save,
    load_document,
    parse_field,
    pk_attributes,
    pk_columns,
    schema_of,
    to_db,
)
from .write_plan import Plan, Row, check_unique_keys, expand_deletes

# Also re-exported: the write engine's pieces, as callers and tests imported them from here.
__all__ = ["DELETE_FAILED", "INVALID_ARGUMENT", "SAVE_FAILED", "Plan", "Row", "Statement", "WriteFailure",
           "build_statements", "check_unique_keys", "delete_collection", "duplicate", "execute", "expand_deletes",
           "fail_save", "get_new_ids", "load_document", "map_database_error", "new_instance", "parse_field",
           "parse_primary_key", "row_document", "run_statement", "schema_of", "xmldata"]

# --- NewInstance ----------------------------------------------------------------------------


def new_instance(storage: Storage, registry: SchemaRegistry, document: Any, ctx: CallContext) -> etree._Element:
    """xtk:persist#NewInstance: the entity with its defaults, a new @id (autopk) drawn from the
    schema's sequence, `_operation="insert"` and `xtkschema`. Nothing is written."""
    root = load_document(document)
    try:
        schema = schema_of(registry, root)
    except WriteFailure as failure:
        raise DataApiError(SAVE_FAILED, "Unable to create the new instance.", failure.lines) from None
    out = etree.Element(schema.name)
    with Plan(storage, registry, ctx) as plan:
        values: dict[str, Any] = {}
        if schema.autopk:
            pk = schema.attribute("@id")
            assert pk is not None and pk.sqlname
            given = root.get("id")
            values[pk.sqlname] = given if given not in (None, "", "0") else plan.new_pk(schema)
        if schema.has_table:
            plan.defaults.apply_insert(schema, values)
        for attr in schema.sql_attributes():
            if attr.sqlname in values and attr.sqlname is not None:
                _set_path(out, attr.xpath, format_value(attr.type, values[attr.sqlname]))
    for name, value in root.attrib.items():
        if not name.startswith("{"):
            out.set(name, value)
    for child in root:
        out.append(child)
    out.set("_operation", "insert")
    out.set("xtkschema", schema.id)
    return out


def _set_path(doc: etree._Element, xpath: str, text: str) -> None:
    steps = xpath.split("/")
    node = xmldata.ensure_path(doc, steps[:-1])
    if text != "":
        node.set(steps[-1].lstrip("@"), text)


def row_document(schema: Schema, record: dict[str, Any]) -> etree._Element:
    """An entity document from a table row: columns at their xpaths, then the XML memo."""
    doc = etree.Element(schema.name)
    # Result rows may be keyed by physical names, lower-cased on PostgreSQL.
    folded = {k.lower(): v for k, v in record.items() if isinstance(k, str)}
    for attr in schema.sql_attributes():
        name = (attr.sqlname or "").lower()
        if name in folded:
            _set_path(doc, attr.xpath, format_value(attr.type, folded[name]))
    xmldata.apply_to_document(doc, xmldata.read_memo(folded.get(XML_DATA_COLUMN.lower())))
    return doc


# --- GetNewIds ------------------------------------------------------------------------------

_SEQUENCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_IDS = 100_000


def get_new_ids(storage: Storage, count: int, sequence: str = "XtkNewId") -> list[int]:
    """xtk:session#GetNewIds / GetNewIdsEx: `count` ids reserved from a sequence."""
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_IDS:
        raise DataApiError(INVALID_ARGUMENT, f"Invalid number of identifiers '{echo(str(count))}' (0 to {MAX_IDS}).")
    if not _SEQUENCE_NAME.fullmatch(sequence or ""):
        raise DataApiError(INVALID_ARGUMENT, f"Invalid sequence name '{echo(str(sequence))}'.")
    return storage.sequences.next_ids(sequence, count)


# --- DeleteCollection -----------------------------------------------------------------------


def matching_keys(plan: Plan, schema: Schema, where: etree._Element | None, ignore_delete_status: bool) -> list[tuple]:
    """Primary keys of the rows a queryDef `<where>` selects, compiled by the queryDef engine
    (so conditions, links, sub-queries and the recycle-bin rule are the same as ExecuteQuery's)."""
    from .querydef import compile_where

    compiled = compile_where(plan.storage, plan.registry, schema.id, where, plan.ctx,
                             ignore_delete_status=ignore_delete_status)
    table = compiled.table
    select = sa.select(*[table.c[c] for c in pk_columns(schema)]).select_from(compiled.from_clause)
    if compiled.clauses:
        select = select.where(*compiled.clauses)
    return [tuple(r) for r in plan.reader(schema).execute(select)]


def delete_collection(storage: Storage, registry: SchemaRegistry, schema_id: str, where: Any,
                      ignore_delete_status: bool, ctx: CallContext) -> int:
    """xtk:persist#DeleteCollection: delete the rows matching `where` (a queryDef `<where>` or
    `<condition>`), with link-integrity cascades. Returns the number of rows of `schema_id` deleted."""
    schema = registry.find(schema_id)
    if schema is None:
        raise unknown_schema(schema_id)
    headline = f"Unable to delete documents of type '{schema.full_label}'."
    try:
        where_elem = load_document(where, "where") if where is not None else None
        if where_elem is not None and where_elem.tag != "where":
            wrapper = etree.Element("where")
            wrapper.append(deepcopy(where_elem))
            where_elem = wrapper
        with Plan(storage, registry, ctx) as plan:
            plan.table(schema)
            keys = matching_keys(plan, schema, where_elem, ignore_delete_status)
            pks = pk_columns(schema)
            for key in keys:
                plan.add(Row(schema, key, "delete", known=dict(zip(pks, key, strict=True))))
            expand_deletes(plan)
            execute(plan)
        return len(keys)
    except WriteFailure as failure:
        raise DataApiError(DELETE_FAILED, headline, failure.lines, client=failure.client) from None
    except DataApiError as exc:
        raise DataApiError(DELETE_FAILED, headline, exc.lines, client=exc.client) from None
    except sa.exc.DBAPIError as exc:
        line = database_error(exc, storage.dialect(storage.home(schema.id))).headline
        raise DataApiError(DELETE_FAILED, headline, [line], client=False) from None


# --- Duplicate ------------------------------------------------------------------------------


def parse_primary_key(text: str) -> tuple[str, list[str]]:
    """`nms:recipient|123` -> ("nms:recipient", ["123"]); `\\|` and `\\"` are escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text or "")
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    if len(parts) < 2 or not parts[0]:
        raise DataApiError(INVALID_ARGUMENT, f"Invalid primary key '{echo(text or '')}' (expected 'schema|value').")
    return parts[0], parts[1:]


def duplicate(storage: Storage, registry: SchemaRegistry, schema_id: str, pk: str, ctx: CallContext, *,
              save: bool = False) -> etree._Element:
    """xtk:persist#Duplicate: a copy of the entity `pk` as a new document (`_operation="insert"`,
    new @id, defOnDuplicate defaults re-applied, owncopy collections copied as members). Like
    Campaign, the copy is returned, not saved, unless `save` is set (then it is written)."""
    pk_schema, pk_values = parse_primary_key(pk)
    schema = registry.find(schema_id or pk_schema)
    if schema is None:
        raise unknown_schema(schema_id or pk_schema)
    try:
        with Plan(storage, registry, ctx) as plan:
            doc = _duplicate_row(plan, schema, pk_values)
    except WriteFailure as failure:
        raise DataApiError(SAVE_FAILED, f"Unable to duplicate document of type '{schema.full_label}'.",
                           failure.lines, client=failure.client) from None
    doc.set("xtkschema", schema.id)
    if save:
        from .write import write

        write(storage, registry, doc, ctx)
    return doc


def _duplicate_row(plan: Plan, schema: Schema, pk_values: list[str]) -> etree._Element:
    attrs = pk_attributes(schema)
    if len(pk_values) != len(attrs):
        raise WriteFailure(f"The primary key of '{schema.full_label}' has {len(attrs)} part(s)")
    try:
        key = tuple(to_db(a, parse_value(a.type, v)) for a, v in zip(attrs, pk_values, strict=True))
    except ValueError as exc:
        raise WriteFailure(str(exc)) from None
    table = plan.table(schema)
    pks = [a.sqlname or "" for a in attrs]
    record = next(plan.fetch(schema, [c.key for c in table.columns], tuple(pks), [key]), None)
    if record is None:
        raise WriteFailure(f"Unable to find document with path '{schema.label_singular}' from key "
                           f"'{echo(','.join(pk_values))}' (document with schema '{schema.name}')")
    doc = _copy_document(plan, schema, record)
    for link in collection_links(schema):
        if link.integrity != "owncopy":
            continue
        child = plan.registry.get(link.target or "")
        src = tuple(record[column_attr(schema, j.src).sqlname or ""] for j in link.joins)
        dst = tuple(column_attr(child, j.dst).sqlname or "" for j in link.joins)
        child_table = plan.table(child)
        for child_record in plan.fetch(child, [c.key for c in child_table.columns], dst, [src]):
            for col in dst:
                child_record.pop(col, None)  # set from the new parent when written
            member = _copy_document(plan, child, child_record)
            member.tag = link.name
            doc.append(member)
    return doc


def _copy_document(plan: Plan, schema: Schema, record: dict[str, Any]) -> etree._Element:
    values = dict(record)
    if schema.autopk:
        pk = schema.attribute("@id")
        assert pk is not None and pk.sqlname
        values[pk.sqlname] = plan.new_pk(schema)
    plan.defaults.apply_insert(schema, values, duplicate=True)
    doc = row_document(schema, values)
    doc.set("_operation", "insert")
    return doc
