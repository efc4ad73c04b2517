"""Translate XTK function calls into parameterised SQLAlchemy expressions.

`build_function_sql(name, args, dialect_name)` takes already-translated arguments (SQLAlchemy
expressions; plain Python values become bound parameters) and returns an expression that gives
the same result on SQLite, DuckDB and PostgreSQL. Nested marker calls (`When`, `Else`,
`PartitionBy`, `OrderBy`, `Desc`) return marker elements that only their parent call accepts.

SQLite needs `register_sqlite_functions()` (sqlite_udf.py) on each connection.

Where Campaign's documentation is silent, one behaviour was chosen and is the same everywhere:
Round rounds half away from zero and Trunc truncates, both on IEEE doubles; ToInt64, ToInteger
and Mod truncate toward zero; Mod and Percent by zero give null; ToString(number) prints like
PostgreSQL's float8 output and ToString(n, d) with d (0-15) decimals; Greatest/Least skip
nulls; negative lengths and positions are clamped (Left, Right, Substring, LPad, GetLine);
the *Diff functions count whole units toward zero (MonthsDiff counts complete months); WeekDay
is 0 for Monday and TruncWeek goes back to Monday; YearAndMonth is yyyymm.
Known engine differences: DuckDB upper-cases 'ß' to 'ẞ'; PostgreSQL's initcap (Smart) treats
combining marks and superscript digits as letters (glibc locale); on float overflow or
underflow PostgreSQL raises where SQLite and DuckDB return inf or 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from .errors import ExpressionError
from .functions import FunctionSpec, arity_text, lookup
from .sql_common import (
    DIALECTS,
    DescMarker,
    ElseMarker,
    Marker,
    OrderMarker,
    PartitionMarker,
    WhenMarker,
    as_condition,
    at_least,
    coerce,
    const,
    fn,
    is_boolean,
    is_empty,
    is_integer,
    is_number,
    is_string,
    to_double,
    to_int,
    to_string,
    tpl,
)
from .sql_dates import DATE_BUILDERS
from .sqlite_udf import register_sqlite_functions

__all__ = ["BUILDERS", "UNSUPPORTED", "build_function_sql", "register_sqlite_functions"]

Args = list[ColumnElement[Any]]
Builder = Callable[[Args, str], ColumnElement[Any]]

_STR, _INT, _BIG, _DBL, _BOOL = sa.String(), sa.Integer(), sa.BigInteger(), sa.Double(), sa.Boolean()

# Functions that cannot be expressed on a given dialect: {name: {dialect: reason}} (none today;
# functions needing server state are marked sql=False in functions.py instead).
UNSUPPORTED: dict[str, dict[str, str]] = {}


def _error(name: str, detail: str) -> ExpressionError:
    return ExpressionError(detail, f"{name}(...)")


# -- strings -------------------------------------------------------------------------------------


def _nz(x: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.func.coalesce(x, const(""), type_=_STR)


def _concat(*parts: ColumnElement[Any]) -> ColumnElement[Any]:
    result = parts[0]
    for p in parts[1:]:
        result = result.op("||", return_type=_STR)(p)
    return result


def _juxt(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    a, b = to_string(a), to_string(b)
    return sa.case(
        (_nz(a) == const(""), _nz(b)),
        (_nz(b) == const(""), a),
        else_=_concat(a, const(" "), b),
    )


def _charindex(s: ColumnElement[Any], sub: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    return fn(d, "instr", "strpos", to_string(s), to_string(sub), type_=_INT)


def _pad(left: bool) -> Builder:
    def build(a: Args, d: str) -> ColumnElement[Any]:
        s, n, c = to_string(a[0]), at_least(to_int(a[1], d, big=False), 0), to_string(a[2])
        if d == "sqlite":
            return getattr(sa.func, "oc_lpad" if left else "oc_rpad")(s, n, c, type_=_STR)
        native = "lpad" if left else "rpad"
        if d == "postgresql":
            return getattr(sa.func, native)(s, n, c, type_=_STR)
        # DuckDB refuses an empty fill; PostgreSQL then just cuts to n.
        safe_fill = sa.case((c == const(""), const(" ")), else_=c)
        return sa.case((c == const(""), sa.func.substr(s, 1, n)), else_=getattr(sa.func, native)(s, n, safe_fill))

    return build


def _right(a: Args, d: str) -> ColumnElement[Any]:
    s = to_string(a[0])
    n = at_least(to_int(a[1], d, big=False), 0)
    start = at_least(sa.func.length(s) - n + const(1), 1)
    return sa.func.substr(s, start, type_=_STR)


def _get_line(a: Args, d: str) -> ColumnElement[Any]:
    s, n = to_string(a[0]), to_int(a[1], d, big=False)
    if d == "sqlite":
        return sa.func.oc_split_part(s, sa.func.char(10), n, type_=_STR)
    # the inner clamp keeps PostgreSQL's planner from folding split_part(.., 0) into an error
    return sa.case((n < const(1), const("")), else_=sa.func.split_part(s, sa.func.chr(10), at_least(n, 1)))


def _smart(a: Args, d: str) -> ColumnElement[Any]:
    s = to_string(a[0])
    if d == "postgresql":
        return sa.func.initcap(s, type_=_STR)
    if d == "sqlite":
        return sa.func.oc_initcap(s, type_=_STR)
    # DuckDB has no initcap: upper-case characters that follow a non-alphanumeric one.
    return tpl(
        "array_to_string(list_transform(range(1, length({0}) + 1), lambda oc_i: CASE WHEN oc_i = 1"
        " OR NOT regexp_matches(substr({0}, oc_i - 1, 1), '[\\p{L}\\p{N}]')"
        " THEN upper(substr({0}, oc_i, 1)) ELSE lower(substr({0}, oc_i, 1)) END), '')",
        s,
        type_=_STR,
    )


def _float_text(x: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    """PostgreSQL's float8 text on every engine (no '.0', exponent below 1e-4 and from 1e15)."""
    v = to_double(x) + const(0.0)  # + 0.0 turns -0 into 0
    if d == "postgresql":
        return sa.cast(v, _STR)
    if d == "sqlite":
        return sa.func.oc_float_text(v, type_=_STR)
    # DuckDB prints like Python repr: fix integral values and the [1e15, 1e16) band.
    return tpl(
        "CASE WHEN {0} = trunc({0}) AND abs({0}) < 1e15 THEN CAST(CAST({0} AS BIGINT) AS VARCHAR)"
        " WHEN abs({0}) >= 1e15 AND abs({0}) < 1e16 THEN"
        " (CASE WHEN {0} < 0 THEN '-' ELSE '' END) || left({1}, 1)"
        " || (CASE WHEN length({1}) > 1 THEN '.' || substr({1}, 2) ELSE '' END) || 'e+15'"
        " ELSE CAST({0} AS VARCHAR) END",
        v,
        tpl("rtrim(replace(replace(CAST({0} AS VARCHAR), '-', ''), '.', ''), '0')", v, type_=_STR),
        type_=_STR,
    )


def _to_string(a: Args, d: str) -> ColumnElement[Any]:
    x = a[0]
    if len(a) == 1:
        if is_string(x):
            return x
        if is_integer(x) or is_boolean(x):
            return sa.cast(sa.cast(x, _INT) if is_boolean(x) else x, _STR)
        return _float_text(x, d)
    places = to_int(a[1], d, big=False)
    digits = sa.cast(sa.case((places < const(0), const(0)), (places > const(15), const(15)), else_=places), _INT)
    rounded = _round(x, digits, d, half=True)
    if d == "postgresql":
        return tpl("CAST(round(CAST(CAST({0} AS VARCHAR) AS NUMERIC), {1}) AS VARCHAR)", rounded, digits, type_=_STR)
    return sa.func.printf(const("%.*f"), digits, rounded, type_=_STR)


def _data_length(a: Args, d: str) -> ColumnElement[Any]:
    s = to_string(a[0])
    if d == "postgresql":
        return sa.func.octet_length(s, type_=_INT)
    if d == "duckdb":
        return sa.func.strlen(s, type_=_INT)
    return sa.func.length(sa.cast(s, sa.LargeBinary()), type_=_INT)


def _non_empty(x: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.not_(is_empty(x))


_STRING: dict[str, Builder] = {
    "AllNonNull2": lambda a, d: sa.and_(*[_non_empty(x) for x in a]),
    "AllNonNull3": lambda a, d: sa.and_(*[_non_empty(x) for x in a]),
    "Ascii": lambda a, d: fn(d, "oc_ascii", "ascii", to_string(a[0]), type_=_INT),
    "Char": lambda a, d: fn(d, "char", "chr", to_int(a[0], d, big=False), type_=_STR),
    "Charindex": lambda a, d: _charindex(a[0], a[1], d),
    "GetLine": _get_line,
    "IfEquals": lambda a, d: sa.case((a[0] == a[1], a[2]), else_=a[3]),
    "IsMemoNull": lambda a, d: is_empty(to_string(a[0])),
    "JuxtWords": lambda a, d: _juxt(a[0], a[1]),
    "JuxtWords3": lambda a, d: _juxt(_juxt(a[0], a[1]), a[2]),
    "LPad": _pad(left=True),
    "Left": lambda a, d: sa.func.substr(to_string(a[0]), 1, at_least(to_int(a[1], d, big=False), 0), type_=_STR),
    "Length": lambda a, d: sa.func.length(to_string(a[0]), type_=_INT),
    "Lower": lambda a, d: fn(d, "oc_lower", "lower", to_string(a[0]), type_=_STR),
    "Ltrim": lambda a, d: sa.func.ltrim(to_string(a[0]), const(" "), type_=_STR),
    "Md5Digest": lambda a, d: fn(d, "oc_md5", "md5", to_string(a[0]), type_=_STR),
    "MemoContains": lambda a, d: sa.func.coalesce(_charindex(a[0], a[1], d), const(0)) > const(0),
    "RPad": _pad(left=False),
    "Right": _right,
    "Rtrim": lambda a, d: sa.func.rtrim(to_string(a[0]), const(" "), type_=_STR),
    "Smart": _smart,
    "Substring": lambda a, d: sa.func.substr(
        to_string(a[0]), at_least(to_int(a[1], d, big=False), 1), at_least(to_int(a[2], d, big=False), 0), type_=_STR
    ),
    "ToString": _to_string,
    "Upper": lambda a, d: fn(d, "oc_upper", "upper", to_string(a[0]), type_=_STR),
    "VirtualLink": lambda a, d: sa.case((a[1] == a[2], a[0]), else_=const(0)),
    "VirtualLinkStr": lambda a, d: sa.case((a[1] == a[2], a[0]), else_=const("")),
    "dataLength": _data_length,
}


# -- numbers -------------------------------------------------------------------------------------


def _simple(x: Any) -> bool:
    """A column, constant or parameter (possibly cast): cheap to repeat in SQL."""
    while isinstance(x, (sa.sql.elements.Cast, sa.sql.elements.Grouping, sa.sql.elements.Label)):
        x = x.clause if isinstance(x, sa.sql.elements.Cast) else x.element
    return isinstance(x, (sa.sql.elements.ColumnClause, sa.sql.elements.BindParameter, sa.sql.elements.Null,
                          sa.sql.elements.True_, sa.sql.elements.False_))


def _has_window(x: Any) -> bool:
    stack = [x]
    while stack:
        node = stack.pop()
        if isinstance(node, sa.sql.elements.Over):
            return True
        stack.extend(node.get_children())
    return False


def _let(args: Sequence[ColumnElement[Any]], body: Callable[..., ColumnElement[Any]], d: str,
         type_: Any) -> ColumnElement[Any]:
    """`body(*args)` where each complex argument appears once in the SQL, however often the body
    uses it (nested calls would otherwise grow the SQL exponentially): DuckDB binds it in a lambda
    over a one-element list (works with aggregates and windows); PostgreSQL and SQLite in a scalar
    sub-select (not for window functions, which would then run inside the sub-select)."""
    complex_ = [i for i, a in enumerate(args) if not _simple(a)]
    if not complex_ or (d != "duckdb" and any(_has_window(args[i]) for i in complex_)):
        return body(*args)
    refs = list(args)
    if d == "duckdb":
        for i in complex_:
            refs[i] = sa.literal_column(f"oc_l.a{i}", args[i].type)
        fields = ", ".join(f"'a{i}': {{{n}}}" for n, i in enumerate(complex_))
        return tpl("list_transform([{" + fields + "}], lambda oc_l: {" + str(len(complex_)) + "})[1]",
                   *[args[i] for i in complex_], body(*refs), type_=type_)
    for i in complex_:
        refs[i] = sa.literal_column(f"oc_l.a{i}", args[i].type)
    columns = ", ".join(f"{{{n}}} AS a{i}" for n, i in enumerate(complex_))
    return tpl(f"(SELECT {{{len(complex_)}}} FROM (SELECT {columns}) AS oc_l)",
               *[args[i] for i in complex_], body(*refs), type_=type_)


def _round(x: ColumnElement[Any], digits: ColumnElement[Any] | None, d: str, *, half: bool) -> ColumnElement[Any]:
    """Round half away from zero (half=True) or truncate toward zero, to `digits` decimals, with the
    same IEEE double operations on every engine (PostgreSQL's own round(float8) rounds half even).
    Each argument appears once in the SQL: a Python function on SQLite, _let elsewhere."""
    v = to_double(x)
    if d == "sqlite":
        flag = const(1 if half else 0)
        if digits is None:
            return sa.func.oc_round1(v, flag, type_=_DBL)
        return sa.func.oc_round2(v, to_int(digits, d, big=False), flag, type_=_DBL)
    bump = const(0.5) if half else const(0.0)

    def body(v: ColumnElement[Any], dd: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        mag = sa.func.abs(v, type_=_DBL)
        if dd is None:
            r = sa.func.floor(mag + bump, type_=_DBL)
        else:
            p = sa.func.power(sa.cast(const(10), _DBL), sa.cast(sa.func.abs(dd), _DBL), type_=_DBL)
            r = sa.case((dd >= const(0), sa.func.floor(mag * p + bump, type_=_DBL) / p),
                        else_=sa.func.floor(mag / p + bump, type_=_DBL) * p)
        return sa.case((v < const(0.0), -r), else_=r) + const(0.0)

    if digits is None:
        return _let([v], body, d, _DBL)
    return _let([v, to_int(digits, d, big=False)], body, d, _DBL)


def _greatest(native: str, sqlite_agg: str) -> Builder:
    def build(a: Args, d: str) -> ColumnElement[Any]:
        if d != "sqlite":  # GREATEST/LEAST skip nulls on PostgreSQL and DuckDB
            return getattr(sa.func, native)(*a, type_=a[0].type)
        # SQLite's multi-argument max/min return null if any argument is: rotate coalesces so
        # each slot falls back to another non-null value.
        slots = [sa.func.coalesce(*(a[i:] + a[:i]), type_=a[0].type) for i in range(len(a))]
        return getattr(sa.func, sqlite_agg)(*slots, type_=a[0].type)

    return build


def _sign(a: Args, d: str) -> ColumnElement[Any]:
    zero = const(0)

    def body(x: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.case((x > zero, const(1)), (x < zero, const(-1)), (x == zero, zero))

    return _let([a[0]], body, d, _INT)


def _random(a: Args, d: str) -> ColumnElement[Any]:
    if d == "sqlite":
        return tpl("(random() & 9007199254740991) / 9007199254740992.0", type_=_DBL)
    return sa.func.random(type_=_DBL)


_NUMERIC: dict[str, Builder] = {
    "Abs": lambda a, d: sa.func.abs(a[0], type_=a[0].type),
    "Ceil": lambda a, d: fn(d, "oc_ceil", "ceil", to_double(a[0]), type_=_DBL),
    "Floor": lambda a, d: fn(d, "oc_floor", "floor", to_double(a[0]), type_=_DBL),
    "Greatest": _greatest("greatest", "max"),
    "Least": _greatest("least", "min"),
    "Mod": lambda a, d: tpl("{0} % {1}", to_int(a[0], d), sa.func.nullif(to_int(a[1], d), const(0)), type_=_BIG),
    "Percent": lambda a, d: to_double(a[0]) * const(100.0) / sa.func.nullif(to_double(a[1]), const(0.0), type_=_DBL),
    "Random": _random,
    "Round": lambda a, d: _round(a[0], a[1] if len(a) > 1 else None, d, half=True),
    "Sign": _sign,
    "ToDouble": lambda a, d: sa.cast(a[0], _DBL),
    "ToInt64": lambda a, d: to_int(a[0], d),
    "ToInteger": lambda a, d: to_int(a[0], d, big=False),
    "Trunc": lambda a, d: _round(a[0], a[1] if len(a) > 1 else None, d, half=False),
}


def _distance(a: Args, d: str) -> ColumnElement[Any]:
    lon_a, lat_a, lon_b, lat_b = (to_double(x) for x in a)
    if d == "sqlite":
        return sa.func.oc_distance(lon_a, lat_a, lon_b, lat_b, type_=_DBL)
    # haversine; same operation order as sqlite_udf.distance_km so results are bit-identical
    k = "(pi() / 180)"
    h = (
        f"sin(({{3}} - {{1}}) * {k} / 2) * sin(({{3}} - {{1}}) * {k} / 2)"
        f" + cos({{1}} * {k}) * cos({{3}} * {k}) * (sin(({{2}} - {{0}}) * {k} / 2) * sin(({{2}} - {{0}}) * {k} / 2))"
    )
    return tpl(f"12742 * asin(sqrt(least({h}, 1.0)))", lon_a, lat_a, lon_b, lat_b, type_=_DBL)


# -- aggregates, conditionals, bits, windows ----------------------------------------------------


def _stddev(a: Args, d: str) -> ColumnElement[Any]:
    return fn(d, "oc_stddev", "stddev_samp", to_double(a[0]), type_=_DBL)


def _coalesce(a: Args, d: str) -> ColumnElement[Any]:
    x, fallback = a
    empty = is_empty(x)
    if is_number(x):
        empty = sa.or_(x.is_(None), x == const(0))
    return sa.case((empty, fallback), else_=x)


def _no_null(a: Args, d: str) -> ColumnElement[Any]:
    x = a[0]
    if is_number(x):
        return sa.func.coalesce(x, const(0), type_=x.type)
    if is_boolean(x):
        return sa.func.coalesce(x, sa.false(), type_=x.type)
    if is_string(x) or isinstance(x.type, sa.types.NullType):
        return sa.func.coalesce(x, const(""), type_=_STR if not is_string(x) else x.type)
    return x


def _case(a: Args, d: str) -> ColumnElement[Any]:
    whens = [m for m in a if isinstance(m, WhenMarker)]
    elses = [m for m in a if isinstance(m, ElseMarker)]
    if not whens or len(whens) + len(elses) != len(a) or len(elses) > 1 or (elses and a[-1] is not elses[0]):
        raise _error("Case", "Function 'Case' expects When(condition, value) arguments and an optional final Else(value)")
    branches = [(as_condition(w.items[0]), w.items[1]) for w in whens]
    return sa.case(*branches, else_=elses[0].items[0] if elses else None)


def _row_num(a: Args, d: str) -> ColumnElement[Any]:
    partitions = [m for m in a if isinstance(m, PartitionMarker)]
    orders = [m for m in a if isinstance(m, OrderMarker)]
    if len(partitions) > 1 or len(orders) > 1 or len(partitions) + len(orders) != len(a):
        raise _error("RowNum", "Function 'RowNum' expects at most one PartitionBy(..) and one OrderBy(..)")
    order_by = [i.items[0].desc() if isinstance(i, DescMarker) else i for o in orders for i in o.items]
    partition_by = [i for p in partitions for i in p.items]
    return sa.func.row_number(type_=_BIG).over(partition_by=partition_by or None, order_by=order_by or None)


def _to_boolean(a: Args, d: str) -> ColumnElement[Any]:
    x = a[0]
    if is_boolean(x):
        return sa.func.coalesce(x, sa.false(), type_=_BOOL)
    return sa.func.coalesce(to_double(x) if not is_number(x) else x, const(0)) != const(0)


def _new_uuid(a: Args, d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return sa.cast(sa.func.gen_random_uuid(), _STR)
    if d == "duckdb":
        return sa.cast(sa.func.uuid(), _STR)
    return sa.func.oc_newuuid(type_=_STR)


def _email_domain(a: Args, d: str) -> ColumnElement[Any]:
    s = to_string(a[0])
    if d == "sqlite":
        return sa.func.oc_email_domain(s, type_=_STR)
    found = sa.func.strpos(s, const("@")) > const(0)
    return sa.case((found, sa.func.split_part(s, const("@"), const(-1), type_=_STR)))


_OTHER: dict[str, Builder] = {
    "Avg": lambda a, d: sa.func.avg(to_double(a[0]), type_=_DBL),
    "Count": lambda a, d: sa.func.count(*a, type_=_BIG),
    "CountAll": lambda a, d: sa.func.count(type_=_BIG),
    "Countdistinct": lambda a, d: sa.func.count(sa.distinct(a[0]), type_=_BIG),
    "Max": lambda a, d: sa.func.max(a[0], type_=a[0].type),
    "Min": lambda a, d: sa.func.min(a[0], type_=a[0].type),
    "StdDev": _stddev,
    "Sum": lambda a, d: sa.func.sum(a[0], type_=a[0].type),
    "Distance": _distance,
    "Case": _case,
    "When": lambda a, d: WhenMarker(*a),
    "Else": lambda a, d: ElseMarker(*a),
    "ClearBit": lambda a, d: tpl("{0} & ~{1}", to_int(a[0], d), to_int(a[1], d), type_=_BIG),
    "SetBit": lambda a, d: tpl("{0} | {1}", to_int(a[0], d), to_int(a[1], d), type_=_BIG),
    "IsBitSet": lambda a, d: tpl("({0} & {1}) <> 0", to_int(a[0], d), to_int(a[1], d), type_=_BOOL),
    "Coalesce": _coalesce,
    "Decode": lambda a, d: sa.case((a[0] == a[1], a[2]), else_=a[3]),
    "GetEmailDomain": _email_domain,
    "Iif": lambda a, d: sa.case((as_condition(a[0]), a[1]), else_=a[2]),
    "IsEmptyString": lambda a, d: sa.case((is_empty(a[0]), a[1]), else_=a[2]),
    "NoNull": _no_null,
    "RowId": lambda a, d: sa.func.row_number(type_=_BIG).over(),
    "ToBoolean": _to_boolean,
    "newuuid": _new_uuid,
    "RowNum": _row_num,
    "PartitionBy": lambda a, d: PartitionMarker(*a),
    "OrderBy": lambda a, d: OrderMarker(*a),
    "Desc": lambda a, d: DescMarker(*a),
}

BUILDERS: dict[str, Builder] = {**_STRING, **_NUMERIC, **DATE_BUILDERS, **_OTHER}


def _check_markers(spec: FunctionSpec, args: Sequence[ColumnElement[Any]]) -> None:
    for arg in args:
        if isinstance(arg, Marker) and arg.parent != spec.name:
            raise _error(arg.function, f"Function '{arg.function}' can only be used inside {arg.parent}")


def build_function_sql(name: str, args: Sequence[Any], dialect_name: str) -> ColumnElement[Any]:
    """SQL for the XTK call `name(args)` on `dialect_name` ('sqlite', 'duckdb' or 'postgresql').

    Raises ExpressionError for an unknown function, a wrong argument count, a function that
    needs server context, or one that has no translation on the dialect.
    """
    spec = lookup(name)
    if spec is None:
        raise _error(name, f"Function '{name}' unknown")
    values = [coerce(a) for a in args]
    if not spec.accepts(len(values)):
        raise _error(spec.name, f"Function '{spec.name}' expects {arity_text(spec)}, got {len(values)}")
    if dialect_name not in DIALECTS:
        raise _error(spec.name, f"SQL dialect '{dialect_name}' is not supported")
    if not spec.sql:
        raise _error(spec.name, f"Function '{spec.name}' cannot be translated to SQL ({spec.description.lower()})")
    reason = UNSUPPORTED.get(spec.name, {}).get(dialect_name)
    if reason:
        raise _error(spec.name, f"Function '{spec.name}' is not available on {dialect_name}: {reason}")
    _check_markers(spec, values)
    return BUILDERS[spec.name](values, dialect_name)
