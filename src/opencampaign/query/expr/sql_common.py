"""Building blocks shared by the SQL translations of XTK functions.

`SqlTemplate` renders dialect-specific syntax (lambdas, INTERVAL, AT TIME ZONE...) around
compiled sub-expressions, so arguments stay bound parameters; template text only ever contains
constants written in this package. Marker elements (When, Else, PartitionBy, OrderBy, Desc) carry
arguments to their parent call and refuse to compile on their own.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from .errors import ExpressionError

DIALECTS = ("sqlite", "duckdb", "postgresql")

_PLACEHOLDER = re.compile(r"\{(\d+)\}")
_SAFE_CONSTANT = re.compile(r"[A-Za-z0-9 @%._:/+*-]*")


class SqlTemplate(ColumnElement[Any]):
    """`template` with `{0}`, `{1}`... replaced by the compiled clauses, each parenthesised."""

    __visit_name__ = "oc_sql_template"
    inherit_cache = True
    _traverse_internals = [
        ("template", InternalTraversal.dp_string),
        ("clauses", InternalTraversal.dp_clauseelement_tuple),
        ("type", InternalTraversal.dp_type),
    ]

    def __init__(self, template: str, *clauses: ColumnElement[Any], type_: Any = None) -> None:
        self.template = template
        self.clauses = tuple(clauses)
        self.type = sa.types.to_instance(type_)


@compiles(SqlTemplate)
def _compile_template(element: SqlTemplate, compiler: Any, **kw: Any) -> str:
    parts: list[str] = []
    last = 0
    for m in _PLACEHOLDER.finditer(element.template):
        parts.append(compiler.post_process_text(element.template[last : m.start()]))
        parts.append("(" + compiler.process(element.clauses[int(m.group(1))], **kw) + ")")
        last = m.end()
    parts.append(compiler.post_process_text(element.template[last:]))
    return "(" + "".join(parts) + ")"


def tpl(template: str, *clauses: ColumnElement[Any], type_: Any = None) -> SqlTemplate:
    return SqlTemplate(template, *clauses, type_=type_)


# -- markers ---------------------------------------------------------------------------------


class Marker(ColumnElement[Any]):
    """Argument of a parent call only (When/Else in Case, PartitionBy/OrderBy in RowNum, Desc)."""

    __visit_name__ = "oc_marker"
    inherit_cache = False
    function = ""
    parent = ""

    def __init__(self, *items: ColumnElement[Any]) -> None:
        self.items = tuple(items)
        self.type = items[-1].type if items else sa.types.NULLTYPE


class WhenMarker(Marker):
    function, parent = "When", "Case"


class ElseMarker(Marker):
    function, parent = "Else", "Case"


class PartitionMarker(Marker):
    function, parent = "PartitionBy", "RowNum"


class OrderMarker(Marker):
    function, parent = "OrderBy", "RowNum"


class DescMarker(Marker):
    function, parent = "Desc", "OrderBy"


@compiles(Marker)
def _compile_marker(element: Marker, compiler: Any, **kw: Any) -> str:
    raise ExpressionError(
        f"Function '{element.function}' can only be used inside {element.parent}", f"{element.function}(...)"
    )


# -- typing helpers ----------------------------------------------------------------------------


def coerce(value: Any) -> ColumnElement[Any]:
    """Accept SQLAlchemy expressions; anything else becomes a bound parameter (never inlined)."""
    if isinstance(value, ColumnElement):
        return value
    if value is None:
        return sa.null()
    return sa.literal(value)


def is_string(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, sa.String)


def is_integer(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, sa.Integer)


def is_number(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, (sa.Integer, sa.Numeric))


def is_boolean(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, sa.Boolean)


def is_datetime(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, sa.DateTime)


def is_date(x: ColumnElement[Any]) -> bool:
    return isinstance(x.type, sa.Date)


def const(value: int | float | str, type_: Any = None) -> ColumnElement[Any]:
    """An inline SQL constant chosen by this package (never user data)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError("constants are int, float or str")
    if isinstance(value, str):
        if not _SAFE_CONSTANT.fullmatch(value):
            raise ValueError(f"unsafe SQL constant {value!r}")
        return sa.literal_column(f"'{value}'", type_ or sa.String())
    return sa.literal_column(repr(value), type_ or (sa.BigInteger() if isinstance(value, int) else sa.Double()))


def to_string(x: ColumnElement[Any]) -> ColumnElement[Any]:
    return x if is_string(x) else sa.cast(x, sa.String())


def to_double(x: ColumnElement[Any]) -> ColumnElement[Any]:
    # always an explicit CAST: PostgreSQL would otherwise type a bare parameter from its context
    return sa.cast(x, sa.Double())


def to_int(x: ColumnElement[Any], d: str, *, big: bool = True) -> ColumnElement[Any]:
    """Integer conversion truncating toward zero on every engine (PostgreSQL's cast rounds)."""
    target = sa.BigInteger() if big else sa.Integer()
    if is_integer(x) or is_boolean(x):
        # keep BIGINT width so products such as seconds * 1000000 cannot overflow INTEGER
        fits = isinstance(x.type, sa.BigInteger) if big else is_integer(x)
        return x if fits else sa.cast(x, target)
    if d == "sqlite":  # SQLite's CAST truncates; go through REAL so '1e3' reads as 1000
        return sa.cast(x if is_number(x) else sa.cast(x, sa.Double()), target)
    inner = x if is_number(x) else sa.cast(x, sa.Double())
    return sa.cast(sa.func.trunc(inner), target)


def at_least(x: ColumnElement[Any], low: int) -> ColumnElement[Any]:
    """max(x, low), null-preserving and without GREATEST (which skips nulls on PostgreSQL)."""
    k = const(low)
    return sa.case((x < k, k), else_=x)


def as_condition(x: ColumnElement[Any]) -> ColumnElement[Any]:
    """A boolean SQL expression from an XTK value (0/''/null are false), for CASE and WHERE."""
    if is_boolean(x):
        return x
    if is_number(x):
        return sa.and_(x.is_not(None), x != const(0))
    if is_string(x):
        return sa.and_(x.is_not(None), x != const(""))
    return x


def is_empty(x: ColumnElement[Any]) -> ColumnElement[Any]:
    """Null, or '' for strings (Campaign treats both the same)."""
    if is_string(x):
        return sa.or_(x.is_(None), x == const(""))
    return x.is_(None)


def fn(d: str, sqlite_name: str | None, name: str, *args: ColumnElement[Any], type_: Any) -> ColumnElement[Any]:
    """`name(args)`, or the Python helper `sqlite_name` registered on SQLite connections."""
    use = sqlite_name if d == "sqlite" and sqlite_name else name
    return getattr(sa.func, use)(*args, type_=type_)
