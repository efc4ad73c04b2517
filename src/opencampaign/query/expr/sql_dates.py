"""SQL translations of the XTK date functions.

Timestamps are naive UTC `TIMESTAMP`, dates `DATE`. Arithmetic is done on integer
microseconds wherever possible so the three engines agree to the microsecond; on SQLite the
work is done by the Python helpers of sqlite_udf.py (SQLite date functions drop microseconds
and do not clamp month ends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from .sql_common import const, fn, is_date, is_datetime, is_integer, to_double, to_int, to_string, tpl

Args = list[ColumnElement[Any]]
Builder = Callable[[Args, str], ColumnElement[Any]]

US_PER = {"second": 1_000_000, "minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
_DT = sa.DateTime()
_INT = sa.Integer()
_BIG = sa.BigInteger()


def ts(x: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    """The value as a TIMESTAMP (SQLite keeps text; its helpers parse it)."""
    if d == "sqlite" or is_datetime(x):
        return x
    return sa.cast(x, sa.DateTime())


def now(d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return tpl("CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP)", type_=_DT)
    if d == "duckdb":  # epoch_us of an instant does not depend on the session time zone
        return tpl("make_timestamp(epoch_us(now()))", type_=_DT)
    return tpl("strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'", type_=_DT)


def epoch_us(t: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return tpl("CAST(extract(epoch FROM {0}) * 1000000 AS BIGINT)", t, type_=_BIG)
    return tpl("epoch_us({0})", t, type_=_BIG)


def from_epoch_us(us: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return tpl(
            "TIMESTAMP '1970-01-01' + ({0} / 86400000000) * INTERVAL '1 day'"
            " + ({0} % 86400000000) * INTERVAL '1 microsecond'",
            us,
            type_=_DT,
        )
    return tpl("make_timestamp({0})", us, type_=_DT)


def add_us(t: ColumnElement[Any], us: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "postgresql":  # split so the interval factors stay exact as float8
        return tpl(
            "{0} + ({1} / 86400000000) * INTERVAL '1 day' + ({1} % 86400000000) * INTERVAL '1 microsecond'",
            t,
            us,
            type_=_DT,
        )
    if d == "duckdb":
        return tpl("{0} + to_microseconds({1})", t, us, type_=_DT)
    return sa.func.oc_add_us(t, us, type_=_DT)


def add_months(t: ColumnElement[Any], months: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return tpl("{0} + {1} * INTERVAL '1 month'", t, months, type_=_DT)
    if d == "duckdb":
        return tpl("{0} + to_months({1})", t, months, type_=_DT)
    return sa.func.oc_add_months(t, months, type_=_DT)


def to_date(t: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    return sa.func.oc_to_date(t, type_=sa.Date()) if d == "sqlite" else sa.cast(t, sa.Date())


def trunc_unit(t: ColumnElement[Any], unit: str, d: str) -> ColumnElement[Any]:
    if d == "sqlite":
        return sa.func.oc_trunc(t, const(unit), type_=_DT)
    return tpl(f"date_trunc('{unit}', {{0}})", t, type_=_DT)


def part(t: ColumnElement[Any], name: str, d: str) -> ColumnElement[Any]:
    """Integer field of a timestamp: year, month, day, hour, minute, second, doy, weekday, yearmonth."""
    if d == "sqlite":
        return sa.func.oc_part(t, const(name), type_=_INT)
    if name == "weekday":
        return tpl("CAST(extract(isodow FROM {0}) AS INTEGER) - 1", t, type_=_INT)
    if name == "yearmonth":
        return tpl("CAST(extract(year FROM {0}) * 100 + extract(month FROM {0}) AS INTEGER)", t, type_=_INT)
    return tpl(f"CAST(floor(extract({name} FROM {{0}})) AS INTEGER)", t, type_=_INT)


def diff_us(end: ColumnElement[Any], start: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "postgresql":
        return tpl("CAST(extract(epoch FROM {0} - {1}) * 1000000 AS BIGINT)", end, start, type_=_BIG)
    if d == "duckdb":
        return tpl("date_diff('microsecond', {1}, {0})", end, start, type_=_BIG)
    return sa.func.oc_diff_us(end, start, type_=_BIG)


def int_div(x: ColumnElement[Any], divisor: int, d: str) -> ColumnElement[Any]:
    """Integer division truncating toward zero (DuckDB's `/` is a float division)."""
    op = "//" if d == "duckdb" else "/"
    return tpl(f"{{0}} {op} {int(divisor)}", x, type_=_BIG)


def months_diff(end: ColumnElement[Any], start: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    if d == "sqlite":
        return sa.func.oc_months_diff(end, start, type_=_INT)
    if d == "postgresql":
        rest = "extract(epoch FROM {0} - date_trunc('month', {0}))"
    else:
        rest = "date_diff('microsecond', date_trunc('month', {0}), {0})"
    rest_end, rest_start = rest.format("{0}"), rest.format("{1}")
    months = "((extract(year FROM {0}) - extract(year FROM {1})) * 12 + extract(month FROM {0}) - extract(month FROM {1}))"
    template = (
        f"CAST(CASE WHEN {months} > 0 AND {rest_end} < {rest_start} THEN {months} - 1"
        f" WHEN {months} < 0 AND {rest_end} > {rest_start} THEN {months} + 1 ELSE {months} END AS INTEGER)"
    )
    return tpl(template, end, start, type_=_INT)


def amount_us(n: ColumnElement[Any], unit: str, d: str) -> ColumnElement[Any]:
    """n units as integer microseconds (fractions rounded half up to the microsecond)."""
    per = const(US_PER[unit])
    if is_integer(n):
        return sa.cast(n, sa.BigInteger()) * per
    scaled = to_double(n) * const(float(US_PER[unit]))
    rounded = fn(d, "oc_floor", "floor", scaled + const(0.5), type_=sa.Double())
    return sa.cast(rounded, sa.BigInteger())


def trunc_seconds(t: ColumnElement[Any], n: ColumnElement[Any], d: str) -> ColumnElement[Any]:
    """Floor to a multiple of n seconds since 1970 (null for n <= 0)."""
    us = epoch_us(t, d)
    m = sa.case((to_int(n, d) > const(0), to_int(n, d) * const(1_000_000)))
    floored = tpl("{0} - (({0} % {1}) + {1}) % {1}", us, m, type_=_BIG)
    return from_epoch_us(floored, d)


# -- builders ------------------------------------------------------------------------------------


def _adder(unit: str, sign: int) -> Builder:
    def build(a: Args, d: str) -> ColumnElement[Any]:
        date_only = is_date(a[0])
        n = a[1] if sign > 0 else -a[1]
        t = ts(a[0], d)
        if unit in ("month", "year"):
            months = to_int(n, d, big=False)
            result = add_months(t, months * const(12) if unit == "year" else months, d)
        else:
            result = add_us(t, amount_us(n, unit, d), d)
        return to_date(result, d) if date_only and unit in ("day", "month", "year") else result

    return build


def _part(name: str) -> Builder:
    return lambda a, d: part(ts(a[0], d), name, d)


def _diff(unit: str) -> Builder:
    def build(a: Args, d: str) -> ColumnElement[Any]:
        end, start = ts(a[0], d), ts(a[1], d)
        if unit == "month":
            return months_diff(end, start, d)
        if unit == "year":
            return int_div(months_diff(end, start, d), 12, d)
        return int_div(diff_us(end, start, d), US_PER[unit], d)

    return build


def _old(unit: str) -> Builder:
    diff = _diff(unit)
    return lambda a, d: diff([now(d), a[0]], d)


def _trunc(unit: str) -> Builder:
    return lambda a, d: trunc_unit(ts(a[0], d), unit, d)


def _days_ago(a: Args, d: str) -> ColumnElement[Any]:
    return add_us(trunc_unit(now(d), "day", d), amount_us(-a[0], "day", d), d)


def _months_ago(a: Args, d: str) -> ColumnElement[Any]:
    return add_months(trunc_unit(now(d), "day", d), -to_int(a[0], d, big=False), d)


def _days_ago_int(a: Args, d: str) -> ColumnElement[Any]:
    day = _days_ago(a, d)
    return part(day, "year", d) * const(10000) + part(day, "month", d) * const(100) + part(day, "day", d)


def _to_datetime(a: Args, d: str) -> ColumnElement[Any]:
    s = to_string(a[0])
    return sa.func.oc_to_datetime(s, type_=_DT) if d == "sqlite" else sa.cast(s, sa.DateTime())


def _trunc_date(a: Args, d: str) -> ColumnElement[Any]:
    t = ts(a[0], d)
    if d == "sqlite":
        return sa.func.oc_trunc_secs(t, to_int(a[1], d), sa.null(), type_=_DT)
    return trunc_seconds(t, a[1], d)


def _trunc_date_tz(a: Args, d: str) -> ColumnElement[Any]:
    t, zone = ts(a[0], d), to_string(a[2])
    if d == "sqlite":
        return sa.func.oc_trunc_secs(t, to_int(a[1], d), zone, type_=_DT)
    if d == "postgresql":
        local = tpl("({0} AT TIME ZONE 'UTC') AT TIME ZONE {1}", t, zone, type_=_DT)
        return tpl("({0} AT TIME ZONE {1}) AT TIME ZONE 'UTC'", trunc_seconds(local, a[1], d), zone, type_=_DT)
    local = tpl("timezone({1}, timezone('UTC', {0}))", t, zone, type_=_DT)
    return tpl("timezone('UTC', timezone({1}, {0}))", trunc_seconds(local, a[1], d), zone, type_=_DT)


def _trunc_time(a: Args, d: str) -> ColumnElement[Any]:
    t = ts(a[0], d)
    if d == "sqlite":
        return sa.func.oc_trunc_time(t, to_int(a[1], d), type_=_DT)
    us, day_us = epoch_us(t, d), epoch_us(trunc_unit(t, "day", d), d)
    m = sa.case((to_int(a[1], d) > const(0), to_int(a[1], d) * const(1_000_000)))
    return from_epoch_us(tpl("{0} - ({0} - {1}) % {2}", us, day_us, m, type_=_BIG), d)


DATE_BUILDERS: dict[str, Builder] = {
    "GetDate": lambda a, d: now(d),
    "DateOnly": lambda a, d: trunc_unit(ts(a[0], d), "day", d),
    "ToDate": lambda a, d: to_date(ts(a[0], d), d),
    "ToDateTime": _to_datetime,
    "DaysAgo": _days_ago,
    "DaysAgoInt": _days_ago_int,
    "MonthsAgo": _months_ago,
    "TruncDate": _trunc_date,
    "TruncDateTZ": _trunc_date_tz,
    "TruncTime": _trunc_time,
    "TruncWeek": _trunc("week"),
    "TruncQuarter": _trunc("quarter"),
    "TruncYear": _trunc("year"),
    "Year": _part("year"),
    "Month": _part("month"),
    "Day": _part("day"),
    "Hour": _part("hour"),
    "Minute": _part("minute"),
    "Second": _part("second"),
    "DayOfYear": _part("doy"),
    "WeekDay": _part("weekday"),
    "YearAndMonth": _part("yearmonth"),
    "SecondsDiff": _diff("second"),
    "MinutesDiff": _diff("minute"),
    "HoursDiff": _diff("hour"),
    "DaysDiff": _diff("day"),
    "MonthsDiff": _diff("month"),
    "YearsDiff": _diff("year"),
    "DaysOld": _old("day"),
    "MonthsOld": _old("month"),
    "YearsOld": _old("year"),
}
for _unit in ("second", "minute", "hour", "day", "month", "year"):
    _name = _unit.capitalize() + "s"
    DATE_BUILDERS["Add" + _name] = _adder(_unit, +1)
    DATE_BUILDERS["Sub" + _name] = _adder(_unit, -1)
