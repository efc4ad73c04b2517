"""Single-row reads on PostgreSQL straight through libpq (psycopg's `PGconn`).

A get-by-key through a psycopg cursor spends ~35 µs of Python per call here (cursor set-up, query
conversion, the prepare manager, result sets) around a ~10 µs libpq exchange. A cached queryDef
plan knows its SQL and parameters, so it can prepare its statement once per connection and run it
with `exec_prepared` (libpq releases the GIL while it waits), converting the one row from text
with the loaders below, which give what psycopg's text loaders give.

Only what this module can do exactly goes this way: parameters that are None, booleans,
integers, finite floats, Decimals or strings; result columns of the types in LOADERS. Anything
else, and any statement PostgreSQL refuses, returns None: the caller then runs the statement on
a cursor, which raises the driver's own error.
"""

from __future__ import annotations

import itertools
import math
import re
import weakref
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

TUPLES_OK = 2  # libpq ExecStatusType PGRES_TUPLES_OK
COMMAND_OK = 1  # PGRES_COMMAND_OK
MAX_PREPARED = 256  # statements prepared per connection (one per cached plan run on it)


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _timestamp(value: bytes) -> datetime:
    return datetime.fromisoformat(value.decode("ascii"))  # ValueError on 'infinity', BC dates


# type OID -> text-format loader, as psycopg loads them (a connection in UTF-8, DateStyle ISO)
LOADERS: dict[int, Callable[[bytes], Any]] = {
    16: lambda v: v == b"t",  # bool
    20: int, 21: int, 23: int, 26: int,  # int8, int2, int4, oid
    25: _text, 1043: _text, 1042: _text, 19: _text,  # text, varchar, bpchar, name
    700: float, 701: float,  # float4, float8
    1700: lambda v: Decimal(v.decode("ascii")),  # numeric
    1114: _timestamp,  # timestamp without time zone
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_NAMES = (f"oc_read_{n}".encode() for n in itertools.count(1))
# connection -> names of the statements prepared on it (a connection is used by one thread at a
# time), or None when the session's settings are not those the loaders assume
_PREPARED: weakref.WeakKeyDictionary[Any, set[bytes] | None] = weakref.WeakKeyDictionary()


def _session_fits(pgconn: Any) -> bool:
    encoding = pgconn.parameter_status(b"client_encoding") or b""
    datestyle = pgconn.parameter_status(b"DateStyle") or b""
    return encoding.upper() in (b"UTF8", b"UTF-8") and datestyle.startswith(b"ISO")


def _encode(value: Any) -> bytes | None | bool:
    """A parameter in text format; False when it has no exact text form here."""
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return str(value).encode()
    if kind is str:
        return value.encode("utf-8")
    if kind is bool:
        return b"t" if value else b"f"
    if kind is float:
        return repr(value).encode() if math.isfinite(value) else False
    if kind is Decimal:
        return str(value).encode() if value.is_finite() else False
    return False


class PreparedRead:
    """One statement (SQLAlchemy's psycopg `%(name)s` form), run by name on any connection."""

    def __init__(self, sql: str):
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "%"
            if name not in order:
                order.append(name)
            return f"${order.index(name) + 1}"

        self.sql = _PLACEHOLDER.sub(number, sql).encode("utf-8")
        self.order = order
        self.name = next(_NAMES)
        self.usable = True  # False once a result column has no loader: always the cursor then
        # The result's column types, their loaders and (name, type) description, as last seen.
        self._columns: tuple[list[int], list[Callable[[bytes], Any]], list[tuple[str, int]]] | None = None

    def run(self, connection: Any, params: dict[str, Any]) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]] | None:
        """(rows, [(column name, type oid)]), or None: run it on a cursor instead."""
        pgconn = getattr(connection, "pgconn", None)
        if not self.usable or pgconn is None:
            return None
        values = []
        for name in self.order:
            encoded = _encode(params[name])
            if encoded is False:
                return None
            values.append(encoded)
        prepared = _PREPARED.get(connection, False)
        if prepared is False:
            prepared = _PREPARED[connection] = set() if _session_fits(pgconn) else None
        if prepared is None:
            return None
        if self.name not in prepared:
            if len(prepared) >= MAX_PREPARED or pgconn.prepare(self.name, self.sql, None).status != COMMAND_OK:
                return None
            prepared.add(self.name)
        result = pgconn.exec_prepared(self.name, values, None, 0)
        if result.status != TUPLES_OK:
            prepared.discard(self.name)  # e.g. DISCARD ALL dropped it: prepared again next time
            return None
        width = result.nfields
        types = [result.ftype(j) for j in range(width)]
        columns = self._columns
        if columns is None or columns[0] != types:  # first run, or the table changed since
            found = [LOADERS.get(oid) for oid in types]
            if None in found:
                self.usable = False
                return None
            description = [(result.fname(j).decode("utf-8"), types[j]) for j in range(width)]
            columns = self._columns = (types, found, description)  # type: ignore[assignment]
        _, loaders, description = columns
        get = result.get_value
        try:
            rows = [tuple(None if (raw := get(i, j)) is None else loaders[j](raw)  # type: ignore[misc]
                          for j in range(width)) for i in range(result.ntuples)]
        except (ValueError, ArithmeticError):  # a value beyond these loaders ('infinity'...)
            return None
        return rows, description
