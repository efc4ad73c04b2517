"""`updatedb`: bring the live databases in line with the compiled schemas.

Like Campaign's "Update database structure" wizard it creates tables, adds columns and indexes,
and prints the SQL it runs. It never drops a table or column that holds data unless asked to
(`allow_drop`), and it only ever drops tables it created itself (recorded in XtkSchemaTable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from ..schema.ddl import physical
from .introspect import LiveTable, introspect
from .storage import MANAGED_TABLES, Storage


@dataclass
class Change:
    role: str
    kind: str  # create_table | add_column | create_index | drop_column | drop_table | drop_index
    table: str
    target: str
    statements: list[str] = field(default_factory=list)
    blocked: str | None = None  # why it is not applied (data would be lost)

    def describe(self) -> str:
        what = f"{self.kind} {self.table}" + (f".{self.target}" if self.target else "")
        return f"[{self.role}] {what}" + (f"  (skipped: {self.blocked})" if self.blocked else "")


def plan(storage: Storage, *, allow_drop: bool = False) -> list[Change]:
    changes: list[Change] = []
    for role in storage.roles:
        engine = storage.engine(role)
        with engine.connect() as conn:
            live = introspect(conn)
            managed = _managed_tables(conn, storage, role, live)
            changes.extend(_plan_role(conn, storage, role, live, managed, allow_drop))
    return changes


def _managed_tables(conn: sa.Connection, storage: Storage, role: str, live: dict[str, LiveTable]) -> dict[str, str]:
    table = storage.internal[(role, MANAGED_TABLES)]
    if table.name.lower() not in live:
        return {}
    return {row.sTableName.lower(): row.sSchemaId for row in conn.execute(sa.select(table))}


def _plan_role(conn: sa.Connection, storage: Storage, role: str, live: dict[str, LiveTable],
               managed: dict[str, str], allow_drop: bool) -> list[Change]:
    dialect = conn.dialect
    metadata = storage.metadata[role]
    changes: list[Change] = []
    wanted = {t.name.lower() for t in metadata.sorted_tables}
    # Internal tables first: creating a schema table records itself in XtkSchemaTable.
    for table in sorted(metadata.sorted_tables, key=lambda t: "schema_id" in t.info):
        current = live.get(table.name.lower())
        if current is None:
            statements = [str(CreateTable(table).compile(dialect=dialect)).strip()]
            statements += [str(CreateIndex(ix).compile(dialect=dialect)) for ix in sorted(table.indexes, key=lambda i: i.name)]
            changes.append(Change(role, "create_table", table.name, "", statements))
            continue
        preparer = dialect.identifier_preparer
        altered: list[Change] = []
        for column in table.columns:
            if column.name.lower() in current.columns:
                continue
            ddl = str(CreateColumn(column).compile(dialect=dialect))
            altered.append(Change(role, "add_column", table.name, column.name,
                                  [f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {ddl}"]))
        if table.name.lower() in managed:
            expected = {c.name.lower() for c in table.columns}
            for column_name in sorted(set(current.columns) - expected):
                holds = _column_holds_data(conn, current.name, column_name)
                blocked = None if allow_drop or not holds else "the column holds data; rerun with --allow-drop"
                altered.append(Change(role, "drop_column", table.name, column_name,
                                      [f"ALTER TABLE {_quote(conn, current.name)} DROP COLUMN {_quote(conn, column_name)}"],
                                      blocked))
        runnable = [c for c in altered if not c.blocked]
        if runnable and dialect.name == "duckdb":
            # DuckDB refuses to alter a table that has indexes: drop them first, build them again after.
            runnable[0].statements[:0] = [f"DROP INDEX IF EXISTS {_quote(conn, ix)}" for ix in sorted(current.indexes)]
            runnable[-1].statements += [str(CreateIndex(ix, if_not_exists=True).compile(dialect=dialect))
                                        for ix in sorted(table.indexes, key=lambda i: i.name)]
        changes.extend(altered)
        for index in sorted(table.indexes, key=lambda i: i.name):
            if index.name.lower() not in current.indexes and not (runnable and dialect.name == "duckdb"):
                changes.append(Change(role, "create_index", table.name, index.name,
                                      [str(CreateIndex(index).compile(dialect=dialect))]))
    for name_lower, schema_id in sorted(managed.items()):
        if name_lower in wanted or name_lower not in live:
            continue
        table_name = live[name_lower].name
        holds = _table_holds_data(conn, table_name)
        blocked = None if allow_drop or not holds else f"table of removed schema '{schema_id}' holds data; rerun with --allow-drop"
        changes.append(Change(role, "drop_table", table_name, "", [f"DROP TABLE {_quote(conn, table_name)}"], blocked))
    return changes


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _column_holds_data(conn: sa.Connection, table: str, column: str) -> bool:
    # A numeric column always holds 0 when unset (Campaign's NOT NULL DEFAULT 0), so 0 is "no data".
    sql = (f"SELECT 1 FROM {_quote(conn, table)} WHERE {_quote(conn, column)} IS NOT NULL "
           f"AND CAST({_quote(conn, column)} AS VARCHAR(64)) NOT IN ('0', '0.0', '') LIMIT 1")
    return conn.exec_driver_sql(sql).first() is not None


def _table_holds_data(conn: sa.Connection, table: str) -> bool:
    return conn.exec_driver_sql(f"SELECT 1 FROM {_quote(conn, table)} LIMIT 2").fetchall().__len__() > 0


def apply(storage: Storage, changes: list[Change]) -> list[str]:
    """Run every unblocked change, one transaction per database; return the SQL that ran."""
    executed: list[str] = []
    for role in storage.roles:
        todo = [c for c in changes if c.role == role and not c.blocked]
        if not todo:
            continue
        with storage.write(role) as conn:
            for change in todo:
                for statement in change.statements:
                    conn.exec_driver_sql(statement)
                    executed.append(statement)
                if change.kind == "create_table":
                    executed.extend(_after_create(conn, storage, role, change.table))
                elif change.kind == "drop_table":
                    managed = storage.internal[(role, MANAGED_TABLES)]
                    conn.execute(sa.delete(managed).where(sa.func.lower(managed.c.sTableName) == change.table.lower()))
    return executed


def _after_create(conn: sa.Connection, storage: Storage, role: str, table_name: str) -> list[str]:
    """Record the table as ours and add Campaign's id-0 row (the 'empty' record links default to)."""
    table = storage.metadata[role].tables[table_name]
    schema_id = table.info.get("schema_id")
    if schema_id is None:
        return []
    managed = storage.internal[(role, MANAGED_TABLES)]
    conn.execute(sa.insert(managed).values(sTableName=table.name, sSchemaId=schema_id))
    schema = storage.registry.get(schema_id)
    if schema.autopk and not schema.autouuid:
        pk = schema.attribute("@id")
        assert pk is not None and pk.sqlname is not None
        statement = sa.insert(table).values({pk.sqlname: 0})
        conn.execute(statement)
        dialect = conn.dialect.name
        return [f"INSERT INTO {table.name} ({physical(pk.sqlname, dialect)}) VALUES (0)"]
    return []


def create_all(storage: Storage) -> list[str]:
    """Create or bring up to date every table (what `init` runs): never drops anything."""
    return apply(storage, [c for c in plan(storage) if not c.kind.startswith("drop")])
