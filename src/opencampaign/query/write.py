"""xtk:session#Write and #WriteCollection (data-model.md §4, decisions in docs/write.md).

A document is parsed into a tree of entities (one per element to reconcile: the root, its N-1
link elements, its collection members), validated against the schema, then reconciled level by
level with batched lookups: linked entities before the entities that point at them, entities
before their collection members. The resulting plan is executed by write_exec.execute.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..schema.model import XML_DATA_COLUMN, Element, Schema
from ..schema.registry import SchemaRegistry
from ..storage.storage import Storage
from . import xmldata
from .errors import DataApiError, database_error, echo
from .values import format_value
from .write_batch import write_batch
from .write_exec import execute
from .write_fields import (
    WriteFailure,
    column_attr,
    fail_save,
    field_table,
    load_document,
    parse_field,
    pk_columns,
    schema_of,
    to_db,
)
from .write_plan import Plan, Row, check_unique_keys, expand_deletes

OPERATIONS = ("insertOrUpdate", "insert", "update", "delete", "none")
_MISSING = (None, "")


@dataclass(eq=False, slots=True)
class Entity:
    """One element of the document that maps to a row."""

    schema: Schema
    path: str
    operation: str
    key: list[str] | None
    fields: dict[str, Any] = field(default_factory=dict)  # column -> value
    xml: etree._Element | None = None  # patch of the mData memo
    links: list[tuple[Element, Entity]] = field(default_factory=list)  # N-1 link elements
    members: list[tuple[Element, Entity]] = field(default_factory=list)  # 1-N collection members
    scope: tuple[str, ...] = ()  # columns pointing at the parent (collection members)
    row: Row | None = None
    skipped: bool = False  # update of a missing row: a no-op, members included


def _where(entity: Entity) -> str:
    return f"Element '{entity.path}' (document with schema '{entity.schema.id}')"


def failure(entity: Entity, message: str) -> WriteFailure:
    return WriteFailure(message, _where(entity))


# --- parsing --------------------------------------------------------------------------------


class Parser:
    def __init__(self, registry: SchemaRegistry):
        self.registry = registry
        self.needed: dict[str, set[str]] = {}  # schema id -> columns other rows join on
        self._key_parts: dict[str, list[str]] = {}

    def entity(self, schema: Schema, elem: etree._Element, path: str) -> Entity:
        operation = elem.get("_operation") or "insertOrUpdate"
        key = elem.get("_key")
        parts = None
        if key:
            parts = self._key_parts.get(key)
            if parts is None:
                parts = self._key_parts[key] = [p.strip() for p in key.split(",") if p.strip()]
        entity = Entity(schema, path, operation, parts)
        if operation not in OPERATIONS:
            raise failure(entity, f"Invalid value '{echo(operation)}' for attribute '_operation' "
                                  f"(expected {', '.join(OPERATIONS)})")
        if schema.root is None or not schema.has_table:
            raise failure(entity, f"Schema '{schema.full_label}' cannot be written: it has no table")
        try:
            self.walk(entity, schema.root, elem, [])
        except WriteFailure as exc:
            if not any(line.startswith("Element '") for line in exc.lines):
                exc.lines.append(_where(entity))
            raise
        return entity

    def unknown_attribute(self, schema: Schema, name: str) -> WriteFailure:
        return WriteFailure(f"Attribute '{echo(name)}' unknown (see definition of schema '{schema.full_label}')")

    def unknown_element(self, schema: Schema, name: str) -> WriteFailure:
        return WriteFailure(f"Element '{echo(name)}' unknown (see definition of schema '{schema.full_label}')")

    def patch(self, entity: Entity, steps: list[str]) -> etree._Element:
        if entity.xml is None:
            entity.xml = xmldata.new_patch(entity.schema)
        return xmldata.ensure_path(entity.xml, steps)

    def walk(self, entity: Entity, definition: Element, elem: etree._Element, steps: list[str]) -> None:
        schema = entity.schema
        table = field_table(self.registry, schema.id, definition)
        fields = entity.fields
        for name, text in elem.attrib.items():
            entry = table.get(name)
            if entry is None:
                if name.startswith(("{", "_")) or name == "xtkschema":
                    continue  # namespaced (xsi:type...), control (_key, _cs...) and the root marker
                raise self.unknown_attribute(schema, name)
            convert = entry.convert
            if convert is None:
                continue  # calculated: read-only, ignored so queried documents can be written back
            if entry.column is not None:
                fields[entry.column] = convert(text)
            else:
                self.patch(entity, steps).set(name, convert(text))
        if len(elem) == 0:
            return
        for child in elem:
            if not isinstance(child.tag, str):
                continue  # comments, processing instructions
            tag = child.tag
            child_def = definition.elements.get(tag) if "}" not in tag else None
            if child_def is None:
                raise self.unknown_element(schema, tag)
            if child_def.is_link:
                self.link(entity, child_def, child)
            elif child_def.type == "ANY":
                self.patch(entity, steps).append(_clean_copy(child))
            elif child_def.is_text:
                self.text(entity, child_def, child, steps)
            elif child_def.xml or child_def.unbound:
                self.patch(entity, steps).append(self.xml_subtree(schema, child_def, child))
            else:
                self.walk(entity, child_def, child, [*steps, tag])

    def text(self, entity: Entity, definition: Element, child: etree._Element, steps: list[str]) -> None:
        text = child.text or ""
        if definition.length and len(text) > definition.length:
            raise WriteFailure(f"The value of field '{definition.xpath}' is too long ({len(text)} characters, "
                               f"at most {definition.length})")
        if definition.sqlname is not None:
            entity.fields[definition.sqlname] = text or None
        else:
            etree.SubElement(self.patch(entity, steps), definition.name).text = text

    def link(self, entity: Entity, definition: Element, child: etree._Element) -> None:
        if not [n for n in child.attrib if not n.startswith("{") and n != "_operation"] and len(child) == 0:
            return  # <folder/>: nothing to reconcile
        target = self.registry.get(definition.target or "")
        sub = self.entity(target, child, f"{entity.path}/{child.tag}")
        if definition.unbound or definition.reverse:
            sub.scope = tuple(column_attr(target, j.dst).sqlname or "" for j in definition.joins)
            self.needed.setdefault(entity.schema.id, set()).update(
                column_attr(entity.schema, j.src).sqlname or "" for j in definition.joins)
            entity.members.append((definition, sub))
            return
        if any(d is definition for d, _ in entity.links):
            raise WriteFailure(f"Element '{child.tag}' appears more than once")
        self.needed.setdefault(target.id, set()).update(
            column_attr(target, j.dst).sqlname or "" for j in definition.joins)
        entity.links.append((definition, sub))

    def xml_subtree(self, schema: Schema, definition: Element, elem: etree._Element) -> etree._Element:
        """A validated copy of an XML-stored element, values in their canonical form."""
        out = etree.Element(definition.name)
        for name, text in elem.attrib.items():
            if name in ("_operation", "_key"):
                out.set(name, text)
                continue
            if name.startswith(("{", "_")) or name == "xtkschema":
                continue
            attr = definition.attributes.get(name)
            if attr is None:
                raise self.unknown_attribute(schema, name)
            if attr.expr is None:
                out.set(name, format_value(attr.type, parse_field(self.registry, attr, text)))
        if definition.is_text:
            out.text = elem.text
        for child in elem:
            if not isinstance(child.tag, str):
                continue
            child_def = definition.elements.get(child.tag) if "}" not in child.tag else None
            if child_def is None or child_def.is_link:
                raise self.unknown_element(schema, str(child.tag))
            out.append(_clean_copy(child) if child_def.type == "ANY" else self.xml_subtree(schema, child_def, child))
        return out


def _clean_copy(elem: etree._Element) -> etree._Element:
    copy = deepcopy(elem)
    copy.tail = None
    return copy


# --- reconciliation -------------------------------------------------------------------------


class Writer:
    def __init__(self, plan: Plan, needed: dict[str, set[str]]):
        self.plan = plan
        self.needed = needed
        self._keys: dict[tuple, tuple[list[str], tuple[str, ...]]] = {}

    def process(self, entities: list[Entity]) -> None:
        linked = [sub for e in entities for _, sub in e.links]
        if linked:
            self.process(linked)
        for entity in entities:
            for definition, sub in entity.links:
                self.apply_link(entity, definition, sub)
        groups: dict[str, list[Entity]] = {}
        for entity in entities:
            groups.setdefault(entity.schema.id, []).append(entity)
        for group in groups.values():
            self.reconcile(group)
        members: list[Entity] = []
        for entity in entities:
            if entity.row is None or entity.skipped or entity.row.state == "delete":
                continue
            for definition, member in entity.members:
                for join in definition.joins:
                    src = column_attr(entity.schema, join.src).sqlname or ""
                    dst = column_attr(member.schema, join.dst).sqlname or ""
                    member.fields[dst] = entity.row.known.get(src)
                members.append(member)
        if members:
            self.process(members)

    def apply_link(self, entity: Entity, definition: Element, sub: Entity) -> None:
        if sub.skipped or sub.row is None:
            return
        for join in definition.joins:
            src = column_attr(entity.schema, join.src)
            dst = column_attr(sub.schema, join.dst).sqlname or ""
            value = None if sub.row.state == "delete" else sub.row.known.get(dst)
            entity.fields[src.sqlname or ""] = to_db(src, value)

    # keys
    def key_columns(self, entity: Entity, part: str) -> list[str]:
        schema = entity.schema
        path = part.strip().strip("[]").strip()
        attr = schema.attribute(path)
        if attr is not None:
            if attr.sqlname is None:
                raise failure(entity, f"Field '{attr.xpath}' cannot be used in a key: it is not stored in a column")
            return [attr.sqlname]
        node = schema.root
        for step in path.split("/"):
            node = node.elements.get(step) if node is not None else None
            if node is None:
                break
            if node.is_link and not node.unbound and not node.reverse:
                return [column_attr(schema, j.src).sqlname or "" for j in node.joins]
        raise failure(entity, f"Attribute '{echo(part)}' unknown (see definition of schema '{schema.full_label}')")

    def criteria(self, entity: Entity) -> tuple[tuple[str, ...], tuple] | None:
        schema = entity.schema
        fields = entity.fields
        cols: list[str] | None = None
        if entity.key:
            cache_key = (schema.id, tuple(entity.key), entity.scope)
            cached = self._keys.get(cache_key)
            if cached is None:
                own = [c for part in entity.key for c in self.key_columns(entity, part)]
                cached = self._keys[cache_key] = (own, tuple(dict.fromkeys([*own, *entity.scope])))
            for c in cached[0]:
                if fields.get(c) in _MISSING:
                    raise self.no_key(entity)
            return cached[1], tuple([fields.get(c) for c in cached[1]])
        elif schema.autopk and fields.get(pk_columns(schema)[0]) not in (None, "", 0):
            cols = pk_columns(schema)
        else:
            for key in schema.keys:
                candidate = [column_attr(schema, f).sqlname or "" for f in key.fields]
                if all(fields.get(c) not in (None, "", 0) for c in candidate):
                    cols = candidate
                    break
        if cols is None:
            return None
        cols = list(dict.fromkeys([*cols, *entity.scope]))
        return tuple(cols), tuple(fields.get(c) for c in cols)

    def no_key(self, entity: Entity) -> WriteFailure:
        return failure(entity, f"Unable to find key values for element '{entity.schema.label_singular}' "
                               f"(document with schema '{entity.schema.name}')")

    def reconcile(self, group: list[Entity]) -> None:
        plan, schema = self.plan, group[0].schema
        pks = pk_columns(schema)
        keyed: list[tuple[Entity, tuple[tuple[str, ...], tuple] | None]] = []
        lookups: dict[tuple[str, ...], set[tuple]] = {}
        for entity in group:
            crit = None if entity.operation == "insert" else self.criteria(entity)
            keyed.append((entity, crit))
            if crit is not None and plan.indexed(schema, *crit) is None:
                lookups.setdefault(crit[0], set()).add(crit[1])
        extra = set(self.needed.get(schema.id, ()))
        if schema.has_xml_data and any(e.xml is not None for e in group):
            extra.add(XML_DATA_COLUMN)
        found: dict[tuple[tuple[str, ...], tuple], list[dict[str, Any]]] = {}
        for cols, values in lookups.items():
            wanted = [*pks, *extra]
            for record in plan.fetch(schema, wanted, cols, values):
                found.setdefault((cols, tuple(record[c] for c in cols)), []).append(record)
        # Ids for the rows that will probably be inserted, drawn at once (an over-estimate, such as
        # one key twice in the document, only leaves a gap in the sequence).
        plan.reserve_ids(schema, sum(1 for e, crit in keyed if e.operation in ("insert", "insertOrUpdate")
                                     and (crit is None or (crit not in found and plan.indexed(schema, *crit) is None))
                                     and e.fields.get(pks[0]) in (None, "", 0)))
        for entity, crit in keyed:
            self.decide(entity, crit, found)

    def match(self, entity: Entity, crit: tuple[tuple[str, ...], tuple],
              found: dict[tuple[tuple[str, ...], tuple], list[dict[str, Any]]]) -> list[Row]:
        plan, schema = self.plan, entity.schema
        pending = plan.indexed(schema, *crit)
        if pending is not None:
            return [pending]
        pks = pk_columns(schema)
        rows = []
        records = sorted(found.get(crit, []), key=lambda r: tuple(r[c] for c in pks))  # lowest key first
        for record in records:
            pk = tuple(record[c] for c in pks)
            row = plan.get(schema, pk)
            if row is None:
                row = plan.add(Row(schema, pk, "exists", known=dict(record)))
                if XML_DATA_COLUMN in record:
                    row.memo, row.memo_loaded = xmldata.read_memo(record[XML_DATA_COLUMN]), True
                    row.known.pop(XML_DATA_COLUMN, None)
            elif row.state == "delete" or tuple(row.known.get(c, record[c]) for c in crit[0]) != crit[1]:
                continue
            rows.append(row)
        return rows

    def decide(self, entity: Entity, crit: tuple[tuple[str, ...], tuple] | None,
               found: dict[tuple[tuple[str, ...], tuple], list[dict[str, Any]]]) -> None:
        operation, schema = entity.operation, entity.schema
        if operation == "insert":
            entity.row = self.insert(entity)
            return
        if crit is None:
            if operation == "insertOrUpdate" and schema.autopk:
                entity.row = self.insert(entity)
                return
            raise self.no_key(entity)
        rows = self.match(entity, crit, found)
        if operation == "delete":
            for row in rows:
                row.state = "delete"
            entity.row = rows[0] if rows else None
            entity.skipped = not rows
            return
        if not rows:
            if operation == "insertOrUpdate":
                entity.row = self.insert(entity)
                self.plan.register(entity.row, crit[0])
            elif operation == "update":
                entity.skipped = True  # docs/write.md: update of a missing row is a no-op
            else:
                shown = ",".join("" if v is None else str(v) for v in crit[1])
                raise failure(entity, f"Unable to find document with path '{schema.label_singular}' from key "
                                      f"'{echo(shown)}' (document with schema '{schema.name}' and name '{echo(shown)}')")
            return
        row = rows[0]
        entity.row = row
        self.plan.register(row, crit[0])
        if operation != "none":
            self.update(row, entity, crit[0])

    def insert(self, entity: Entity) -> Row:
        plan, schema = self.plan, entity.schema
        values = dict(entity.fields)
        pks = pk_columns(schema)
        generated = False
        if schema.autopk and values.get(pks[0]) in (None, "", 0):
            values[pks[0]] = plan.new_pk(schema)
            generated = True
        if any(values.get(c) in _MISSING for c in pks):
            raise self.no_key(entity)
        plan.defaults.apply_insert(schema, values)
        pk = tuple(values[c] for c in pks)
        existing = plan.get(schema, pk)
        if existing is not None and existing.state != "delete":
            raise failure(entity, f"A '{schema.label_singular}' with the same key "
                                  f"'{echo(','.join(str(v) for v in pk))}' already exists.")
        row = Row(schema, pk, "insert", known=dict(values), changes=values, generated_pk=generated)
        if existing is not None:  # deleted earlier in this document: re-created under the same key
            existing.state, row = "update", existing
            row.known, row.changes = dict(values), dict(values)
        if entity.xml is not None:
            row.memo, row.memo_loaded = xmldata.merge(schema, None, entity.xml), True
        row = plan.add(row)
        if not generated:  # a generated id is unknown to the document: nothing looks it up
            plan.register(row, tuple(pks))
        return row

    def update(self, row: Row, entity: Entity, key_cols: tuple[str, ...]) -> None:
        changes = {c: v for c, v in entity.fields.items() if not (c in key_cols and row.known.get(c) == v)}
        if entity.schema.autopk:
            pk = pk_columns(entity.schema)[0]
            if pk in changes and changes[pk] in (None, "", 0):
                del changes[pk]  # id 0 means "no id" (a row matched by another key keeps its own)
        if not changes and entity.xml is None:
            return
        was_new = row.state == "insert"
        row.set(changes)
        if entity.xml is not None:
            self.plan.load_memo(row)
            row.memo = xmldata.merge(entity.schema, row.memo, entity.xml)
            if row.state == "exists":
                row.state = "update"
        if not was_new:
            given = set(entity.fields)
            audit: dict[str, Any] = {}
            self.plan.defaults.apply_audit(entity.schema, audit, insert=False)
            row.set({c: v for c, v in audit.items() if c not in given})


# --- public API -----------------------------------------------------------------------------


def write(storage: Storage, registry: SchemaRegistry, document: Any, ctx: CallContext) -> None:
    """xtk:session#Write: one entity document (lxml element, XML text or SimpleJson dict)."""
    root, schema = _open(registry, document)
    _run(storage, registry, schema, [(root, str(root.tag))], ctx)


def write_collection(storage: Storage, registry: SchemaRegistry, document: Any, ctx: CallContext) -> None:
    """xtk:session#WriteCollection: `<any-root xtkschema="ns:name"><name .../>...</any-root>`.
    Collections of flat records take the batch path (write_batch), the others this module's."""
    root, schema = _open(registry, document)
    with _saving(storage, schema), _gc_paused(len(root)):
        if write_batch(storage, registry, schema, root, ctx):
            return
    items: list[tuple[etree._Element, str]] = []
    for position, child in enumerate((c for c in root if isinstance(c.tag, str)), start=1):
        if child.tag != schema.name:
            raise fail_save(schema.full_label, WriteFailure(
                f"Element '{echo(str(child.tag))}' unknown (see definition of schema '{schema.full_label}')"))
        items.append((child, f"{child.tag}[{position}]"))
    _run(storage, registry, schema, items, ctx)


@contextmanager
def _gc_paused(size: int) -> Iterator[None]:
    """Planning a big collection creates many long-lived small objects, and the cyclic garbage
    collector's passes over them cost a fifth of the time: pause it (process-wide, restored after;
    reference counting still frees everything acyclic)."""
    if size < 1000 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _open(registry: SchemaRegistry, document: Any) -> tuple[etree._Element, Schema]:
    try:
        root = load_document(document)
        return root, schema_of(registry, root)
    except WriteFailure as exc:
        raise fail_save("unknown", exc) from None


def _run(storage: Storage, registry: SchemaRegistry, schema: Schema, items: list[tuple[etree._Element, str]],
         ctx: CallContext) -> None:
    with _saving(storage, schema), Plan(storage, registry, ctx) as plan:
        with _gc_paused(len(items)):
            parser = Parser(registry)
            entities = [parser.entity(schema, elem, path) for elem, path in items]
            Writer(plan, parser.needed).process(entities)
        expand_deletes(plan)
        check_unique_keys(plan)
        execute(plan)


@contextmanager
def _saving(storage: Storage, schema: Schema) -> Iterator[None]:
    """Failures as Campaign reports a failed save (XSV-350023 and its causes)."""
    try:
        yield
    except WriteFailure as exc:
        raise fail_save(schema.full_label, exc) from None
    except DataApiError:
        raise
    except sa.exc.DBAPIError as exc:
        role = storage.home(schema.id) if schema.has_table else "local"
        raise fail_save(schema.full_label, WriteFailure(database_error(exc, storage.dialect(role)).headline,
                                                        client=False)) from None
