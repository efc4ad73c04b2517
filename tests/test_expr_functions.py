"""XTK functions translated to SQL: same results on real SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import statistics
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencampaign.query.expr import FUNCTIONS, ExpressionError, build_function_sql, register_sqlite_functions
from opencampaign.query.expr.sqlite_udf import initcap, pg_float_text

PG_URL = os.environ.get("OPENCAMPAIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
S, N, F, B = sa.String(), sa.Integer(), sa.Double(), sa.Boolean()
D, T = sa.Date(), sa.DateTime()
TS = dt.datetime(2024, 1, 31, 10, 20, 30, 123456)  # a Wednesday


def _pg_engine() -> tuple[sa.Engine | None, str]:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable" here
        engine.dispose()
        return None, f"PostgreSQL at {PG_URL} is unreachable ({str(exc).splitlines()[0]})"
    return engine, ""


class Engines:
    def __init__(self) -> None:
        sqlite = sa.create_engine("sqlite://")
        sa.event.listen(sqlite, "connect", lambda conn, _record: register_sqlite_functions(conn))
        self.engines: dict[str, sa.Engine] = {"sqlite": sqlite, "duckdb": sa.create_engine("duckdb:///:memory:")}
        pg, self.pg_missing = _pg_engine()
        if pg is not None:
            self.engines["postgresql"] = pg
        self.conns = {name: e.connect() for name, e in self.engines.items()}

    def run(self, name: str, statement: Any) -> Any:
        conn = self.conns[name]
        try:
            return conn.execute(statement).all()
        finally:
            conn.rollback()  # read-only; also clears PostgreSQL's aborted state after an error

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        for engine in self.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    found = Engines()
    if found.pg_missing and os.environ.get("CI"):
        pytest.fail(found.pg_missing)
    yield found
    found.close()


def test_postgresql_is_compared(engines: Engines) -> None:
    if engines.pg_missing:
        pytest.skip(engines.pg_missing + ": results compared on SQLite and DuckDB only")


def _args(values: list[tuple[Any, Any]]) -> list[Any]:
    return [sa.literal(v, t) for v, t in values]


def evaluate(engines: Engines, name: str, values: list[tuple[Any, Any]]) -> dict[str, Any]:
    """{dialect: normalised result or ('error', type)}."""
    out: dict[str, Any] = {}
    for dialect in engines.engines:
        expr = build_function_sql(name, _args(values), dialect)
        try:
            out[dialect] = normalise(engines.run(dialect, sa.select(expr))[0][0])
        except sa.exc.DBAPIError as exc:
            out[dialect] = ("error", type(exc.orig).__name__)
    return out


def normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def same(a: Any, b: Any, tolerance: float) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance) if tolerance else a == b
    return a == b


def assert_identical(results: dict[str, Any], tolerance: float = 0.0) -> Any:
    first = next(iter(results.values()))
    assert all(same(first, v, tolerance) for v in results.values()), results
    return first


# -- table of scalar cases: (function, arguments, expected) -----------------------------------------

md5 = hashlib.md5
CASES: list[tuple[str, list[tuple[Any, Any]], Any]] = [
    # strings
    ("AllNonNull2", [("a", S), ("b", S)], 1),
    ("AllNonNull2", [("a", S), ("", S)], 0),
    ("AllNonNull2", [(1, N), (0, N)], 1),
    ("AllNonNull3", [("a", S), ("b", S), (None, S)], 0),
    ("Ascii", [("A", S)], 65),
    ("Ascii", [("é", S)], 233),
    ("Ascii", [("", S)], 0),
    ("Ascii", [(None, S)], None),
    ("Char", [(65, N)], "A"),
    ("Char", [(233, N)], "é"),
    ("Char", [("36", S)], "$"),  # as written by the SDK's escapeForLike
    ("Charindex", [("hello", S), ("ll", S)], 3),
    ("Charindex", [("hello", S), ("z", S)], 0),
    ("GetLine", [("a\nb\nc", S), (2, N)], "b"),
    ("GetLine", [("a\nb", S), (3, N)], ""),
    ("GetLine", [("a\nb", S), (0, N)], ""),
    ("GetLine", [("a\nb", S), (None, N)], None),
    ("IfEquals", [(1, N), (1, N), ("y", S), ("n", S)], "y"),
    ("IfEquals", [("a", S), ("b", S), ("y", S), ("n", S)], "n"),
    ("IsMemoNull", [(None, S)], 1),
    ("IsMemoNull", [("", S)], 1),
    ("IsMemoNull", [("x", S)], 0),
    ("JuxtWords", [("John", S), ("Doe", S)], "John Doe"),
    ("JuxtWords", [("", S), ("Doe", S)], "Doe"),
    ("JuxtWords", [("John", S), (None, S)], "John"),
    ("JuxtWords3", [("a", S), ("", S), ("c", S)], "a c"),
    ("JuxtWords3", [(None, S), (None, S), (None, S)], ""),
    ("LPad", [("7", S), (3, N), ("0", S)], "007"),
    ("LPad", [("hello", S), (3, N), ("*", S)], "hel"),
    ("LPad", [("ab", S), (5, N), ("", S)], "ab"),
    ("LPad", [("ab", S), (-1, N), ("x", S)], ""),
    ("RPad", [("ab", S), (5, N), ("xy", S)], "abxyx"),
    ("Left", [("hello", S), (2, N)], "he"),
    ("Left", [("hello", S), (-2, N)], ""),
    ("Left", [("hello", S), (10, N)], "hello"),
    ("Length", [("héllo", S)], 5),
    ("Length", [("", S)], 0),
    ("Lower", [("ÀBC Σ", S)], "àbc σ"),
    ("Upper", [("àbc ǆ", S)], "ÀBC Ǆ"),
    ("Ltrim", [("  a  ", S)], "a  "),
    ("Rtrim", [("  a  ", S)], "  a"),
    ("Md5Digest", [("hello", S)], md5(b"hello").hexdigest()),
    ("Md5Digest", [("é", S)], md5("é".encode()).hexdigest()),
    ("MemoContains", [("hello world", S), ("o w", S)], 1),
    ("MemoContains", [(None, S), ("x", S)], 0),
    ("Right", [("hello", S), (2, N)], "lo"),
    ("Right", [("hello", S), (9, N)], "hello"),
    ("Right", [("hello", S), (0, N)], ""),
    ("Smart", [("jean-pierre o'neil 3RD", S)], "Jean-Pierre O'Neil 3rd"),
    ("Smart", [("", S)], ""),
    ("Substring", [("hello", S), (2, N), (3, N)], "ell"),
    ("Substring", [("hello", S), (0, N), (2, N)], "he"),
    ("Substring", [("hello", S), (4, N), (10, N)], "lo"),
    ("Substring", [("hello", S), (2, N), (-1, N)], ""),
    ("ToString", [(42, N)], "42"),
    ("ToString", [(3.0, F)], "3"),
    ("ToString", [(0.1, F)], "0.1"),
    ("ToString", [(1e15, F)], "1e+15"),
    ("ToString", [(1234567890123456.8, F)], "1.2345678901234568e+15"),
    ("ToString", [(1e-5, F)], "1e-05"),
    ("ToString", [(-0.0, F)], "0"),
    ("ToString", [(123456.789, F)], "123456.789"),
    ("ToString", [(Decimal("1.50"), sa.Numeric(10, 2))], "1.5"),
    ("ToString", [(True, B)], "1"),
    ("ToString", [("x", S)], "x"),
    ("ToString", [(2.675, F), (2, N)], "2.68"),
    ("ToString", [(1.5, F), (3, N)], "1.500"),
    ("ToString", [(-1.25, F), (1, N)], "-1.3"),
    ("ToString", [(-0.001, F), (2, N)], "0.00"),
    ("VirtualLink", [(42, N), (1, N), (1, N)], 42),
    ("VirtualLink", [(42, N), (1, N), (2, N)], 0),
    ("VirtualLinkStr", [("k", S), (1, N), (2, N)], ""),
    ("dataLength", [("héllo", S)], 6),
    # numbers
    ("Abs", [(-3, N)], 3),
    ("Abs", [(-2.5, F)], 2.5),
    ("Ceil", [(1.2, F)], 2.0),
    ("Ceil", [(-1.2, F)], -1.0),
    ("Floor", [(1.8, F)], 1.0),
    ("Floor", [(-1.2, F)], -2.0),
    ("Greatest", [(1, N), (5, N), (3, N)], 5),
    ("Greatest", [(None, N), (2, N)], 2),
    ("Greatest", [("a", S), ("B", S)], "a"),
    ("Least", [(4, N), (None, N), (2, N)], 2),
    ("Least", [(None, N), (None, N)], None),
    ("Mod", [(7, N), (3, N)], 1),
    ("Mod", [(-7, N), (3, N)], -1),
    ("Mod", [(7, N), (0, N)], None),
    ("Mod", [(7.9, F), (3, N)], 1),
    ("Percent", [(1, N), (4, N)], 25.0),
    ("Percent", [(1, N), (3, N)], 100 / 3),
    ("Percent", [(1, N), (0, N)], None),
    ("Random", [], None),
    ("Round", [(2.5, F)], 3.0),
    ("Round", [(-2.5, F)], -3.0),
    ("Round", [(2.675, F), (2, N)], 2.68),
    ("Round", [(1234.5, F), (-2, N)], 1200.0),
    ("Round", [(-0.001, F), (2, N)], 0.0),
    ("Round", [(7, N), (1, N)], 7.0),
    ("Sign", [(-2.5, F)], -1),
    ("Sign", [(0, N)], 0),
    ("Sign", [(7, N)], 1),
    ("Sign", [(None, N)], None),
    ("ToDouble", [(3, N)], 3.0),
    ("ToDouble", [("1.5", S)], 1.5),
    ("ToInt64", [(-2.7, F)], -2),
    ("ToInt64", [(2.7, F)], 2),
    ("ToInt64", [("42", S)], 42),
    ("ToInt64", [(2**40, sa.BigInteger())], 2**40),
    ("ToInteger", [(3.9, F)], 3),
    ("Trunc", [(-2.678, F), (2, N)], -2.67),
    ("Trunc", [(2.9, F)], 2.0),
    ("Trunc", [(1299, N), (-2, N)], 1200.0),
    ("Distance", [(2.3522, F), (48.8566, F), (-0.1276, F), (51.5072, F)], 343.56),
    ("Distance", [(0, F), (0, F), (180, F), (0, F)], math.pi * 6371),
    # others
    ("ClearBit", [(7, N), (2, N)], 5),
    ("SetBit", [(5, N), (2, N)], 7),
    ("IsBitSet", [(5, N), (4, N)], 1),
    ("IsBitSet", [(5, N), (2, N)], 0),
    ("Coalesce", [(0, N), (9, N)], 9),
    ("Coalesce", [(3, N), (9, N)], 3),
    ("Coalesce", [(None, N), (9, N)], 9),
    ("Coalesce", [("", S), ("x", S)], "x"),
    ("Coalesce", [("a", S), ("x", S)], "a"),
    ("Decode", [(1, N), (1, N), ("y", S), ("n", S)], "y"),
    ("Decode", [(1, N), (2, N), ("y", S), ("n", S)], "n"),
    ("GetEmailDomain", [("john@example.com", S)], "example.com"),
    ("GetEmailDomain", [('"a@b"@c.org', S)], "c.org"),
    ("GetEmailDomain", [("nobody", S)], None),
    ("Iif", [(True, B), ("a", S), ("b", S)], "a"),
    ("Iif", [(0, N), ("a", S), ("b", S)], "b"),
    ("Iif", [("x", S), ("a", S), ("b", S)], "a"),
    ("Iif", [("", S), ("a", S), ("b", S)], "b"),
    ("IsEmptyString", [("", S), ("e", S), ("n", S)], "e"),
    ("IsEmptyString", [("x", S), ("e", S), ("n", S)], "n"),
    ("NoNull", [(None, S)], ""),
    ("NoNull", [(None, N)], 0),
    ("NoNull", [("x", S)], "x"),
    ("ToBoolean", [(2, N)], 1),
    ("ToBoolean", [(0, N)], 0),
    ("ToBoolean", [(None, N)], 0),
    ("newuuid", [], None),
    # dates (timestamps are naive UTC)
    ("AddDays", [(TS, T), (1, N)], dt.datetime(2024, 2, 1, 10, 20, 30, 123456)),
    ("AddDays", [(TS, T), (1.5, F)], dt.datetime(2024, 2, 1, 22, 20, 30, 123456)),
    ("AddDays", [(TS, T), (-31, N)], dt.datetime(2023, 12, 31, 10, 20, 30, 123456)),
    ("AddDays", [(dt.date(2024, 2, 28), D), (1, N)], dt.date(2024, 2, 29)),
    ("AddHours", [(TS, T), (2, N)], dt.datetime(2024, 1, 31, 12, 20, 30, 123456)),
    ("AddMinutes", [(TS, T), (-30, N)], dt.datetime(2024, 1, 31, 9, 50, 30, 123456)),
    ("AddSeconds", [(TS, T), (0.5, F)], dt.datetime(2024, 1, 31, 10, 20, 30, 623456)),
    ("AddSeconds", [(TS, T), (1e-6, F)], dt.datetime(2024, 1, 31, 10, 20, 30, 123457)),
    ("AddMonths", [(TS, T), (1, N)], dt.datetime(2024, 2, 29, 10, 20, 30, 123456)),
    ("AddMonths", [(dt.date(2024, 1, 31), D), (1, N)], dt.date(2024, 2, 29)),
    ("AddYears", [(dt.datetime(2024, 2, 29), T), (1, N)], dt.datetime(2025, 2, 28)),
    ("SubDays", [(TS, T), (31, N)], dt.datetime(2023, 12, 31, 10, 20, 30, 123456)),
    ("SubHours", [(TS, T), (11, N)], dt.datetime(2024, 1, 30, 23, 20, 30, 123456)),
    ("SubMinutes", [(TS, T), (21, N)], dt.datetime(2024, 1, 31, 9, 59, 30, 123456)),
    ("SubSeconds", [(TS, T), (31, N)], dt.datetime(2024, 1, 31, 10, 19, 59, 123456)),
    ("SubMonths", [(dt.datetime(2024, 3, 31), T), (1, N)], dt.datetime(2024, 2, 29)),
    ("SubYears", [(dt.date(2024, 2, 29), D), (4, N)], dt.date(2020, 2, 29)),
    ("DateOnly", [(TS, T)], dt.datetime(2024, 1, 31)),
    ("DateOnly", [(dt.date(2024, 1, 31), D)], dt.datetime(2024, 1, 31)),
    ("ToDate", [(TS, T)], dt.date(2024, 1, 31)),
    ("ToDateTime", [("2021-07-07 10:03:33", S)], dt.datetime(2021, 7, 7, 10, 3, 33)),
    ("ToDateTime", [("2021-07-07T10:03:33.332Z", S)], dt.datetime(2021, 7, 7, 10, 3, 33, 332000)),
    ("ToDateTime", [("2021-07-07", S)], dt.datetime(2021, 7, 7)),
    ("Year", [(TS, T)], 2024),
    ("Month", [(TS, T)], 1),
    ("Day", [(TS, T)], 31),
    ("Hour", [(TS, T)], 10),
    ("Minute", [(TS, T)], 20),
    ("Second", [(TS, T)], 30),
    ("DayOfYear", [(dt.date(2024, 12, 31), D)], 366),
    ("WeekDay", [(TS, T)], 2),
    ("WeekDay", [(dt.date(2024, 2, 4), D)], 6),
    ("YearAndMonth", [(TS, T)], 202401),
    ("DaysDiff", [(TS, T), (dt.datetime(2024, 1, 1), T)], 30),
    ("DaysDiff", [(dt.datetime(2024, 1, 1), T), (TS, T)], -30),
    ("DaysDiff", [(dt.date(2024, 3, 1), D), (dt.date(2024, 2, 1), D)], 29),
    ("HoursDiff", [(TS, T), (dt.datetime(2024, 1, 31, 0, 30), T)], 9),
    ("MinutesDiff", [(TS, T), (dt.datetime(2024, 1, 31, 10, 0, 31), T)], 19),
    ("SecondsDiff", [(TS, T), (dt.datetime(2024, 1, 31, 10, 20, 31), T)], 0),
    ("SecondsDiff", [(dt.datetime(2024, 1, 1), T), (TS, T)], -2629230),
    ("MonthsDiff", [(dt.datetime(2024, 2, 29), T), (dt.datetime(2024, 1, 31), T)], 0),
    ("MonthsDiff", [(dt.datetime(2024, 3, 31), T), (dt.datetime(2024, 1, 31), T)], 2),
    ("MonthsDiff", [(dt.datetime(2024, 1, 1), T), (dt.datetime(2024, 3, 15), T)], -2),
    ("YearsDiff", [(dt.date(2024, 2, 28), D), (dt.date(2000, 2, 29), D)], 23),
    ("YearsDiff", [(dt.date(2024, 2, 29), D), (dt.date(2000, 2, 29), D)], 24),
    ("YearsDiff", [(dt.date(2000, 2, 29), D), (dt.date(2024, 3, 1), D)], -24),
    ("TruncDate", [(TS, T), (3600, N)], dt.datetime(2024, 1, 31, 10)),
    ("TruncDate", [(dt.datetime(1969, 12, 31, 23, 30), T), (3600, N)], dt.datetime(1969, 12, 31, 23)),
    ("TruncDate", [(TS, T), (0, N)], None),
    ("TruncDateTZ", [(TS, T), (86400, N), ("Europe/Paris", S)], dt.datetime(2024, 1, 30, 23)),
    ("TruncDateTZ", [(dt.datetime(2024, 10, 27, 0, 30), T), (3600, N), ("Europe/Paris", S)],
     dt.datetime(2024, 10, 27, 1)),  # 02:30 CEST floors to 02:00, read as the later (CET) 02:00
    ("TruncDateTZ", [(dt.datetime(2024, 3, 31, 1, 30), T), (7200, N), ("Europe/Paris", S)],
     dt.datetime(2024, 3, 31, 1)),  # 03:30 CEST floors to 02:00, a skipped wall time
    ("TruncQuarter", [(dt.datetime(2024, 5, 15, 8), T)], dt.datetime(2024, 4, 1)),
    ("TruncWeek", [(TS, T)], dt.datetime(2024, 1, 29)),
    ("TruncYear", [(TS, T)], dt.datetime(2024, 1, 1)),
    ("TruncTime", [(TS, T), (600, N)], dt.datetime(2024, 1, 31, 10, 20)),
]


@pytest.mark.parametrize(("name", "values", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_function_results(engines: Engines, name: str, values: list[tuple[Any, Any]], expected: Any) -> None:
    results = evaluate(engines, name, values)
    if name in ("Random", "newuuid"):
        for value in results.values():
            if name == "Random":
                assert isinstance(value, float) and 0 <= value < 1
            else:
                assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)
        return
    tolerance = 1e-3 if name == "Distance" and expected == 343.56 else 0.0
    got = assert_identical(results, 1e-12 if name == "Distance" else 0.0)
    assert same(got, expected, tolerance), (got, expected)
    assert type(got) is type(expected) or expected is None or isinstance(got, (int, float)), (got, expected)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def test_now_relative_functions(engines: Engines) -> None:
    before = _utc_now()
    birth = dt.date(2000, 5, 5)
    results = {
        "GetDate": evaluate(engines, "GetDate", []),
        "DaysAgo": evaluate(engines, "DaysAgo", [(2, N)]),
        "DaysAgoInt": evaluate(engines, "DaysAgoInt", [(2, N)]),
        "MonthsAgo": evaluate(engines, "MonthsAgo", [(1, N)]),
        "DaysOld": evaluate(engines, "DaysOld", [(birth, D)]),
        "MonthsOld": evaluate(engines, "MonthsOld", [(birth, D)]),
        "YearsOld": evaluate(engines, "YearsOld", [(birth, D)]),
    }
    after = _utc_now()
    for now in {before, after}:
        today = dt.datetime(now.year, now.month, now.day)
        ago = today - dt.timedelta(days=2)
        month = (today.month - 2) % 12 + 1
        year = today.year - (1 if today.month == 1 else 0)
        month_ago = today.replace(year=year, month=month, day=min(today.day, [31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]))
        months_old = (now.year - 2000) * 12 + now.month - 5 - (1 if (now.day, now.time()) < (5, dt.time()) else 0)
        expected = {
            "DaysAgo": ago,
            "DaysAgoInt": ago.year * 10000 + ago.month * 100 + ago.day,
            "MonthsAgo": month_ago,
            "DaysOld": (now - dt.datetime(2000, 5, 5)).days,
            "MonthsOld": months_old,
            "YearsOld": months_old // 12,
        }
        if all(assert_identical(results[k]) == v for k, v in expected.items()):
            break
    else:
        pytest.fail(f"{results} != {expected}")
    for value in results["GetDate"].values():
        assert before - dt.timedelta(seconds=1) <= value <= after + dt.timedelta(seconds=1)
        assert value.tzinfo is None


# -- aggregates and windows -------------------------------------------------------------------------


def _rows(values: list[tuple[Any, ...]], types: list[Any]) -> sa.Subquery:
    selects = [
        sa.select(*[sa.literal(v, t).label(f"c{i}") for i, (v, t) in enumerate(zip(row, types, strict=True))])
        for row in values
    ]
    return sa.union_all(*selects).subquery("t")


AGGREGATES = [
    ("Avg", 2.5),
    ("Count", 4),
    ("CountAll", 5),
    ("Countdistinct", 3),
    ("Max", 5),
    ("Min", 1),
    ("StdDev", statistics.stdev([1, 2, 2, 5])),
    ("Sum", 10),
]


@pytest.mark.parametrize(("name", "expected"), AGGREGATES)
def test_aggregates(engines: Engines, name: str, expected: Any) -> None:
    results = {}
    for dialect in engines.engines:
        t = _rows([(1,), (2,), (2,), (None,), (5,)], [N])
        args = [] if name == "CountAll" else [t.c.c0]
        expr = build_function_sql(name, args, dialect)
        results[dialect] = normalise(engines.run(dialect, sa.select(expr).select_from(t))[0][0])
    got = assert_identical(results, 1e-12)
    assert same(got, expected, 1e-12)


def test_count_without_argument_counts_rows(engines: Engines) -> None:
    for dialect in engines.engines:
        t = _rows([(None,), (None,)], [N])
        assert engines.run(dialect, sa.select(build_function_sql("Count", [], dialect)).select_from(t))[0][0] == 2


def test_min_max_keep_dates(engines: Engines) -> None:
    for dialect in engines.engines:
        t = _rows([(dt.datetime(2024, 1, 2),), (dt.datetime(2023, 5, 6, 7, 8, 9, 10),)], [T])
        expr = build_function_sql("Min", [t.c.c0], dialect)
        assert engines.run(dialect, sa.select(expr).select_from(t))[0][0] == dt.datetime(2023, 5, 6, 7, 8, 9, 10)


def test_row_num_and_row_id(engines: Engines) -> None:
    expected = [("a", 1, 2), ("a", 3, 1), ("b", 2, 1)]
    for dialect in engines.engines:
        t = _rows([("a", 1), ("b", 2), ("a", 3)], [S, N])

        def f(name: str, *args: Any, dialect: str = dialect) -> Any:
            return build_function_sql(name, list(args), dialect)

        row_num = f("RowNum", f("PartitionBy", t.c.c0), f("OrderBy", f("Desc", t.c.c1)))
        rows = engines.run(dialect, sa.select(t.c.c0, t.c.c1, row_num).order_by(t.c.c0, t.c.c1))
        assert [tuple(r) for r in rows] == expected, dialect
        ids = engines.run(dialect, sa.select(f("RowId")).select_from(t))
        assert sorted(r[0] for r in ids) == [1, 2, 3]
        plain = engines.run(dialect, sa.select(f("RowNum", f("OrderBy", t.c.c1))).select_from(t))
        assert sorted(r[0] for r in plain) == [1, 2, 3]


def test_case_when_else(engines: Engines) -> None:
    for dialect in engines.engines:
        t = _rows([(1,), (2,), (3,)], [N])

        def f(name: str, *args: Any, dialect: str = dialect) -> Any:
            return build_function_sql(name, list(args), dialect)

        expr = f("Case", f("When", t.c.c0 == 1, "one"), f("When", t.c.c0 == 2, "two"), f("Else", "many"))
        rows = engines.run(dialect, sa.select(expr).select_from(t).order_by(t.c.c0))
        assert [r[0] for r in rows] == ["one", "two", "many"]
        no_else = f("Case", f("When", t.c.c0 == 1, "one"))
        rows = engines.run(dialect, sa.select(no_else).select_from(t).order_by(t.c.c0))
        assert [r[0] for r in rows] == ["one", None, None]


# -- catalogue coverage and errors ----------------------------------------------------------------

COVERED_ELSEWHERE = {name for name, _ in AGGREGATES} | {
    "GetDate", "DaysAgo", "DaysAgoInt", "MonthsAgo", "DaysOld", "MonthsOld", "YearsOld",
    "RowNum", "RowId", "Case", "When", "Else", "PartitionBy", "OrderBy", "Desc",
}


def test_every_sql_function_is_tested() -> None:
    wanted = {spec.name for spec in FUNCTIONS.values() if spec.sql}
    tested = {c[0] for c in CASES} | COVERED_ELSEWHERE
    assert wanted - tested == set()


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb", "postgresql"])
def test_errors(dialect: str) -> None:
    with pytest.raises(ExpressionError, match="Function 'Foo' unknown") as info:
        build_function_sql("Foo", [], dialect)
    assert str(info.value).endswith("XTK-170036 Unable to parse expression 'Foo(...)'.")
    with pytest.raises(ExpressionError, match=r"Function 'Left' expects 2 argument\(s\), got 1"):
        build_function_sql("left", [sa.literal("x")], dialect)
    with pytest.raises(ExpressionError, match="Function 'HasNamedRight' cannot be translated to SQL"):
        build_function_sql("HasNamedRight", ["admin"], dialect)
    with pytest.raises(ExpressionError, match="ConvertCurrency"):
        build_function_sql("ConvertCurrency", [1, "EUR", "USD", dt.date(2024, 1, 1)], dialect)
    when = build_function_sql("When", [sa.true(), 1], dialect)
    with pytest.raises(ExpressionError, match="Function 'When' can only be used inside Case"):
        build_function_sql("Iif", [when, 1, 2], dialect)
    with pytest.raises(ExpressionError, match="can only be used inside Case"):
        sa.select(when).compile(dialect=sa.create_engine("sqlite://").dialect)
    with pytest.raises(ExpressionError, match="Function 'Case' expects When"):
        build_function_sql("Case", [1], dialect)
    with pytest.raises(ExpressionError, match="Function 'Desc' can only be used inside OrderBy"):
        build_function_sql("PartitionBy", [build_function_sql("Desc", [1], dialect)], dialect)
    order = build_function_sql("OrderBy", [1], dialect)
    with pytest.raises(ExpressionError, match="at most one"):
        build_function_sql("RowNum", [order, order], dialect)


def test_unknown_dialect() -> None:
    with pytest.raises(ExpressionError, match="SQL dialect 'oracle' is not supported"):
        build_function_sql("Lower", ["x"], "oracle")


HOSTILE = "x'); DROP TABLE t; --"


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb", "postgresql"])
@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("Left", [(HOSTILE, S), (2, N)]),
        ("Smart", [(HOSTILE, S)]),
        ("ToString", [(1.5, F), (2, N)]),
        ("TruncDateTZ", [(TS, T), (3600, N), (HOSTILE, S)]),
        ("Iif", [(HOSTILE, S), (HOSTILE, S), ("b", S)]),
    ],
)
def test_constants_stay_bound_parameters(dialect: str, name: str, values: list[tuple[Any, Any]]) -> None:
    engine_dialects = {
        "sqlite": sa.create_engine("sqlite://").dialect,
        "duckdb": sa.create_engine("duckdb:///:memory:").dialect,
        "postgresql": sa.create_engine(PG_URL).dialect,
    }
    compiled = sa.select(build_function_sql(name, _args(values), dialect)).compile(dialect=engine_dialects[dialect])
    assert HOSTILE not in str(compiled) and "DROP" not in str(compiled)
    assert "2.675" not in str(compiled) and "'b'" not in str(compiled)
    assert any(v == HOSTILE or v == 1.5 for v in compiled.params.values())


def test_sqlite_helpers_are_idempotent() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    register_sqlite_functions(conn)
    register_sqlite_functions(conn)
    assert conn.execute("SELECT oc_lpad('1', 3, '0'), oc_md5('a'), oc_initcap('ab cd')").fetchone() == (
        "001", md5(b"a").hexdigest(), "Ab Cd")
    assert conn.execute("SELECT oc_lpad(NULL, 3, '0'), oc_trunc_secs(NULL, 1, NULL)").fetchone() == (None, None)


# -- random literal arguments: identical results on every engine (strings, numbers, dates) --------

# Characters on which the engines' Unicode tables agree: letters, digits, punctuation, spaces,
# maths and currency symbols (PostgreSQL's glibc locale treats combining marks, superscripts
# and some symbols as alphanumeric in initcap; DuckDB upper-cases 'ß' to 'ẞ').
_TEXT = st.text(
    st.characters(
        whitelist_categories=("Lu", "Ll", "Lt", "Lo", "Nd", "Pc", "Pd", "Ps", "Pe", "Po", "Zs", "Sm", "Sc"),
        blacklist_characters="ß",
        max_codepoint=0x2FFFF,
    ),
    max_size=12,
)
_ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
_STRINGS = st.one_of(_ASCII, _TEXT, st.sampled_from(["", " ", "a@b.c", "x\ny\nz", "  pad  "]))
_SMALL = st.integers(-5, 30)
_INTS = st.integers(-(10**9), 10**9)
# PostgreSQL raises on float8 overflow/underflow where SQLite and DuckDB give inf/0: keep magnitudes sane.
_FLOATS = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False).filter(lambda v: v == 0 or abs(v) >= 1e-9)
_DECIMALISH = st.decimals(-10**6, 10**6, places=4, allow_nan=False, allow_infinity=False).map(float)
_NUMBERS = st.one_of(_INTS.map(lambda v: (v, N)), _FLOATS.map(lambda v: (v, F)), _DECIMALISH.map(lambda v: (v, F)))


def _s(strategy: st.SearchStrategy[Any] = _STRINGS) -> st.SearchStrategy[tuple[Any, Any]]:
    return strategy.map(lambda v: (v, S))


def _i(strategy: st.SearchStrategy[int] = _SMALL) -> st.SearchStrategy[tuple[Any, Any]]:
    return strategy.map(lambda v: (v, N))


RANDOM_SIGNATURES: dict[str, list[st.SearchStrategy[tuple[Any, Any]]]] = {
    "AllNonNull2": [_s(), _s()],
    "Ascii": [_s()],
    "Char": [_i(st.integers(1, 0xD7FF))],
    "Charindex": [_s(), _s(st.sampled_from(["", "a", "b", "@", " ", "é"]))],
    "GetLine": [_s(), _i()],
    "IsMemoNull": [_s()],
    "JuxtWords": [_s(), _s()],
    "JuxtWords3": [_s(), _s(), _s()],
    "LPad": [_s(), _i(), _s(st.sampled_from(["", "0", "ab", "é"]))],
    "RPad": [_s(), _i(), _s(st.sampled_from(["", "0", "ab", "é"]))],
    "Left": [_s(), _i()],
    "Right": [_s(), _i()],
    "Length": [_s()],
    "Lower": [_s()],
    "Upper": [_s()],
    "Ltrim": [_s()],
    "Rtrim": [_s()],
    "Md5Digest": [_s()],
    "MemoContains": [_s(), _s(st.sampled_from(["", "a", " ", "é"]))],
    "Smart": [_s()],
    "Substring": [_s(), _i(), _i()],
    "dataLength": [_s()],
    "GetEmailDomain": [_s()],
    "Abs": [_NUMBERS],
    "Ceil": [_NUMBERS],
    "Floor": [_NUMBERS],
    "Greatest": [_NUMBERS, _NUMBERS],
    "Least": [_NUMBERS, _NUMBERS],
    "Mod": [_NUMBERS, _i(st.integers(-1000, 1000))],
    "Percent": [_NUMBERS, _NUMBERS],
    "Round": [_NUMBERS, _i(st.integers(-5, 8))],
    "Trunc": [_NUMBERS, _i(st.integers(-5, 8))],
    "Sign": [_NUMBERS],
    "ToDouble": [_NUMBERS],
    "ToInt64": [_NUMBERS],
    "ToInteger": [_NUMBERS],
    "ToString": [_NUMBERS],
    "ToBoolean": [_NUMBERS],
    # coordinates with micro-degree precision (PostgreSQL raises on float underflow for absurdly close points)
    "Distance": [st.integers(-180_000_000, 180_000_000).map(lambda v: (v / 1e6, F)),
                 st.integers(-90_000_000, 90_000_000).map(lambda v: (v / 1e6, F))] * 2,
}

_TIMESTAMPS = st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 12, 31)).map(lambda v: (v, T))
_DATES = st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)).map(lambda v: (v, D))
_WHEN = st.one_of(_TIMESTAMPS, _DATES)
_AMOUNT = st.one_of(_i(st.integers(-5000, 5000)), st.floats(-5000, 5000).map(lambda v: (v, F)))
_SECONDS = _i(st.sampled_from([1, 7, 60, 900, 3600, 7200, 86400, 7 * 86400]))
_ZONES = _s(st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]))
_ISO = _TIMESTAMPS.map(lambda v: (v[0].isoformat(sep=" "), S))
RANDOM_SIGNATURES.update({
    **{f"{op}{unit}": [_WHEN, _AMOUNT] for op in ("Add", "Sub") for unit in ("Days", "Hours", "Minutes", "Seconds")},
    **{f"{op}Months": [_WHEN, _i(st.integers(-2400, 2400))] for op in ("Add", "Sub")},
    **{f"{op}Years": [_WHEN, _i(st.integers(-300, 300))] for op in ("Add", "Sub")},
    **{name: [_WHEN] for name in ("DateOnly", "ToDate", "Year", "Month", "Day", "Hour", "Minute", "Second",
                                  "DayOfYear", "WeekDay", "YearAndMonth", "TruncWeek", "TruncQuarter", "TruncYear")},
    **{f"{unit}Diff": [_WHEN, _WHEN] for unit in ("Seconds", "Minutes", "Hours", "Days", "Months", "Years")},
    "TruncDate": [_WHEN, _SECONDS],
    "TruncTime": [_WHEN, _SECONDS],
    "TruncDateTZ": [_WHEN, _SECONDS, _ZONES],
    "ToDateTime": [_ISO],
})


@pytest.mark.parametrize("name", sorted(RANDOM_SIGNATURES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_literals_give_identical_results(engines: Engines, name: str, data: st.DataObject) -> None:
    values = [data.draw(strategy) for strategy in RANDOM_SIGNATURES[name]]
    results = evaluate(engines, name, values)
    assert not any(isinstance(v, tuple) for v in results.values()), results
    assert_identical(results, 1e-12 if name == "Distance" else 0.0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_NUMBERS, digits=st.integers(0, 6))
def test_random_to_string_with_decimals(engines: Engines, value: tuple[Any, Any], digits: int) -> None:
    results = evaluate(engines, "ToString", [value, (digits, N)])
    text = assert_identical(results)
    assert re.fullmatch(r"-?\d+(\.\d+)?", text) and (digits == 0 or len(text.split(".")[1]) == digits)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(value: float) -> None:
    assert float(pg_float_text(value)) == value + 0.0


@given(_TEXT)
def test_initcap_is_idempotent(text: str) -> None:
    assert initcap(initcap(text)) == initcap(text)


def test_nested_round_sql_grows_linearly() -> None:
    """Round/Trunc/Sign use their argument once in SQL: 20 nested calls stay small on every dialect."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    from opencampaign.query.expr.sql_functions import build_function_sql

    dialects = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
    try:
        import duckdb_engine

        dialects["duckdb"] = duckdb_engine.Dialect()
    except ImportError:  # pragma: no cover
        pass
    for name, dialect in dialects.items():
        expr = sa.column("x", sa.Double)
        for i in range(20):
            expr = build_function_sql(("Round", "Trunc", "Sign")[i % 3], [expr + 1.5, sa.literal(2)][: 1 + (i % 3 < 2)], name)
        assert len(str(expr.compile(dialect=dialect))) < 40_000, name
