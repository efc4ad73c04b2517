"""The write plan (docs/write.md "Transactions"): the rows a Write, WriteCollection or
DeleteCollection touches, planned with plain reads before anything is written; delete
cascades, unique-key checks and the writeAccess filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..schema.model import XML_DATA_COLUMN, Element, Schema
from ..schema.registry import SchemaRegistry
from ..storage.engines import read_connection
from ..storage.placement import LOCAL
from ..storage.storage import Storage
from . import xmldata
from .errors import echo
from .write_fields import (
    _EMPTY,
    CHUNK,
    Defaults,
    WriteFailure,
    collection_links,
    column_attr,
    compiled_node,
    empty_value,
    now_ms,
    owned_links,
    pk_columns,
)

# --- the plan -------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Row:
    """One physical row touched by a write. `pk` is its identity in the database (or its new
    primary key); `known` the column values known so far; `changes` what will be written."""

    schema: Schema
    pk: tuple
    state: str  # insert | update | delete | exists
    known: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    memo: etree._Element | None = None
    memo_loaded: bool = False
    generated_pk: bool = False

    def set(self, values: dict[str, Any]) -> None:
        self.known.update(values)
        self.changes.update(values)
        if self.state == "exists" and values:
            self.state = "update"


@dataclass(eq=False)
class Reset:
    """Foreign keys set back to empty (`normal` integrity) when their target is deleted."""

    schema: Schema
    match: list[str]  # FK columns
    values: list[tuple]  # deleted targets' key values
    empty: dict[str, Any]


@contextmanager
def _driver_errors(conn: sa.Connection, sql: str) -> Iterator[None]:
    """Errors of statements run on the driver's cursor, raised as SQLAlchemy raises them (the
    callers map DBAPIError to Campaign's messages)."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise sa.exc.DBAPIError.instance(sql, None, exc, error, dialect=conn.dialect) from exc


class Plan:
    def __init__(self, storage: Storage, registry: SchemaRegistry, ctx: CallContext):
        self.storage = storage
        self.registry = registry
        self.ctx = ctx
        self.now = now_ms()
        self.rows: dict[tuple[str, tuple], Row] = {}
        self.order: list[Row] = []
        self.index: dict[tuple[str, tuple[str, ...]], dict[tuple, Row]] = {}
        self.resets: list[Reset] = []
        self.defaults = Defaults(self)
        self._stack = ExitStack()
        self._readers: dict[str, sa.Connection] = {}
        self._ids: dict[str, list[int]] = {}
        self._tables: dict[str, sa.Table] = {}

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._readers.clear()
        self._stack.close()

    # databases
    def role(self, schema: Schema) -> str:
        return LOCAL if self.storage.single else self.storage.home(schema.id)

    def table(self, schema: Schema) -> sa.Table:
        table = self._tables.get(schema.id)
        if table is None:
            if not schema.has_table:
                raise WriteFailure(f"Schema '{schema.full_label}' has no table")
            table = self._tables[schema.id] = self.storage.table(schema.id, self.role(schema))
        return table

    def reader(self, schema: Schema) -> sa.Connection:
        role = self.role(schema)
        if role not in self._readers:
            # Lookups before the write transaction: single statements, so no read transaction
            # (BEGIN/ROLLBACK cost more than a SQLite key lookup).
            self._readers[role] = self._stack.enter_context(read_connection(self.storage.engine(role)))
        return self._readers[role]

    def new_pk(self, schema: Schema) -> Any:
        if schema.autouuid:
            return str(uuid.uuid4())
        buffer = self._ids.setdefault(schema.pk_sequence or "XtkNewId", [])
        if not buffer:
            self.reserve_ids(schema, 1)
        return buffer.pop()

    def new_pks(self, schema: Schema, count: int) -> list[Any]:
        """`count` new_pk() calls at once, the same ids in the same order."""
        if schema.autouuid or count <= 0:
            return [self.new_pk(schema) for _ in range(count)]
        buffer = self._ids.setdefault(schema.pk_sequence or "XtkNewId", [])
        if len(buffer) < count:
            return [self.new_pk(schema) for _ in range(count)]
        taken = buffer[-count:]
        del buffer[-count:]
        taken.reverse()
        return taken

    def reserve_ids(self, schema: Schema, count: int) -> None:
        """Draw the ids a batch is about to need in one allocator call (one sequence commit)."""
        if not schema.autopk or schema.autouuid:
            return
        name = schema.pk_sequence or "XtkNewId"
        buffer = self._ids.setdefault(name, [])
        if count > len(buffer):
            buffer[:0] = reversed(self.storage.sequences.next_ids(name, count - len(buffer)))

    # rows
    def get(self, schema: Schema, pk: tuple) -> Row | None:
        return self.rows.get((schema.id, pk))

    def add(self, row: Row) -> Row:
        existing = self.rows.get((row.schema.id, row.pk))
        if existing is not None:
            return existing
        self.rows[(row.schema.id, row.pk)] = row
        self.order.append(row)
        return row

    def register(self, row: Row, cols: tuple[str, ...]) -> None:
        values = tuple(row.known.get(c) for c in cols)
        self.index.setdefault((row.schema.id, cols), {})[values] = row

    def indexed(self, schema: Schema, cols: tuple[str, ...], values: tuple) -> Row | None:
        row = self.index.get((schema.id, cols), {}).get(values)
        if row is None or row.state == "delete":
            return None
        if tuple(row.known.get(c) for c in cols) != values:
            return None  # the row's key changed since it was indexed
        return row

    def fetch(self, schema: Schema, cols: Iterable[str], match: tuple[str, ...],
              values: Iterable[tuple]) -> Iterator[dict[str, Any]]:
        """Rows whose `match` columns equal one of `values` (chunked IN queries), id-0 row excluded."""
        wanted = list(dict.fromkeys([*cols, *match]))
        for record in self.fetch_rows(schema, wanted, match, values):
            yield dict(zip(wanted, record, strict=True))

    def fetch_rows(self, schema: Schema, wanted: list[str], match: tuple[str, ...],
                   values: Iterable[tuple]) -> Iterator[tuple]:
        """fetch() as tuples of the `wanted` columns (which must include `match`), a chunk at a time."""
        table = self.table(schema)
        distinct = list(dict.fromkeys(values))
        if len(distinct) > 1 and self.storage.dialect(self.role(schema)) == "duckdb" and _uniform(distinct, len(match)):
            yield from self._duck_fetch(schema, table, wanted, match, distinct)
            return
        zero = self._zero_row_filter(schema, table)
        conn = self.reader(schema)
        if len(match) == 1 and conn.dialect.name == "sqlite" and _plain(conn.dialect, table, wanted):
            yield from self._driver_fetch(schema, conn, table, wanted, match[0], [v[0] for v in distinct])
            return
        if len(match) == 1:
            # One statement for every chunk: an expanding parameter, so SQLAlchemy compiles it once
            # instead of coercing a thousand literals per chunk.
            query = sa.select(*[table.c[c] for c in wanted]).where(
                table.c[match[0]].in_(sa.bindparam("keys", expanding=True)))
            if zero is not None:
                query = query.where(zero)
            keys = [v[0] for v in distinct]
            for start in range(0, len(keys), CHUNK):
                yield from self.reader(schema).execute(query, {"keys": keys[start:start + CHUNK]}).all()
            return
        for start in range(0, len(distinct), CHUNK):
            chunk = distinct[start:start + CHUNK]
            query = sa.select(*[table.c[c] for c in wanted]).where(sa.tuple_(*[table.c[c] for c in match]).in_(chunk))
            if zero is not None:
                query = query.where(zero)
            yield from self.reader(schema).execute(query).all()  # fetched at once: far cheaper than row by row

    def first_value(self, schema: Schema, column: str, where: str, value: Any) -> Any:
        """`SELECT column FROM table WHERE where = value LIMIT 1` on the reader of `schema` (None
        when no row): on SQLite and DuckDB run by the driver's cursor, several times cheaper than
        SQLAlchemy for one key lookup."""
        table = self.table(schema)
        conn = self.reader(schema)
        if conn.dialect.name not in ("sqlite", "duckdb"):
            return conn.execute(sa.select(table.c[column]).where(table.c[where] == value).limit(1)).scalar()
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"SELECT {quote(table.c[column].name)} FROM {quote(table.name)} "
               f"WHERE {quote(table.c[where].name)} = ? LIMIT 1")
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with _driver_errors(conn, sql):
                row = cursor.execute(sql, (value,)).fetchone()
        finally:
            cursor.close()
        return row[0] if row else None

    @staticmethod
    def _driver_fetch(schema: Schema, conn: sa.Connection, table: sa.Table, wanted: list[str], match: str,
                      keys: list[Any]) -> Iterator[tuple]:
        """fetch() on SQLite: the IN query run by the driver's cursor (identifiers quoted, keys
        bound), half the cost of SQLAlchemy rendering an expanding parameter and rows per chunk."""
        quote = conn.dialect.identifier_preparer.quote
        select = f"SELECT {', '.join(quote(table.c[c].name) for c in wanted)} FROM {quote(table.name)} WHERE "
        zero = schema.attribute("@id") if schema.autopk and not schema.autouuid else None
        if zero is not None and zero.sqlname:
            select += f"{quote(table.c[zero.sqlname].name)} <> 0 AND "
        select += f"{quote(table.c[match].name)} IN "
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(keys), CHUNK):
                chunk = keys[start:start + CHUNK]
                with _driver_errors(conn, select):
                    rows = cursor.execute(select + f"({', '.join('?' * len(chunk))})", chunk).fetchall()
                yield from rows
        finally:
            cursor.close()

    def _duck_fetch(self, schema: Schema, table: sa.Table, wanted: list[str], match: tuple[str, ...],
                    distinct: list[tuple]) -> Iterator[tuple]:
        """fetch() on DuckDB: a join with the key arrays (one UNNEST per column) instead of IN
        lists, which DuckDB plans slowly (about 20 us per key against 2)."""
        conn = self.reader(schema)
        quote = conn.dialect.identifier_preparer.quote
        name = quote(table.name)
        keys = ", ".join(f"UNNEST(?) AS k{i}" for i in range(len(match)))
        on = " AND ".join(f"{name}.{quote(table.c[c].name)} = v.k{i}" for i, c in enumerate(match))
        sql = f"SELECT {', '.join(f'{name}.{quote(table.c[c].name)}' for c in wanted)} FROM {name} " \
              f"JOIN (SELECT {keys}) AS v ON {on}"
        zero = schema.attribute("@id") if schema.autopk and not schema.autouuid else None
        if zero is not None and zero.sqlname:
            sql += f" WHERE {name}.{quote(table.c[zero.sqlname].name)} <> 0"
        # The driver's cursor: SQLAlchemy's result rows cost a third of the lookup.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for start in range(0, len(distinct), 20 * CHUNK):
            chunk = distinct[start:start + 20 * CHUNK]
            with _driver_errors(conn, sql):
                cursor.execute(sql, tuple(list(column) for column in zip(*chunk, strict=True)))
                rows = cursor.fetchall()
            yield from rows

    @staticmethod
    def _zero_row_filter(schema: Schema, table: sa.Table) -> sa.ColumnElement[bool] | None:
        if not schema.autopk or schema.autouuid:
            return None
        pk = schema.attribute("@id")
        return table.c[pk.sqlname] != 0 if pk is not None and pk.sqlname else None

    def load_memo(self, row: Row) -> None:
        """The stored mData of an existing row, read once before the first XML merge."""
        if row.memo_loaded:
            return
        row.memo_loaded = True
        if row.state == "insert":
            return
        cols = tuple(pk_columns(row.schema))
        for record in self.fetch(row.schema, [XML_DATA_COLUMN], cols, [row.pk]):
            row.memo = xmldata.read_memo(record.get(XML_DATA_COLUMN))


def _plain(dialect: sa.Dialect, table: sa.Table, columns: list[str]) -> bool:
    """Whether the driver reads and takes these columns' values as they are (no SQLAlchemy
    processing: integers, strings), so that a statement can skip SQLAlchemy's."""
    for c in columns:
        impl = table.c[c].type.dialect_impl(dialect)
        if impl.bind_processor(dialect) is not None or impl.result_processor(dialect, None) is not None:
            return False
    return True


def _uniform(values: list[tuple], width: int) -> bool:
    """Whether each key column holds one plain Python type (NULLs aside), so that DuckDB can take
    it as one typed array; anything else goes through the generic IN query."""
    for i in range(width):
        kinds = {type(v[i]) for v in values} - {type(None)}
        if len(kinds) != 1 or not kinds <= {str, int, float, date, datetime}:
            return False
    return True


# --- cascades -------------------------------------------------------------------------------


def expand_deletes(plan: Plan) -> None:
    """Apply link integrity to every deleted row: own/owncopy delete the linked rows (recursively),
    normal resets their foreign key, define refuses the delete while linked rows remain."""
    done: set[int] = set()
    defines: list[tuple[Schema, Element, Schema, list[str], list[tuple]]] = []
    while True:
        pending = [r for r in plan.order if r.state == "delete" and id(r) not in done]
        if not pending:
            break
        by_schema: dict[str, list[Row]] = {}
        for row in pending:
            done.add(id(row))
            by_schema.setdefault(row.schema.id, []).append(row)
        for rows in by_schema.values():
            schema = rows[0].schema
            _cascade(plan, schema, rows, defines)
    for schema, link, child, match, values in defines:
        remaining = [r for r in plan.fetch(child, pk_columns(child), tuple(match), values)
                     if (g := plan.get(child, tuple(r[c] for c in pk_columns(child)))) is None or g.state != "delete"]
        if remaining:
            raise WriteFailure(f"Unable to delete: {len(remaining)} record(s) of '{child.full_label}' still reference "
                               f"this {schema.label_singular.lower()} (link '{link.name}', integrity 'define')")


def _cascade(plan: Plan, schema: Schema, rows: list[Row], defines: list) -> None:
    pks = pk_columns(schema)
    needed: set[str] = set()
    links = [link for link in collection_links(schema) if link.integrity in ("own", "owncopy", "normal", "define")]
    owned = owned_links(schema)
    for link in [*links, *owned]:
        for join in link.joins:
            needed.add(column_attr(schema, join.src).sqlname or "")
    missing = [c for c in needed if c not in pks and any(c not in r.known for r in rows)]
    if missing:
        fetched = {tuple(r[c] for c in pks): r for r in plan.fetch(schema, missing, tuple(pks), [r.pk for r in rows])}
        for row in rows:
            row.known.update({k: v for k, v in fetched.get(row.pk, {}).items() if k not in row.known})
    for row in rows:
        row.known.update(dict(zip(pks, row.pk, strict=True)))
    for link in links:
        child = plan.registry.get(link.target or "")
        if not child.has_table:
            continue
        src = [column_attr(schema, j.src).sqlname or "" for j in link.joins]
        dst_attrs = [column_attr(child, j.dst) for j in link.joins]
        dst = [a.sqlname or "" for a in dst_attrs]
        values = [v for v in {tuple(r.known.get(c) for c in src) for r in rows} if not all(x in _EMPTY for x in v)]
        if not values:
            continue
        if link.integrity == "normal":
            plan.resets.append(Reset(child, dst, values, {a.sqlname or "": empty_value(a) for a in dst_attrs}))
        elif link.integrity == "define":
            defines.append((schema, link, child, dst, values))
        else:
            child_pks = pk_columns(child)
            for record in plan.fetch(child, child_pks, tuple(dst), values):
                key = tuple(record[c] for c in child_pks)
                row = plan.add(Row(child, key, "delete", known=dict(record)))
                row.state = "delete"
    for link in owned:
        target = plan.registry.get(link.target or "")
        src = [column_attr(schema, j.src).sqlname or "" for j in link.joins]
        dst = tuple(column_attr(target, j.dst).sqlname or "" for j in link.joins)
        values = [v for v in {tuple(r.known.get(c) for c in src) for r in rows} if not all(x in _EMPTY for x in v)]
        target_pks = pk_columns(target)
        for record in plan.fetch(target, target_pks, dst, values):
            row = plan.add(Row(target, tuple(record[c] for c in target_pks), "delete", known=dict(record)))
            row.state = "delete"


# --- unique keys ----------------------------------------------------------------------------


def check_unique_keys(plan: Plan) -> None:
    """Refuse inserts whose unique key already exists (in the database or earlier in the plan)
    before any statement runs, with Campaign's message."""
    inserts: dict[str, list[Row]] = {}
    for row in plan.order:
        if row.state == "insert":
            inserts.setdefault(row.schema.id, []).append(row)
    for rows in inserts.values():
        schema = rows[0].schema
        pks = pk_columns(schema)
        for key in schema.keys:
            if key.no_db_index:
                continue
            cols = tuple(column_attr(schema, f).sqlname or "" for f in key.fields)
            if schema.autopk and list(cols) == pks and all(r.generated_pk for r in rows):
                continue
            seen: dict[tuple, Row] = {}
            for row in rows:
                values = tuple(row.known.get(c) for c in cols)
                if any(v is None for v in values):
                    continue  # NULLs never collide in a unique index
                if values in seen:
                    raise duplicate_key(schema, values)
                seen[values] = row
            for record in plan.fetch(schema, pks, cols, list(seen)):
                existing = plan.get(schema, tuple(record[c] for c in pks))
                if existing is not None and (existing.state == "delete"
                                             or tuple(existing.known.get(c, record[c]) for c in cols)
                                             != tuple(record[c] for c in cols)):
                    continue  # deleted or re-keyed by this same write
                raise duplicate_key(schema, tuple(record[c] for c in cols))


def duplicate_key(schema: Schema, values: tuple | None, engine_line: str = "") -> WriteFailure:
    shown = "" if values is None else " '" + echo(",".join("" if v is None else str(v) for v in values)) + "'"
    return WriteFailure(f"A '{schema.label_singular}' with the same key{shown} already exists.", engine_line)


# --- access: sysFilter writeAccess ---------------------------------------------------------


def write_denied(schema: Schema, ctx: CallContext) -> bool:
    """Whether the schema's `writeAccess` filter forbids this caller any write: a condition whose
    `enabledIf` holds for the caller and whose `expr` is false for them (`expr="FALSE"`, as on
    xtk:operator). Row-dependent filters are not enforced here (docs/write.md)."""
    from ..security.conditions import ConditionError, is_true

    main = compiled_node(schema, "")
    for condition in main.iterfind("sysFilter[@name='writeAccess']/condition") if main is not None else ():
        try:
            if not is_true(condition.get("enabledIf"), ctx):
                continue
            if not is_true(condition.get("expr") or "TRUE", ctx):
                return True
        except ConditionError:  # depends on the row: not decidable before reading it
            continue
        except Exception:  # noqa: BLE001 - an unparsable filter denies rather than opens
            return True
    return False


def check_write_access(plan: Plan) -> None:
    for schema in {row.schema.id: row.schema for row in plan.order if row.state in ("insert", "update", "delete")}.values():
        if write_denied(schema, plan.ctx):
            raise WriteFailure(f"You are not allowed to modify documents of type '{schema.full_label}' "
                               f"(access filter 'writeAccess').")
    check_folder_access(plan)


def check_folder_access(plan: Plan) -> None:
    """Folder rights: writing a record needs the write right on its folder (before and after the
    change), deleting it the delete right."""
    from ..security.folders import folder_column, folder_rights

    rights = folder_rights(plan.storage)
    if rights is None:
        return
    denied = {action: rights.denied(plan.ctx, action) for action in ("write", "delete")}
    if not denied["write"] and not denied["delete"]:
        return
    by_schema: dict[str, list[Row]] = {}
    for row in plan.order:
        if row.state in ("insert", "update", "delete") and folder_column(row.schema) is not None:
            by_schema.setdefault(row.schema.id, []).append(row)
    for rows in by_schema.values():
        schema = rows[0].schema
        column = folder_column(schema)
        assert column is not None
        current = _current_folders(plan, schema, [r for r in rows if r.state != "insert" and not r.generated_pk])
        for row in rows:
            action = "delete" if row.state == "delete" else "write"
            folders = {current.get(row.pk)} if row.state != "insert" else set()
            if row.state != "delete" and column in row.changes:
                folders.add(row.changes[column])
            blocked = sorted(f for f in folders if f in denied[action])
            if blocked:
                raise WriteFailure(f"You are not allowed to {action} records of folder {blocked[0]} "
                                   f"('{schema.full_label}'): folder rights.")


def _current_folders(plan: Plan, schema: Schema, rows: list[Row]) -> dict[tuple, Any]:
    """The folder each existing row is in now, read in one query per schema."""
    from ..security.folders import folder_column

    key = schema.primary_key
    column = folder_column(schema)
    if not rows or key is None or column is None:
        return {}
    table = plan.storage.table(schema.id)
    key_columns = [table.c[schema.attribute(f).sqlname] for f in key.fields]  # type: ignore[union-attr]
    pks = [r.pk for r in rows if len(r.pk) == len(key_columns)]
    if not pks:
        return {}
    condition = (key_columns[0].in_([p[0] for p in pks]) if len(key_columns) == 1
                 else sa.tuple_(*key_columns).in_(pks))
    with plan.storage.engine_for(schema.id).connect() as conn:
        return {tuple(r[:-1]): r[-1] for r in conn.execute(sa.select(*key_columns, table.c[column]).where(condition))}

