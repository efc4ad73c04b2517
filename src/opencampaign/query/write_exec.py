"""Execution of a write plan: statements grouped per table and column set, one transaction per
database, local-first commit with compensation when the cloud commit fails, and database errors
mapped to Campaign's messages (docs/write.md "Transactions")."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from ..schema.model import XML_DATA_COLUMN, Schema
from ..storage.placement import CLOUD, LOCAL
from ..storage.replication import replicate
from ..storage.storage import Storage
from . import xmldata
from .errors import database_error
from .write_fields import CHUNK, WriteFailure, pk_columns
from .write_plan import Plan, Reset, check_write_access, duplicate_key

# --- statements and execution ---------------------------------------------------------------


@dataclass(eq=False)
class Statement:
    kind: str  # delete | reset | update | insert
    schema: Schema
    role: str
    table: sa.Table
    pks: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reset: Reset | None = None


def build_statements(plan: Plan) -> list[Statement]:
    """Deletes first (a key freed by a delete may be inserted again), then FK resets, updates,
    and inserts grouped by column set so each group is one executemany."""
    deletes: dict[str, Statement] = {}
    updates: dict[tuple[str, tuple[str, ...]], Statement] = {}
    inserts: dict[tuple[str, tuple[str, ...]], Statement] = {}
    for row in plan.order:
        schema, state = row.schema, row.state
        if row.memo is not None and state in ("insert", "update") and row.memo_loaded:
            row.changes[XML_DATA_COLUMN] = xmldata.write_memo(row.memo)
        pks = pk_columns(schema)
        if state == "delete":
            statement = deletes.get(schema.id)
            if statement is None:
                statement = deletes[schema.id] = _statement(plan, "delete", schema)
            statement.rows.append(dict(zip(pks, row.pk, strict=True)))
        elif state == "update" and row.changes:
            cols = tuple(sorted(row.changes))
            statement = updates.get((schema.id, cols))
            if statement is None:
                statement = updates[(schema.id, cols)] = _statement(plan, "update", schema)
            values = {"k_" + c: v for c, v in zip(pks, row.pk, strict=True)}
            changes = row.changes
            for c in cols:
                values["v_" + c] = changes[c]
            statement.rows.append(values)
        elif state == "insert":
            values = dict(zip(pks, row.pk, strict=True))
            values.update(row.changes)
            cols = tuple(sorted(values))
            statement = inserts.get((schema.id, cols))
            if statement is None:
                statement = inserts[(schema.id, cols)] = _statement(plan, "insert", schema)
            statement.rows.append(values)
    resets = []
    for reset in plan.resets:
        statement = _statement(plan, "reset", reset.schema)
        statement.reset = reset
        resets.append(statement)
    return [*deletes.values(), *resets, *updates.values(), *inserts.values()]


def _statement(plan: Plan, kind: str, schema: Schema) -> Statement:
    return Statement(kind, schema, plan.role(schema), plan.table(schema), pk_columns(schema))


def _pk_condition(table: sa.Table, pks: list[str], keys: list[tuple]) -> sa.ColumnElement[bool]:
    if len(pks) == 1:
        return table.c[pks[0]].in_([k[0] for k in keys])
    return sa.tuple_(*[table.c[c] for c in pks]).in_(keys)


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def run_statement(conn: sa.Connection, statement: Statement) -> None:
    table, pks = statement.table, statement.pks
    duck = conn.dialect.name == "duckdb"
    if statement.kind == "delete":
        keys = [tuple(r[c] for c in pks) for r in statement.rows]
        for start in range(0, len(keys), CHUNK):
            conn.execute(sa.delete(table).where(_pk_condition(table, pks, keys[start:start + CHUNK])))
    elif statement.kind == "reset":
        reset = statement.reset
        assert reset is not None
        for start in range(0, len(reset.values), CHUNK):
            chunk = reset.values[start:start + CHUNK]
            conn.execute(sa.update(table).where(_pk_condition(table, reset.match, chunk)).values(reset.empty))
    elif statement.kind == "update":
        cols = [k[2:] for k in statement.rows[0] if k.startswith("v_")]
        if duck and len(statement.rows) > 1:
            _duck_update(conn, table, pks, cols, statement.rows)
            return
        if conn.dialect.paramstyle == "qmark" and len(statement.rows) > 1:
            quote = conn.dialect.identifier_preparer.quote
            sets = ", ".join(f"{quote(table.c[c].name)} = ?" for c in cols)
            where = " AND ".join(f"{quote(table.c[c].name)} = ?" for c in pks)
            keys = ["v_" + c for c in cols] + ["k_" + c for c in pks]
            _driver_many(conn, f"UPDATE {quote(table.name)} SET {sets} WHERE {where}", table,
                         [*cols, *pks], keys, statement.rows)
            return
        query = sa.update(table).where(sa.and_(*[table.c[c] == sa.bindparam("k_" + c) for c in pks]))
        conn.execute(query.values({c: sa.bindparam("v_" + c) for c in cols}), statement.rows)
    else:
        if duck and len(statement.rows) > 1:
            _duck_insert(conn, table, statement.rows)
            return
        if conn.dialect.paramstyle == "qmark" and len(statement.rows) > 1:
            quote = conn.dialect.identifier_preparer.quote
            cols = list(statement.rows[0])
            sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(table.c[c].name) for c in cols)}) "
                   f"VALUES ({', '.join('?' for _ in cols)})")
            _driver_many(conn, sql, table, cols, cols, statement.rows)
            return
        conn.execute(sa.insert(table), statement.rows)


def _driver_many(conn: sa.Connection, sql: str, table: sa.Table, columns: list[str], keys: list[str],
                 rows: list[dict[str, Any]]) -> None:
    """One driver executemany of a pre-built positional statement (SQLite): the rows go as tuples,
    through the bind processors of their columns resolved once, instead of SQLAlchemy's per-row
    parameter processing (a third of the write time)."""
    dialect = conn.dialect
    processors = [(i, p) for i, c in enumerate(columns)
                  if (p := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None]
    get = itemgetter(*keys)
    params = [(get(r),) for r in rows] if len(keys) == 1 else [get(r) for r in rows]
    if processors:
        memos: list[dict[Any, Any]] = [{} for _ in processors]  # audit dates and the like repeat
        converted = []
        for values in params:
            values = list(values)
            for (i, process), memo in zip(processors, memos, strict=True):
                value = values[i]
                try:
                    values[i] = memo[value]
                except KeyError:
                    values[i] = memo[value] = process(value)
                except TypeError:  # unhashable
                    values[i] = process(value)
            converted.append(tuple(values))
        params = converted
    conn.exec_driver_sql(sql, params)


# DuckDB runs executemany one row at a time (a few thousand rows/s); a single statement reading
# column arrays through UNNEST moves the same rows 50-100x faster.
def _duck_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    names = ", ".join(_quote(conn, table.c[c].name) for c in cols)
    unnest = ", ".join(f"UNNEST(?) AS c{i}" for i in range(len(cols)))
    picks = ", ".join(f"c{i}" for i in range(len(cols)))
    sql = f"INSERT INTO {_quote(conn, table.name)} ({names}) SELECT {picks} FROM (SELECT {unnest})"
    for start in range(0, len(rows), 20 * CHUNK):
        chunk = rows[start:start + 20 * CHUNK]
        conn.exec_driver_sql(sql, tuple([r[c] for r in chunk] for c in cols))


def _duck_update(conn: sa.Connection, table: sa.Table, pks: list[str], cols: list[str],
                 rows: list[dict[str, Any]]) -> None:
    keys = ["k_" + c for c in pks] + ["v_" + c for c in cols]
    unnest = ", ".join(f"UNNEST(?) AS p{i}" for i in range(len(keys)))
    sets = ", ".join(f"{_quote(conn, table.c[c].name)} = v.p{len(pks) + i}" for i, c in enumerate(cols))
    where = " AND ".join(f"{_quote(conn, table.name)}.{_quote(conn, table.c[c].name)} = v.p{i}"
                         for i, c in enumerate(pks))
    sql = f"UPDATE {_quote(conn, table.name)} SET {sets} FROM (SELECT {unnest}) AS v WHERE {where}"
    for start in range(0, len(rows), 20 * CHUNK):
        chunk = rows[start:start + 20 * CHUNK]
        conn.exec_driver_sql(sql, tuple([r[k] for r in chunk] for k in keys))


@dataclass(eq=False)
class _Undo:
    """What restores the first-committed database if a later commit fails."""

    table: sa.Table
    pks: list[str]
    inserted: list[tuple] = field(default_factory=list)
    before: list[dict[str, Any]] = field(default_factory=list)


def _capture(conn: sa.Connection, statement: Statement) -> _Undo:
    table, pks = statement.table, statement.pks
    undo = _Undo(table, pks)
    if statement.kind == "insert":
        undo.inserted = [tuple(r[c] for c in pks) for r in statement.rows]
        return undo
    if statement.kind == "reset":
        assert statement.reset is not None
        match, values = statement.reset.match, statement.reset.values
    elif statement.kind == "update":
        match, values = pks, [tuple(r["k_" + c] for c in pks) for r in statement.rows]
    else:
        match, values = pks, [tuple(r[c] for c in pks) for r in statement.rows]
    for start in range(0, len(values), CHUNK):
        columns = list(table.columns)
        query = sa.select(*columns).where(_pk_condition(table, match, values[start:start + CHUNK]))
        undo.before.extend(dict(zip([c.key for c in columns], r, strict=True)) for r in conn.execute(query))
    return undo


def _compensate(storage: Storage, role: str, undos: list[_Undo]) -> None:
    with storage.write(role) as conn:
        for undo in reversed(undos):
            table = undo.table
            if undo.inserted:
                conn.execute(sa.delete(table).where(_pk_condition(table, undo.pks, undo.inserted)))
            if undo.before:
                keys = [tuple(r[c] for c in undo.pks) for r in undo.before]
                conn.execute(sa.delete(table).where(_pk_condition(table, undo.pks, keys)))
                conn.execute(sa.insert(table), undo.before)


def execute(plan: Plan) -> set[str]:
    """Run the plan: one transaction per database; when two databases are written, the local
    one commits first and is restored from before-images if the cloud commit then fails.
    Returns the ids of the schemas written."""
    check_write_access(plan)
    statements = build_statements(plan)
    plan.close()  # release read snapshots before taking write locks
    if not statements:
        return set()
    roles = [r for r in (LOCAL, CLOUD) if any(s.role == r for s in statements)]
    undos: list[_Undo] = []
    opened: list[tuple[str, AbstractContextManager[sa.Connection]]] = []
    try:
        for role in roles:
            manager = plan.storage.write(role)
            conn = manager.__enter__()
            opened.append((role, manager))
            for statement in (s for s in statements if s.role == role):
                if len(roles) > 1 and role == roles[0]:
                    undos.append(_capture(conn, statement))
                try:
                    run_statement(conn, statement)
                except sa.exc.DBAPIError as exc:
                    raise map_database_error(exc, statement, conn.dialect.name, conn) from exc
    except BaseException as exc:
        _abort([m for _, m in reversed(opened)], exc)
        raise
    committed: list[str] = []
    for position, (role, manager) in enumerate(opened):
        try:
            manager.__exit__(None, None, None)
            committed.append(role)
        except Exception as exc:
            _abort([m for _, m in opened[position + 1:]], exc)
            cause = database_error(exc, plan.storage.dialect(role)).headline
            if committed:
                try:
                    _compensate(plan.storage, committed[0], undos)
                except Exception as undo_exc:  # noqa: BLE001
                    raise WriteFailure(cause, "The changes already committed in the local database could not be "
                                              f"undone: {database_error(undo_exc, plan.storage.dialect(committed[0])).headline}",
                                       client=False) from exc
            raise WriteFailure(cause, f"Commit failed in the {role} database; nothing was written", client=False) from exc
    written = {s.schema.id for s in statements}
    local_written = [sid for sid in written if plan.storage.placement.is_replicated(sid)]
    if local_written:
        replicate(plan.storage, sorted(local_written))
    return written


def _abort(managers: list[AbstractContextManager[sa.Connection]], exc: BaseException) -> None:
    """Roll back transactions still open after a failure (their own errors add nothing)."""
    for manager in managers:
        with suppress(Exception):
            manager.__exit__(type(exc), exc, exc.__traceback__)


_PG_KEY = re.compile(r"Key \((.*?)\)=\((.*)\) already exists")
_DUCK_KEY = re.compile(r'Duplicate key "(.*?)" violates')


_SQLITE_KEY = re.compile(r"UNIQUE constraint failed: (.*)")


def map_database_error(exc: sa.exc.DBAPIError, statement: Statement, dialect: str,
                       conn: sa.Connection | None = None) -> WriteFailure:
    """A driver error as Campaign words it; a unique violation names the duplicated key."""
    engine_line = database_error(exc, dialect).headline
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = text.lower()
    if isinstance(exc, sa.exc.IntegrityError) and ("unique" in lowered or "duplicate" in lowered):
        values: tuple | None = None
        if (m := _PG_KEY.search(text)) is not None:
            values = (m.group(2),)
        elif (m := _DUCK_KEY.search(text)) is not None:
            values = (",".join(part.split(": ", 1)[-1] for part in m.group(1).split(", ")),)
        elif (m := _SQLITE_KEY.search(text)) is not None and conn is not None:
            values = _find_duplicate(conn, statement, [c.strip().rsplit(".", 1)[-1] for c in m.group(1).split(",")])
        return duplicate_key(statement.schema, values, engine_line)
    return WriteFailure(engine_line, client=False)


def _find_duplicate(conn: sa.Connection, statement: Statement, names: list[str]) -> tuple | None:
    """SQLite names the columns of a violated unique index, not the value: find the first row of
    the failed insert whose key is repeated in the batch or already stored."""
    by_name = {c.name.lower(): c.key for c in statement.table.columns}
    cols = [by_name.get(n.lower()) for n in names]
    if statement.kind != "insert" or None in cols or not statement.rows:
        return None
    keys = [tuple(r.get(c) for c in cols) for r in statement.rows]
    seen: set[tuple] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    table = statement.table
    # A fresh connection: inside the failed transaction the batch's own earlier rows are visible.
    with conn.engine.connect() as reader:
        for start in range(0, len(keys), CHUNK):
            found = reader.execute(sa.select(*[table.c[c] for c in cols]).where(
                _pk_condition(table, cols, keys[start:start + CHUNK])).limit(1)).first()
            if found is not None:
                return tuple(found)
    return None

