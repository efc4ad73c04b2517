"""storage/pgraw.py against a real PostgreSQL: what libpq reads give is what psycopg gives, and
what it cannot read exactly goes back to the cursor (None)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from opencampaign.storage.pgraw import PreparedRead

from .conftest import PgDatabases


@pytest.fixture
def connection(pg_databases: PgDatabases) -> Iterator[Any]:
    import psycopg

    url = pg_databases.new().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table t (id int primary key, big bigint, small smallint, label text, code varchar(8), "
                     "fixed char(4), flag boolean, ratio double precision, real4 real, amount numeric(12, 3), "
                     "at timestamp, atz timestamptz, day date)")
        conn.execute("insert into t values (1, 9007199254740993, -3, 'ünï <&> \"q''', 'ab%', 'x', true, 0.1, "
                     "1.5, 12.345, '2024-02-29 13:14:15.123456', '2024-01-01 00:00:00+00', '2024-03-01'), "
                     "(2, null, null, null, null, null, false, 'NaN', null, null, '2000-01-01', null, null)")
        yield conn


def _cursor_rows(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


SELECT = ("SELECT id, big, small, label, code, fixed, flag, ratio, real4, amount, at FROM t "
          "WHERE id = %(key)s::INTEGER AND code LIKE %(pattern)s || '%%' OR id = %(key)s::INTEGER + 1")


def test_rows_are_what_the_cursor_gives(connection: Any):
    read = PreparedRead(SELECT)
    assert read.order == ["key", "pattern"] and b"$1" in read.sql and b"'%'" in read.sql
    params = {"key": 1, "pattern": "ab"}
    for _ in range(2):  # prepared on the first run, reused on the second
        found = read.run(connection, params)
        assert found is not None
        rows, description = found
        expected = _cursor_rows(connection, SELECT, params)
        assert str(rows) == str(expected)  # NaN != NaN: compared as text
        assert rows[0][3] == 'ünï <&> "q\'' and rows[0][1] == 9007199254740993 and rows[0][9] == Decimal("12.345")
        assert rows[0][10] == datetime(2024, 2, 29, 13, 14, 15, 123456) and rows[0][5] == "x   "
        assert [name for name, _ in description][:3] == ["id", "big", "small"]


def test_what_it_cannot_read_exactly_goes_to_the_cursor(connection: Any):
    timezone_column = PreparedRead("SELECT atz FROM t WHERE id = %(key)s::INTEGER")
    assert timezone_column.run(connection, {"key": 1}) is None and not timezone_column.usable
    read = PreparedRead("SELECT id FROM t WHERE day = %(day)s::DATE")
    assert read.run(connection, {"day": datetime(2024, 3, 1).date()}) is None  # a parameter type it does not write
    refused = PreparedRead("SELECT no_such_column FROM t WHERE id = %(key)s::INTEGER")
    assert refused.run(connection, {"key": 1}) is None  # the cursor raises the driver's error
    assert PreparedRead("SELECT id FROM t WHERE id = %(key)s::INTEGER").run(connection, {"key": 3}) == (
        [], [("id", 23)])
