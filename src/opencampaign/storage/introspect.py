"""What tables, columns and indexes a live database has (for `updatedb`).

Written against each engine's catalog directly: duckdb-engine's SQLAlchemy reflection does not
report indexes, and the catalogs answer faster than the generic inspector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa


@dataclass
class LiveTable:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # lower name -> declared type
    indexes: set[str] = field(default_factory=set)  # lower names


def introspect(conn: sa.Connection) -> dict[str, LiveTable]:
    dialect = conn.dialect.name
    tables: dict[str, LiveTable] = {}
    if dialect == "sqlite":
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
            live = tables.setdefault(name.lower(), LiveTable(name))
            for row in conn.exec_driver_sql(f"PRAGMA table_info(\"{name}\")"):
                live.columns[row[1].lower()] = row[2]
        for name, table in conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master WHERE type='index'"):
            if table.lower() in tables:
                tables[table.lower()].indexes.add(name.lower())
        return tables
    schema_filter = "table_schema = current_schema()"
    rows = conn.exec_driver_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE {schema_filter} ORDER BY table_name, ordinal_position"
    )
    for table, column, data_type in rows:
        tables.setdefault(table.lower(), LiveTable(table)).columns[column.lower()] = data_type
    for (table,) in conn.exec_driver_sql(
        f"SELECT table_name FROM information_schema.tables WHERE {schema_filter} AND table_type = 'BASE TABLE'"
    ):
        tables.setdefault(table.lower(), LiveTable(table))
    if dialect == "postgresql":
        index_rows = conn.exec_driver_sql(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()")
    elif dialect == "duckdb":
        index_rows = conn.exec_driver_sql(
            "SELECT table_name, index_name FROM duckdb_indexes() WHERE schema_name = current_schema()")
    else:
        index_rows = []
    for table, index in index_rows:
        if table.lower() in tables:
            tables[table.lower()].indexes.add(index.lower())
    return tables
