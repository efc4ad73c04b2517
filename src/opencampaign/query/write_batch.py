"""The batch path of WriteCollection (docs/write.md "Batches"): many flat records of one schema.

The general engine (write.py) builds an entity per element, reconciles it through the plan's
row objects and derives statements from them: about 25 us of Python per row. A collection of
records that only carry column fields (attributes and nested plain elements, no link elements,
collections or XML fields) needs none of that machinery. Its items are read with one keys()
and one values() call per element (lxml's attribute access is most of the reading cost), the
values of all items go to one flat list cut into columns by slicing, items are grouped by shape
(the attribute names of the item and of its child elements, `_key`, `_operation`), each shape's
texts are converted a column at a time, the keys of the whole batch are looked up at once, and
the columns go to the statements as they are (column-major: DuckDB's arrays, SQLite's bind
processing per column), without a Python object per row.

The decisions are the general path's, in the same order (docs/write.md "Reconciliation",
"_operation decisions"): an item whose key a previous item of the batch inserted or matched
updates that row; a non-unique key matching several rows updates the lowest primary key; ids are
drawn in document order with the same reservation. The usual batch, whose items have distinct
keys and no primary key, is decided a segment of items at a time (decide_distinct); others
item by item with a row object per touched row (decide). Anything else, and any failure found while
planning (invalid value, missing key, duplicate key, access refused), makes the batch step
aside before anything is written: the general path then runs on the same document and reports
the failure with its exact message and element path. Only database errors raised while the
statements run are reported from here, mapped like the general path's (same statements).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, islice, pairwise
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..schema.model import Element, Schema
from ..schema.registry import SchemaRegistry
from ..storage.storage import Storage
from .write_exec import Repeat, Statement, run_statements
from .write_fields import UNSET, BulkConverter, WriteFailure, field_table, pk_columns
from .write_plan import Plan, write_denied

log = logging.getLogger(__name__)
MIN_ITEMS = 2  # a single document gains nothing from the batch path
_EMPTY = (None, "", 0)  # an @id or key field that does not identify anything
_WRITABLE = ("insertOrUpdate", "insert", "update")
_SKIP = object()  # a child node without data (comment)
_LINK = object()  # a link element
_OPEN = object()  # in an item's flattened names: a child element starts (its tag follows)
_CLOSE = object()  # ... and ends


class Unsupported(Exception):
    """The batch path does not take this document (or found a failure): the general path will."""


@dataclass(eq=False, slots=True)
class _Part:
    """One element with a given list of attribute names: which of its values are column texts
    (`positions`), their columns and converters, and where an item's `_key`/`_operation` are."""

    columns: tuple[str, ...]
    positions: tuple[int, ...]
    bulks: tuple[BulkConverter, ...]
    key_at: int = -1
    operation_at: int = -1


@dataclass(eq=False, slots=True)
class _Level:
    """A schema element as the batch path reads it: its parts by attribute names, its child
    elements by tag (a level, or _SKIP for nodes without data, or _LINK)."""

    definition: Element
    parts: dict[tuple[str, ...], _Part] = field(default_factory=dict)
    children: dict[Any, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Layout:
    """The items whose flattened names (attribute names of the item and of its child elements,
    child tags) are the same: their values have the same length and the same column positions."""

    width: int  # values per item
    columns: tuple[str, ...]
    positions: tuple[int, ...]  # of each column's text among an item's values
    bulks: tuple[BulkConverter, ...]
    key_at: int = -1
    operation_at: int = -1
    shapes: dict[tuple[Any, Any], _Shape] = field(default_factory=dict)  # by (`_key`, `_operation`)


@dataclass(eq=False, slots=True)
class _Shape:
    """The items with one signature: the same columns, `_key` and `_operation`. Their values
    are held a column at a time (`data[column position][item index]`)."""

    columns: tuple[str, ...]
    bulks: tuple[BulkConverter, ...]
    operation: str
    key_cols: tuple[str, ...] | None  # from `_key`
    key_own: tuple[int, ...] = ()  # positions of the `_key` columns (each must have a value)
    key_pos: tuple[int, ...] = ()  # positions of the criteria columns
    candidates: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = ()  # without `_key`: @id, then keys
    pk_pos: tuple[int, ...] | None = None  # positions of the primary key columns, when all given
    changes: tuple[int, ...] = ()  # positions written by an update (all but the criteria columns)
    update_audit: dict[str, Any] = field(default_factory=dict)
    texts: list[list[str]] = field(default_factory=list)  # per column, while reading
    count: int = 0
    data: list[list[Any]] = field(default_factory=list)
    crits: list[tuple | None] = field(default_factory=list)  # per item: key values on the criteria

    def row(self, index: int) -> tuple:
        return tuple([column[index] for column in self.data])


Segment = tuple[_Shape, int, int]  # items start:stop of a shape, consecutive in the document


@dataclass(eq=False, slots=True)
class _Target:
    """One row the batch writes. A row touched by one item keeps a reference to that item's
    values; a second item merges into `merged`, the general path's row dict (changes of an
    update, values of an insert)."""

    state: str  # insert | update | exists
    pk: tuple | None  # None: drawn from the sequence
    shape: _Shape
    index: int
    merged: dict[str, Any] | None = None


def write_batch(storage: Storage, registry: SchemaRegistry, schema: Schema, root: etree._Element,
                ctx: CallContext) -> bool:
    """Write the collection `root` through the batch path and return True, or return False with
    nothing written when the general path must take it."""
    if schema.root is None or not schema.has_table or len(root) < MIN_ITEMS:
        return False
    try:
        with Plan(storage, registry, ctx) as plan:
            statements = _Batch(plan, schema).build(root)
    except Unsupported:
        return False
    except sa.exc.DBAPIError:
        raise  # the database failed a read: the general path would fail the same way
    except Exception:  # noqa: BLE001 - nothing written yet: the general path gives the right result
        log.warning("WriteCollection batch path failed on %s; the general path takes it", schema.id, exc_info=True)
        return False
    run_statements(storage, statements)
    return True


def _flatten(elem: etree._Element, names: list[Any], values: list[str]) -> None:
    """The children of `elem` appended to an item's flattened names and values."""
    for child in elem:
        names.append(_OPEN)
        names.append(child.tag)
        names += child.keys()
        values += child.values()
        if len(child):
            _flatten(child, names, values)
        names.append(_CLOSE)


def _gather(column: Sequence[Any], indexes: Sequence[int]) -> Sequence[Any]:
    """column[i] for each index (a slice for a range, in C when there are several)."""
    if isinstance(indexes, range):
        return column[indexes.start:indexes.stop]
    if len(indexes) > 1:
        return itemgetter(*indexes)(column)  # type: ignore[no-any-return]
    return [column[i] for i in indexes]


class _Batch:
    def __init__(self, plan: Plan, schema: Schema):
        assert schema.root is not None
        self.plan = plan
        self.schema = schema
        self.registry = plan.registry
        self.pks = pk_columns(schema)
        self.level = _Level(schema.root)
        self.layouts: dict[tuple, _Layout] = {}
        self.shapes: dict[tuple, _Shape] = {}
        self.criteria: tuple[str, ...] | None = None  # one set of criteria columns per batch

    def build(self, root: etree._Element) -> list[Statement]:
        segments = self.read(root)
        found, stored = self.lookup()
        statements = self.decide_distinct(segments, found)
        if statements is not None:
            return statements
        targets, count = self.decide(segments, found, stored)
        self.check_access(any(t.state != "exists" for t in targets))
        self.plan.reserve_ids(self.schema, count)
        explicit = {t.pk for t in targets if t.state == "insert" and t.pk is not None}
        drawn = [t for t in targets if t.state == "insert" and t.pk is None]
        for target, pk in zip(drawn, self.plan.new_pks(self.schema, len(drawn)), strict=True):
            target.pk = (pk,)
            if target.merged is not None:
                target.merged[self.pks[0]] = pk
        if explicit and any(t.pk in explicit for t in drawn):
            raise Unsupported  # an explicit id the sequence hands out too
        statements = self.statements(self.group(targets))
        self.check_unique_keys(statements, all_generated=not explicit)
        return statements

    # --- reading the items ------------------------------------------------------------------

    def read(self, root: etree._Element) -> list[Segment]:
        """The items as segments of their shapes, in document order; the shapes' columns
        converted (one converter call per column).

        lxml's attribute access is most of the cost, so an item is read with one keys() and
        one values() call per element; its names (with child tags) select a layout, looked up
        only when they differ from the previous item's, and the values of all items go to one
        flat list that is cut into columns by slicing."""
        name = self.schema.name
        layouts = self.layouts
        flat: list[str] = []
        runs: list[tuple[int, int, _Layout | None]] = []  # (first item, its first value, layout) per layout change
        previous: list[Any] | None = None
        count = 0
        for elem in root:
            tag = elem.tag
            if tag != name:
                if isinstance(tag, str):
                    raise Unsupported  # the general path names the unknown element
                continue  # comments, processing instructions
            names = elem.keys()
            values = elem.values()
            if len(elem):
                _flatten(elem, names, values)
            if names != previous:
                signature = tuple(names)
                layout = layouts.get(signature)
                if layout is None:
                    layout = layouts[signature] = self.layout(signature)
                runs.append((count, len(flat), layout))
                previous = names
            flat += values
            count += 1
        runs.append((count, len(flat), None))
        segments: list[Segment] = []
        for (start, offset, layout), (stop, end, _) in pairwise(runs):
            assert layout is not None
            self.split(layout, flat, offset, end, stop - start, segments)
        try:
            for shape in self.shapes.values():
                shape.data = [bulk(column) for bulk, column in zip(shape.bulks, shape.texts, strict=True)]
                shape.texts = []
                for i in shape.key_own:
                    if None in shape.data[i] or "" in shape.data[i]:
                        raise Unsupported  # "Unable to find key values"
        except WriteFailure:
            raise Unsupported from None  # invalid value: reported by the general path
        return segments

    def split(self, layout: _Layout, flat: list[str], offset: int, end: int, count: int,
              segments: list[Segment]) -> None:
        """The `count` items of one layout whose values are flat[offset:end], into their shapes."""
        width = layout.width
        texts = [flat[offset + p:end:width] for p in layout.positions]
        key_at, operation_at = layout.key_at, layout.operation_at
        keys = flat[offset + key_at:end:width] if key_at >= 0 else [None] * count
        operations = flat[offset + operation_at:end:width] if operation_at >= 0 else [None] * count
        if keys.count(keys[0]) == count and operations.count(operations[0]) == count:
            shape = self.shape_of(layout, keys[0], operations[0])
            if shape.count == 0:
                shape.texts = texts
            else:
                for column, more in zip(shape.texts, texts, strict=True):
                    column += more
            self.segment(segments, shape, shape.count, shape.count + count)
            shape.count += count
            return
        pending: dict[_Shape, list[int]] = {}  # items of different `_key`/`_operation`
        for i, head in enumerate(zip(keys, operations, strict=True)):
            shape = self.shape_of(layout, *head)
            indexes = pending.setdefault(shape, [])
            at = shape.count + len(indexes)
            self.segment(segments, shape, at, at + 1)
            indexes.append(i)
        for shape, indexes in pending.items():
            if shape.count == 0:
                shape.texts = [[] for _ in texts]
            for column, more in zip(shape.texts, texts, strict=True):
                column += _gather(more, indexes)
            shape.count += len(indexes)

    @staticmethod
    def segment(segments: list[Segment], shape: _Shape, start: int, stop: int) -> None:
        if segments and segments[-1][0] is shape and segments[-1][2] == start:
            start = segments.pop()[1]
        segments.append((shape, start, stop))

    def shape_of(self, layout: _Layout, key: str | None, operation: str | None) -> _Shape:
        shape = layout.shapes.get((key, operation))
        if shape is None:
            signature = (layout.columns, key, operation)
            shape = self.shapes.get(signature)
            if shape is None:
                shape = self.shapes[signature] = self.shape(layout, key, operation)
            layout.shapes[(key, operation)] = shape
        return shape

    def layout(self, names: tuple) -> _Layout:
        """What the flattened names of an item are: column texts, `_key`, `_operation`, skipped."""
        found: list[tuple[str, int, BulkConverter]] = []
        heads = [-1, -1]
        end, width = self.element(self.level, names, 0, 0, found, heads)
        assert end == len(names)
        columns = tuple(c for c, _, _ in found)
        if len(set(columns)) != len(columns):
            raise Unsupported  # one column twice (a repeated element): last-wins is the general path's
        return _Layout(width, columns, tuple(p for _, p, _ in found), tuple(b for _, _, b in found), *heads)

    def element(self, level: Any, names: tuple, i: int, offset: int, found: list[tuple[str, int, BulkConverter]],
                heads: list[int] | None) -> tuple[int, int]:
        """Read one element's names from names[i] (its children too, up to its _CLOSE or the end):
        its columns appended to `found` with their value positions (from `offset`); returns the
        next name index and value offset."""
        start = i
        while i < len(names) and names[i] is not _OPEN and names[i] is not _CLOSE:
            i += 1
        own = names[start:i]
        if level is _LINK:
            if [n for n in own if not n.startswith("{") and n != "_operation"] or (i < len(names) and names[i] is _OPEN):
                raise Unsupported  # link elements are reconciled by the general path
            # <folder/>: nothing to reconcile, as in the general path
        elif level is not _SKIP:
            part = level.parts.get(own)
            if part is None:
                part = self.part(level, own, root=heads is not None)
            found += [(c, offset + p, b) for c, p, b in zip(part.columns, part.positions, part.bulks, strict=True)]
            if heads is not None:
                heads[:] = [part.key_at, part.operation_at]
        offset += len(own)
        while i < len(names) and names[i] is _OPEN:
            tag = names[i + 1]
            sub = level.children.get(tag)
            if sub is None:
                sub = level.children[tag] = self.child_level(level, tag)
            i, offset = self.element(sub, names, i + 2, offset, found, None)
            i += 1  # its _CLOSE
        return i, offset

    def part(self, level: _Level, names: tuple[str, ...], *, root: bool = False) -> _Part:
        table = field_table(self.registry, self.schema.id, level.definition)
        columns: list[str] = []
        positions: list[int] = []
        bulks: list[BulkConverter] = []
        key_at = operation_at = -1
        for position, attr_name in enumerate(names):
            entry = table.get(attr_name)
            if entry is None:
                if root and attr_name == "_key":
                    key_at = position
                elif root and attr_name == "_operation":
                    operation_at = position
                elif not (attr_name.startswith(("{", "_")) or attr_name == "xtkschema"):
                    raise Unsupported  # unknown attribute
                continue
            if entry.convert is None:
                continue  # calculated: ignored, as the general path does
            if entry.column is None or entry.bulk is None:
                raise Unsupported  # XML field: the mData memo is the general path's
            columns.append(entry.column)
            positions.append(position)
            bulks.append(entry.bulk)
        part = level.parts[names] = _Part(tuple(columns), tuple(positions), tuple(bulks), key_at, operation_at)
        return part

    @staticmethod
    def child_level(level: _Level, tag: Any) -> Any:
        """What a child tag is, decided once per tag: _SKIP, _LINK, or the level to read."""
        if not isinstance(tag, str):
            return _SKIP  # comments, processing instructions
        found = level.definition.elements.get(tag) if "}" not in tag else None
        if found is None:
            raise Unsupported  # unknown element
        if found.is_link:
            return _LINK
        if found.type == "ANY" or found.is_text or found.xml or found.unbound:
            raise Unsupported  # stored in the mData memo, or a text element
        return _Level(found)

    def shape(self, layout: _Layout, key: str | None, operation: str | None) -> _Shape:
        schema = self.schema
        columns = layout.columns
        operation = operation or "insertOrUpdate"
        if operation not in _WRITABLE:
            raise Unsupported  # delete, none, or invalid
        position = {c: i for i, c in enumerate(columns)}
        shape = _Shape(columns, layout.bulks, operation, None)
        if all(c in position for c in self.pks):
            shape.pk_pos = tuple(position[c] for c in self.pks)
        key_parts = [p.strip() for p in key.split(",") if p.strip()] if key else []
        if key_parts and operation != "insert":
            own: list[str] = []
            for part in key_parts:
                attr = schema.attribute(part.strip().strip("[]").strip())
                if attr is None or attr.sqlname is None:
                    raise Unsupported  # a key through a link, or an unknown field
                own.append(attr.sqlname)
            if any(c not in position for c in own):
                raise Unsupported  # a key part without a value
            shape.key_cols = tuple(dict.fromkeys(own))
            shape.key_own = tuple(position[c] for c in own)
            shape.key_pos = tuple(position[c] for c in shape.key_cols)
            self.use_criteria(shape.key_cols)
        elif operation != "insert":
            candidates = []
            if schema.autopk and shape.pk_pos is not None:
                candidates.append((tuple(self.pks), shape.pk_pos))
            for schema_key in schema.keys:
                cols = []
                for xpath in schema_key.fields:
                    attr = schema.attribute(xpath)
                    if attr is None or attr.sqlname is None:
                        raise Unsupported
                    cols.append(attr.sqlname)
                if all(c in position for c in cols):
                    unique = tuple(dict.fromkeys(cols))
                    candidates.append((unique, tuple(position[c] for c in unique)))
            shape.candidates = tuple(candidates)
        return shape

    def use_criteria(self, cols: tuple[str, ...]) -> None:
        if self.criteria is None:
            self.criteria = cols
        elif self.criteria != cols:
            raise Unsupported  # items reconciled on different keys interleave in the general path

    # --- reconciliation ---------------------------------------------------------------------

    def lookup(self) -> tuple[dict[tuple, tuple], set[tuple]]:
        """Each item's key values (Writer.criteria); the primary key of the stored row matching
        each key (the lowest when several match), and all the primary keys found (one chunked
        query for the batch)."""
        for shape in self.shapes.values():
            count = shape.count
            if shape.operation == "insert":
                shape.crits = [None] * count
            elif shape.key_cols is not None:
                shape.crits = list(zip(*[shape.data[i] for i in shape.key_pos], strict=True))
            else:
                rows = list(zip(*shape.data, strict=True)) if shape.data else [()] * count
                shape.crits = [self.candidate(shape, row) for row in rows]
        criteria = self.criteria or ()
        audit: dict[str, Any] = {}
        self.plan.defaults.apply_audit(self.schema, audit, insert=False)
        for shape in self.shapes.values():
            shape.changes = tuple(i for i, c in enumerate(shape.columns) if c not in criteria)
            shape.update_audit = {c: v for c, v in audit.items() if c not in shape.columns}
        wanted: dict[tuple, None] = {}
        for shape in self.shapes.values():
            wanted.update(dict.fromkeys(shape.crits))
        wanted.pop(None, None)  # type: ignore[call-overload]
        if not wanted or self.criteria is None:
            return {}, set()
        pks = self.pks
        columns = list(dict.fromkeys([*pks, *criteria]))
        records = list(self.plan.fetch_rows(self.schema, columns, criteria, wanted))
        keys = list(zip(*[map(itemgetter(columns.index(c)), records) for c in criteria], strict=True))
        stored = list(zip(*[map(itemgetter(columns.index(c)), records) for c in pks], strict=True))
        found = dict(zip(keys, stored, strict=True))
        if len(found) < len(records):  # a key matching several rows: the lowest primary key is updated
            for key, pk in zip(keys, stored, strict=True):
                found[key] = min(found[key], pk)
        return found, set(stored)

    def candidate(self, shape: _Shape, row: tuple) -> tuple | None:
        """Without `_key`: a non-zero @id, else the first key whose fields all have a value."""
        for cols, positions in shape.candidates:
            if all(row[i] not in _EMPTY for i in positions):
                self.use_criteria(cols)
                return tuple([row[i] for i in positions])
        return None

    def decide_distinct(self, segments: list[Segment], found: dict[tuple, tuple]) -> list[Statement] | None:
        """decide() and statements() for the usual batch, a segment at a time: when no item
        gives its primary key and no two items share a key value, each item is its own row (an
        update of the row its key found, an insert, or nothing for an `update` of a missing
        row), so the decisions need no per-row state. The same rows, ids and statements as the
        general decide(); None when the batch is not of this kind."""
        schema = self.schema
        keyed, distinct = 0, set()
        for shape in self.shapes.values():
            crits = shape.crits
            if shape.pk_pos is not None:
                return None
            if None in crits:
                if shape.operation == "update" or not schema.autopk:
                    return None  # "Unable to find key values": decide() raises it
                crits = [c for c in crits if c is not None]
            keyed += len(crits)
            distinct.update(crits)
        if len(distinct) != keyed or len(set(found.values())) != len(found):
            return None
        # (kind, shape id) -> [shape, chunks of item indexes, primary keys]; dicts keep the
        # order of each kind's first row, as statements() does
        groups: dict[tuple, list[Any]] = {}
        inserts: list[tuple[list[Any], int]] = []  # (group, rows) in document order: the ids' order
        for shape, start, stop in segments:
            pks = list(map(found.get, shape.crits[start:stop])) if found else [None] * (stop - start)
            missing = pks.count(None)
            if missing < len(pks) and shape.changes:
                indexes: Sequence[int] = range(start, stop)
                keys = pks
                if missing:
                    indexes = [i for i, pk in zip(indexes, pks, strict=True) if pk is not None]
                    keys = [pk for pk in pks if pk is not None]
                group = groups.setdefault(("update", id(shape)), [shape, [], []])
                group[1].append(indexes)
                group[2] += keys
            if missing and shape.operation != "update":
                if missing < len(pks):
                    indexes = [i for i, pk in zip(range(start, stop), pks, strict=True) if pk is None]
                else:
                    indexes = range(start, stop)
                group = groups.setdefault(("insert", id(shape)), [shape, [], []])
                group[1].append(indexes)
                inserts.append((group, len(indexes)))
        self.check_access(bool(groups))
        count = sum(rows for _, rows in inserts)
        self.plan.reserve_ids(schema, count)
        ids = iter(self.plan.new_pks(schema, count))
        for group, rows in inserts:
            group[2] += [(pk,) for pk in islice(ids, rows)]
        statements = self.statements({key: (shape, chunks[0] if len(chunks) == 1 else list(chain(*chunks)), keys)
                                      for key, (shape, chunks, keys) in groups.items()})
        self.check_unique_keys(statements, all_generated=True)
        return statements

    def decide(self, segments: list[Segment], found: dict[tuple, tuple],
               stored: set[tuple]) -> tuple[list[_Target], int]:
        """Writer.decide for every item in document order; also the number of ids the general
        path reserves for the batch (Writer.reconcile), so both draw the same ids."""
        schema, pks = self.schema, self.pks
        targets: list[_Target] = []
        by_key: dict[tuple, _Target] = {}  # rows registered under the criteria columns
        by_pk: dict[tuple, _Target] = {}  # rows of the batch with a known primary key
        reserve = 0
        rewrites_pk = self.criteria != tuple(pks)  # an update would also set the primary key
        for shape, start, stop in segments:
            operation = shape.operation
            pk_pos = shape.pk_pos
            crits = shape.crits
            for index in range(start, stop):
                crit = crits[index]
                if (operation != "update" and (crit is None or crit not in found)
                        and (pk_pos is None or shape.data[pk_pos[0]][index] in _EMPTY)):
                    reserve += 1
                if crit is None:
                    if operation == "update" or (not schema.autopk and operation != "insert"):
                        raise Unsupported  # "Unable to find key values"
                    targets.append(self.insert(shape, index, by_pk, stored))
                    continue
                target = by_key.get(crit)
                if target is not None:
                    self.touch(target, shape, index)
                    continue
                pk = found.get(crit)
                if pk is not None:
                    if pk in by_pk or (rewrites_pk and pk_pos is not None and shape.changes):
                        raise Unsupported  # a stored row the batch also inserts by its id, or an id rewrite
                    target = by_pk[pk] = by_key[crit] = _Target("update" if shape.changes else "exists", pk, shape,
                                                                 index)
                    targets.append(target)
                elif operation != "update":  # an update of a missing row is a no-op (docs/write.md)
                    target = by_key[crit] = self.insert(shape, index, by_pk, stored)
                    targets.append(target)
        return targets, reserve

    def insert(self, shape: _Shape, index: int, by_pk: dict[tuple, _Target], stored: set[tuple]) -> _Target:
        pk: tuple | None = None
        if shape.pk_pos is not None:
            pk = tuple([shape.data[i][index] for i in shape.pk_pos])
            if self.schema.autopk and pk[0] in _EMPTY:
                pk = None
        if pk is None and not self.schema.autopk:
            raise Unsupported  # "Unable to find key values"
        if pk is not None and (None in pk or "" in pk or pk in by_pk or pk in stored):
            raise Unsupported  # "already exists" (or a missing key part)
        target = _Target("insert", pk, shape, index)
        if pk is not None:
            by_pk[pk] = target
        return target

    def touch(self, target: _Target, shape: _Shape, index: int) -> None:
        """A second item on a row of the batch: Writer.update on the merged row."""
        if shape.pk_pos is not None and self.criteria != tuple(self.pks):
            raise Unsupported  # the update would also set the primary key
        if target.merged is None:
            target.merged = self.values(target)
        changes = {shape.columns[i]: shape.data[i][index] for i in shape.changes}
        if not changes:
            return
        was_new = target.state == "insert"
        target.merged.update(changes)
        if target.state == "exists":
            target.state = "update"
        if not was_new:
            target.merged.update(shape.update_audit)

    def values(self, target: _Target) -> dict[str, Any]:
        """The general path's row dict of a target touched once: an insert's values with their
        defaults, an update's changes with the audit columns."""
        shape, index = target.shape, target.index
        if target.state == "insert":
            values = dict(zip(shape.columns, shape.row(index), strict=True))
            if target.pk is None:
                values[self.pks[0]] = None  # drawn later
            self.plan.defaults.insert_defaults(self.schema, frozenset(values)).apply(self.plan.defaults, values)
            return values
        if target.state == "exists":
            return {}
        changes = {shape.columns[i]: shape.data[i][index] for i in shape.changes}
        changes.update(shape.update_audit)
        return changes

    # --- checks and statements --------------------------------------------------------------

    def check_access(self, writes: bool) -> None:
        """writeAccess and folder rights, when the batch `writes` something: when they could
        refuse, the general path decides."""
        from ..security.folders import folder_column, folder_rights

        if not writes:
            return
        if write_denied(self.schema, self.plan.ctx):
            raise Unsupported
        rights = folder_rights(self.plan.storage)
        if rights is not None and folder_column(self.schema) is not None and (
                rights.denied(self.plan.ctx, "write") or rights.denied(self.plan.ctx, "delete")):
            raise Unsupported

    def group(self, targets: list[_Target]) -> dict[tuple, tuple[_Shape, Sequence[int], list[tuple]] | Statement]:
        """The targets by statement: rows touched once by shape (column-major), merged rows by
        column set, as the general path groups them."""
        plan, schema = self.plan, self.schema
        # (kind, shape id) -> the shape, item indexes, primary keys; (kind, columns) -> a statement
        groups: dict[tuple, tuple[_Shape, list[int], list[tuple]] | Statement] = {}
        for target in targets:
            state, merged, pk = target.state, target.merged, target.pk
            if state == "exists":
                continue
            assert pk is not None
            if merged is None:
                group = groups.get((state, id(target.shape)))
                if group is None:
                    group = groups[(state, id(target.shape))] = (target.shape, [], [])
                assert isinstance(group, tuple)
                group[1].append(target.index)
                group[2].append(pk)
                continue
            cols = tuple(sorted(merged))
            statement = groups.get((state, cols))
            if statement is None:
                statement = groups[(state, cols)] = Statement(state, schema, plan.role(schema), plan.table(schema),
                                                              self.pks, columns=list(cols))
            assert isinstance(statement, Statement)
            values = [merged[c] for c in cols]
            statement.params.append((*values, *pk) if state == "update" else tuple(values))
        return groups  # type: ignore[return-value]

    def statements(self, groups: dict[tuple, tuple[_Shape, Sequence[int], list[tuple]] | Statement]
                   ) -> list[Statement]:
        """Updates, then inserts (write_exec.build_statements' order), each kind in the order of
        its first row."""
        plan, schema = self.plan, self.schema
        statements = []
        for kind in ("update", "insert"):
            for key, group in groups.items():
                if key[0] != kind:
                    continue
                if isinstance(group, tuple):
                    shape, indexes, keys = group
                    columns, data = (self.update_data if kind == "update" else self.insert_data)(shape, indexes, keys)
                    group = Statement(kind, schema, plan.role(schema), plan.table(schema), self.pks, columns=columns,
                                      data=data)
                statements.append(group)
        return statements

    def update_data(self, shape: _Shape, indexes: Sequence[int], keys: list[tuple]) -> tuple[list[str], list]:
        """Update columns (the item's columns but the criteria, then the audit ones) and their
        values, then the primary key, one sequence per position."""
        count = len(indexes)
        audit = shape.update_audit
        columns = [*[shape.columns[i] for i in shape.changes], *audit]
        data = [_gather(shape.data[i], indexes) for i in shape.changes]
        data += [Repeat(value, count) for value in audit.values()]
        data += [list(column) for column in zip(*keys, strict=True)]
        return columns, data

    def insert_data(self, shape: _Shape, indexes: Sequence[int], keys: list[tuple]) -> tuple[list[str], list]:
        """Insert columns and values: the items', the new ids, the defaults (constant ones
        repeated, per-row ones evaluated per row, empty link FKs replaced), as Defaults.apply."""
        plan = self.plan
        count = len(indexes)
        pks = self.pks
        defaults = plan.defaults.insert_defaults(self.schema, frozenset([*shape.columns, *pks]))
        columns = list(shape.columns)
        data: list[Any] = [_gather(column, indexes) for column in shape.data]
        key_columns = [list(column) for column in zip(*keys, strict=True)]
        if shape.pk_pos is None:
            columns[0:0] = pks
            data[0:0] = key_columns
        else:
            for position, column in zip(shape.pk_pos, key_columns, strict=True):
                data[position] = column
        for name, expr, attr in defaults.empty_fk:
            at = columns.index(name)
            column = list(data[at])
            for i, value in enumerate(column):
                if value in _EMPTY:
                    default = plan.defaults.db_value(expr, attr)
                    if default is not UNSET:
                        column[i] = default
            data[at] = column
        columns += list(defaults.fill)
        data += [Repeat(value, count) for value in defaults.fill.values()]
        for name, expr, attr in defaults.fresh:
            columns.append(name)
            data.append([plan.defaults.db_value(expr, attr) for _ in range(count)])
        return columns, data

    def check_unique_keys(self, statements: list[Statement], *, all_generated: bool) -> None:
        """write_plan.check_unique_keys on the inserted rows: any duplicate, in the batch or
        stored, sends the document to the general path, which reports it."""
        schema, pks = self.schema, self.pks
        inserts = [s for s in statements if s.kind == "insert"]
        if not inserts:
            return
        for key in schema.keys:
            if key.no_db_index:
                continue
            cols = []
            for xpath in key.fields:
                attr = schema.attribute(xpath)
                if attr is None or attr.sqlname is None:
                    raise Unsupported
                cols.append(attr.sqlname)
            if schema.autopk and cols == pks and all_generated:
                continue
            seen: set[tuple] = set()
            for stmt in inserts:
                data = stmt.column_data()
                count = stmt.count()
                values = zip(*[data[stmt.columns.index(c)] if c in stmt.columns else [None] * count for c in cols],
                             strict=True)
                for value in values:
                    if None in value:
                        continue  # NULLs never collide in a unique index
                    if value in seen:
                        raise Unsupported
                    seen.add(value)
            if seen and next(self.plan.fetch_rows(schema, list(dict.fromkeys([*pks, *cols])), tuple(cols), seen),
                             None) is not None:
                raise Unsupported
