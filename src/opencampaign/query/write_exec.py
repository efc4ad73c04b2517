"""Execution of a write plan: statements grouped per table and column set, one transaction per
database, local-first commit with compensation when the cloud commit fails, and database errors
mapped to Campaign's messages (docs/write.md "Transactions")."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from itertools import chain, repeat
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

SQLITE_VALUES_ROWS = 256  # rows per multi-row INSERT on SQLite


class Repeat(Sequence[Any]):
    """A column holding one value for every row (audit columns, constant defaults): iterated in C
    where rows are built, and bound once on DuckDB instead of as an array."""

    __slots__ = ("count", "value")

    def __init__(self, value: Any, count: int):
        self.value = value
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Repeat(self.value, len(range(*index.indices(self.count))))
        if not -self.count <= index < self.count:
            raise IndexError(index)
        return self.value

    def __iter__(self) -> Iterator[Any]:
        return repeat(self.value, self.count)


@dataclass(eq=False)
class Statement:
    """One statement run over many rows. Rows are positional: `columns` are the inserted columns
    (insert) or the updated ones (update, each row then ends with its primary key); delete rows
    are primary keys. They come as `params` (one tuple per row) or, from the batch path, as
    `data` (one sequence per position, as DuckDB's arrays and the SQLite bind processing want
    them). `rows` (dicts) is accepted as input and built on demand for the rare paths that want
    names (error mapping, before-images, the generic SQLAlchemy form)."""

    kind: str  # delete | reset | update | insert
    schema: Schema
    role: str
    table: sa.Table
    pks: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reset: Reset | None = None
    columns: list[str] = field(default_factory=list)
    params: list[tuple] = field(default_factory=list)
    data: list[Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        if self.rows and not self.params and self.data is None:
            self._from_rows()

    def _from_rows(self) -> None:
        rows, pks = self.rows, self.pks
        if self.kind == "insert":
            self.columns = list(rows[0])
            self.params = [tuple(r[c] for c in self.columns) for r in rows]
        elif self.kind == "update":
            self.columns = [k[2:] for k in rows[0] if k.startswith("v_")]
            keys = ["v_" + c for c in self.columns] + ["k_" + c for c in pks]
            self.params = [tuple(r[k] for k in keys) for r in rows]
        else:
            self.params = [tuple(r[c] for c in pks) for r in rows]

    def count(self) -> int:
        return len(self.data[0]) if self.data else len(self.params)

    def row_params(self) -> list[tuple]:
        """The rows as tuples (built from `data` the first time)."""
        if self.data is not None and not self.params:
            self.params = list(zip(*self.data, strict=True))
        return self.params

    def column_data(self) -> list[Sequence[Any]]:
        """The rows one sequence per position."""
        if self.data is None:
            self.data = [list(column) for column in zip(*self.params, strict=True)]
        return self.data

    def dict_rows(self) -> list[dict[str, Any]]:
        params = self.row_params()
        if not self.rows and params:
            if self.kind == "insert":
                self.rows = [dict(zip(self.columns, p, strict=True)) for p in params]
            elif self.kind == "update":
                keys = ["v_" + c for c in self.columns] + ["k_" + c for c in self.pks]
                self.rows = [dict(zip(keys, p, strict=True)) for p in params]
            else:
                self.rows = [dict(zip(self.pks, p, strict=True)) for p in params]
        return self.rows

    def keys(self) -> list[tuple]:
        """The primary keys of the rows (delete, update) or of the inserted rows."""
        params = self.row_params()
        if self.kind == "delete":
            return params
        if self.kind == "update":
            width = len(self.pks)
            return [p[-width:] for p in params]
        get = itemgetter(*[self.columns.index(c) for c in self.pks])
        return [get(p) if len(self.pks) > 1 else (get(p),) for p in params]


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
        if state == "delete":
            statement = deletes.get(schema.id)
            if statement is None:
                statement = deletes[schema.id] = _statement(plan, "delete", schema)
            statement.params.append(row.pk)
        elif state == "update" and row.changes:
            changes = row.changes
            cols = tuple(sorted(changes))
            statement = updates.get((schema.id, cols))
            if statement is None:
                statement = updates[(schema.id, cols)] = _statement(plan, "update", schema, list(cols))
            statement.params.append((*[changes[c] for c in cols], *row.pk))
        elif state == "insert":
            values = dict(zip(pk_columns(schema), row.pk, strict=True))
            values.update(row.changes)
            cols = tuple(sorted(values))
            statement = inserts.get((schema.id, cols))
            if statement is None:
                statement = inserts[(schema.id, cols)] = _statement(plan, "insert", schema, list(cols))
            statement.params.append(tuple([values[c] for c in cols]))
    resets = []
    for reset in plan.resets:
        statement = _statement(plan, "reset", reset.schema)
        statement.reset = reset
        resets.append(statement)
    return [*deletes.values(), *resets, *updates.values(), *inserts.values()]


def _statement(plan: Plan, kind: str, schema: Schema, columns: list[str] | None = None) -> Statement:
    return Statement(kind, schema, plan.role(schema), plan.table(schema), pk_columns(schema), columns=columns or [])


def _pk_condition(table: sa.Table, pks: list[str], keys: list[tuple]) -> sa.ColumnElement[bool]:
    if len(pks) == 1:
        return table.c[pks[0]].in_([k[0] for k in keys])
    return sa.tuple_(*[table.c[c] for c in pks]).in_(keys)


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def run_statement(conn: sa.Connection, statement: Statement) -> None:
    table, pks = statement.table, statement.pks
    count = statement.count()
    duck = conn.dialect.name == "duckdb"
    positional = conn.dialect.paramstyle == "qmark" and count > 1
    if statement.kind == "delete":
        params = statement.row_params()
        for start in range(0, len(params), CHUNK):
            conn.execute(sa.delete(table).where(_pk_condition(table, pks, params[start:start + CHUNK])))
    elif statement.kind == "reset":
        reset = statement.reset
        assert reset is not None
        for start in range(0, len(reset.values), CHUNK):
            chunk = reset.values[start:start + CHUNK]
            conn.execute(sa.update(table).where(_pk_condition(table, reset.match, chunk)).values(reset.empty))
    elif statement.kind == "update":
        cols = statement.columns
        if duck and count > 1:
            _duck_update(conn, table, pks, cols, statement.column_data())
        elif (positional and conn.dialect.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 33)
              and not set(cols) & set(pks)):  # a key rewrite keeps executemany's row-by-row order
            _sqlite_update(conn, table, pks, cols, statement)
        elif positional:
            quote = conn.dialect.identifier_preparer.quote
            sets = ", ".join(f"{quote(table.c[c].name)} = ?" for c in cols)
            where = " AND ".join(f"{quote(table.c[c].name)} = ?" for c in pks)
            _driver_many(conn, f"UPDATE {quote(table.name)} SET {sets} WHERE {where}", table, [*cols, *pks], statement)
        else:
            query = sa.update(table).where(sa.and_(*[table.c[c] == sa.bindparam("k_" + c) for c in pks]))
            conn.execute(query.values({c: sa.bindparam("v_" + c) for c in cols}), statement.dict_rows())
    else:
        cols = statement.columns
        if duck and count > 1:
            _duck_insert(conn, table, cols, statement.column_data())
        elif positional and conn.dialect.name == "sqlite":
            _sqlite_insert(conn, table, cols, statement)
        elif positional:
            quote = conn.dialect.identifier_preparer.quote
            sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(table.c[c].name) for c in cols)}) "
                   f"VALUES ({', '.join('?' for _ in cols)})")
            _driver_many(conn, sql, table, cols, statement)
        else:
            conn.execute(sa.insert(table), statement.dict_rows())


def _driver_many(conn: sa.Connection, sql: str, table: sa.Table, columns: list[str], statement: Statement) -> None:
    """One driver executemany of a pre-built positional statement (SQLite): the rows go as tuples,
    through the bind processors of their columns resolved once, instead of SQLAlchemy's per-row
    parameter processing (a third of the write time)."""
    conn.exec_driver_sql(sql, _driver_rows(conn, table, columns, statement))


def _driver_rows(conn: sa.Connection, table: sa.Table, columns: list[str], statement: Statement) -> list[tuple]:
    """The statement's rows with the columns' bind processors applied (dates become text)."""
    if not _processors(conn, table, columns):
        return statement.row_params()
    return list(zip(*_driver_columns(conn, table, columns, statement), strict=True))


def _processors(conn: sa.Connection, table: sa.Table, columns: list[str]) -> list[tuple[int, Any]]:
    dialect = conn.dialect
    return [(i, p) for i, c in enumerate(columns)
            if (p := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None]


def _driver_columns(conn: sa.Connection, table: sa.Table, columns: list[str],
                    statement: Statement) -> list[Sequence[Any]]:
    """The statement's data, one sequence per position, with the bind processors applied column
    by column: the values of processed columns (dates) repeat, so each distinct value is
    converted once."""
    data = list(statement.column_data())
    for i, process in _processors(conn, table, columns):
        data[i] = _processed(data[i], process)
    return data


def _sqlite_update(conn: sa.Connection, table: sa.Table, pks: list[str], columns: list[str],
                   statement: Statement) -> None:
    """Updates on SQLite as `UPDATE ... FROM (VALUES (...), (...)) WHERE pk = v.pk` statements,
    as inserts are (_sqlite_insert): the same rows, found through the same primary key index,
    without the driver's per-row step. A column holding one value for every row (audit
    columns) is bound once per statement. The rows of one statement have distinct keys (one
    row of the plan each), so each row is updated once."""
    data = _driver_columns(conn, table, [*columns, *pks], statement)
    quote = conn.dialect.identifier_preparer.quote
    name = quote(table.name)
    sets, constants, arrays = [], [], []
    for position, column in enumerate(data):
        if position < len(columns) and isinstance(column, Repeat):
            sets.append(f"{quote(table.c[columns[position]].name)} = ?")
            constants.append(column.value)
            continue
        arrays.append(column)
        if position < len(columns):
            sets.append(f"{quote(table.c[columns[position]].name)} = v.column{len(arrays)}")
    width = len(arrays)
    where = " AND ".join(f"{name}.{quote(table.c[c].name)} = v.column{width - len(pks) + i + 1}"
                         for i, c in enumerate(pks))
    rows = list(zip(*arrays, strict=True))
    dbapi = conn.connection.dbapi_connection
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(dbapi, "getlimit") else 999
    per = max(1, min(SQLITE_VALUES_ROWS, (limit - len(constants)) // width))
    one = f"({', '.join('?' * width)})"
    head = f"UPDATE {name} SET {', '.join(sets)} FROM (VALUES "
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        conn.exec_driver_sql(f"{head}{', '.join([one] * len(chunk))}) AS v WHERE {where}",
                             (*constants, *chain.from_iterable(chunk)))


def _sqlite_insert(conn: sa.Connection, table: sa.Table, columns: list[str], statement: Statement) -> None:
    """Inserts on SQLite as multi-row `INSERT ... VALUES (...), (...)` statements: the engine
    does the same work as for executemany, without the driver's per-row step and reset (about
    a third of an insert's cost). A few hundred rows per statement is the sweet spot: the driver
    keeps the compiled statement for every full chunk, and longer ones cost more per row."""
    rows = _driver_rows(conn, table, columns, statement)
    dbapi = conn.connection.dbapi_connection
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(dbapi, "getlimit") else 999
    per = max(1, min(SQLITE_VALUES_ROWS, limit // len(columns)))
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(table.c[c].name) for c in columns)}) VALUES "
    one = f"({', '.join('?' * len(columns))})"
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        conn.exec_driver_sql(head + ", ".join([one] * len(chunk)), tuple(chain.from_iterable(chunk)))


def _processed(values: Sequence[Any], process: Any) -> Sequence[Any]:
    """process() of each value, once per distinct value (the mapping itself runs in C)."""
    if isinstance(values, Repeat):
        return Repeat(process(values.value), values.count)
    try:
        table = {value: process(value) for value in set(values)}
    except TypeError:  # unhashable values
        return [process(value) for value in values]
    return list(map(table.__getitem__, values))


# DuckDB runs executemany one row at a time (a few thousand rows/s); a single statement reading
# column arrays through UNNEST moves the same rows 50-100x faster.
def _duck_arrays(data: list[Sequence[Any]], start: int, stop: int) -> tuple[list[str], list[Any], list[Any]]:
    """Per position the expression reading it (`?` for a constant, bound once, else the name of
    its UNNEST column `pI`), the constants and the arrays of rows start:stop, in binding order."""
    if all(isinstance(column, Repeat) for column in data):
        data = [list(data[0]), *data[1:]]  # UNNEST needs one array to give the rows
    exprs, constants, arrays = [], [], []
    for i, column in enumerate(data):
        if isinstance(column, Repeat):
            exprs.append("?")
            constants.append(column.value)
        else:
            exprs.append(f"p{i}")
            arrays.append(list(column[start:stop]))
    return exprs, constants, arrays


def _duck_insert(conn: sa.Connection, table: sa.Table, cols: list[str], data: list[Sequence[Any]]) -> None:
    names = ", ".join(_quote(conn, table.c[c].name) for c in cols)
    for start in range(0, len(data[0]), 20 * CHUNK):
        exprs, constants, arrays = _duck_arrays(data, start, start + 20 * CHUNK)
        unnest = ", ".join(f"UNNEST(?) AS {e}" for e in exprs if e != "?")
        sql = f"INSERT INTO {_quote(conn, table.name)} ({names}) SELECT {', '.join(exprs)} FROM (SELECT {unnest})"
        conn.exec_driver_sql(sql, (*constants, *arrays))  # the select list's ? come first


def _duck_update(conn: sa.Connection, table: sa.Table, pks: list[str], cols: list[str],
                 data: list[Sequence[Any]]) -> None:
    # Positions are (*values, *pk); the keys always go as arrays, so every constant is in SET
    # and binds before the arrays, in text order.
    data = [*data[:len(cols)], *[list(column) for column in data[len(cols):]]]
    name = _quote(conn, table.name)
    for start in range(0, len(data[0]), 20 * CHUNK):
        exprs, constants, arrays = _duck_arrays(data, start, start + 20 * CHUNK)
        sets = ", ".join(f"{_quote(conn, table.c[c].name)} = {'?' if e == '?' else 'v.' + e}"
                         for c, e in zip(cols, exprs, strict=False))
        where = " AND ".join(f"{name}.{_quote(conn, table.c[c].name)} = v.{e}"
                             for c, e in zip(pks, exprs[len(cols):], strict=True))
        unnest = ", ".join(f"UNNEST(?) AS {e}" for e in exprs if e != "?")
        sql = f"UPDATE {name} SET {sets} FROM (SELECT {unnest}) AS v WHERE {where}"
        conn.exec_driver_sql(sql, (*constants, *arrays))


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
        undo.inserted = statement.keys()
        return undo
    if statement.kind == "reset":
        assert statement.reset is not None
        match, values = statement.reset.match, statement.reset.values
    else:
        match, values = pks, statement.keys()
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
    return run_statements(plan.storage, statements)


def run_statements(storage: Storage, statements: list[Statement]) -> set[str]:
    """The statements in one transaction per database (local commits first, compensated if the
    cloud commit fails), then the cloud copies of replicated schemas refreshed."""
    if not statements:
        return set()
    roles = [r for r in (LOCAL, CLOUD) if any(s.role == r for s in statements)]
    undos: list[_Undo] = []
    opened: list[tuple[str, AbstractContextManager[sa.Connection]]] = []
    try:
        for role in roles:
            manager = storage.write(role)
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
            cause = database_error(exc, storage.dialect(role)).headline
            if committed:
                try:
                    _compensate(storage, committed[0], undos)
                except Exception as undo_exc:  # noqa: BLE001
                    raise WriteFailure(cause, "The changes already committed in the local database could not be "
                                              f"undone: {database_error(undo_exc, storage.dialect(committed[0])).headline}",
                                       client=False) from exc
            raise WriteFailure(cause, f"Commit failed in the {role} database; nothing was written", client=False) from exc
    written = {s.schema.id for s in statements}
    local_written = [sid for sid in written if storage.placement.is_replicated(sid)]
    if local_written:
        replicate(storage, sorted(local_written))
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
    rows = statement.dict_rows()
    if statement.kind != "insert" or None in cols or not rows:
        return None
    keys = [tuple(r.get(c) for c in cols) for r in rows]
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

