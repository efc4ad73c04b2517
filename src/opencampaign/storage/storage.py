"""The storage seam: which engine holds a schema, and its SQLAlchemy table there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ..config import Settings
from ..schema.ddl import build_table, physical
from ..schema.registry import SchemaRegistry
from .engines import check_connection, create_engine
from .placement import CLOUD, LOCAL, Placement
from .sequences import SequenceAllocator, sequence_table

MANAGED_TABLES = "XtkSchemaTable"  # tables created by opencampaign, the only ones updatedb may drop


def managed_table(metadata: sa.MetaData, dialect: str) -> sa.Table:
    return sa.Table(
        physical(MANAGED_TABLES, dialect), metadata,
        sa.Column(physical("sTableName", dialect), sa.String(128), primary_key=True, key="sTableName"),
        sa.Column(physical("sSchemaId", dialect), sa.String(128), nullable=False, key="sSchemaId"),
    )


class Storage:
    def __init__(self, settings: Settings, registry: SchemaRegistry):
        self.settings = settings
        self.registry = registry
        self.single = settings.single_database or settings.local_url == settings.cloud_url
        self.placement = Placement(registry, single_database=self.single)
        synchronous = str(settings.get("database", "sqlite_synchronous", "FULL"))
        local = create_engine(settings.local_url, sqlite_synchronous=synchronous)
        cloud = local if self.single else create_engine(settings.cloud_url, sqlite_synchronous=synchronous)
        self.engines = {LOCAL: local, CLOUD: cloud}
        self.metadata: dict[str, sa.MetaData] = {}
        self.tables: dict[tuple[str, str], sa.Table] = {}
        self.internal: dict[tuple[str, str], sa.Table] = {}
        for role in self.roles:
            self._build_metadata(role)
        if self.single:
            self.metadata[CLOUD] = self.metadata[LOCAL]
            for schema_id in self.placement.homes:
                self.tables[(CLOUD, schema_id)] = self.tables[(LOCAL, schema_id)]
            self.internal[(CLOUD, MANAGED_TABLES)] = self.internal[(LOCAL, MANAGED_TABLES)]
        self.sequences = self._sequence_allocator(local, synchronous)

    def _sequence_allocator(self, local: sa.Engine, synchronous: str) -> SequenceAllocator:
        # SQLite has one writer per file: ids reserved while a Write holds the lock would wait on
        # themselves, so on SQLite the sequences get a file of their own beside the database.
        if local.dialect.name == "sqlite" and local.url.database not in (None, "", ":memory:"):
            url = local.url.set(database=str(local.url.database) + ".sequences")
            engine = create_engine(url.render_as_string(hide_password=False), sqlite_synchronous=synchronous)
            metadata = sa.MetaData()
            table = sequence_table(metadata, "sqlite")
            metadata.create_all(engine)
            self._sequence_engine = engine
            return SequenceAllocator(engine, table)
        table = sequence_table(self.metadata[LOCAL], local.dialect.name)
        self.internal[(LOCAL, "XtkSequence")] = table
        return SequenceAllocator(local, table)

    @property
    def roles(self) -> list[str]:
        """Distinct databases: one in single-database mode, two otherwise."""
        return [LOCAL] if self.single else [LOCAL, CLOUD]

    def _build_metadata(self, role: str) -> None:
        dialect = self.engines[role].dialect.name
        metadata = sa.MetaData()
        # A columnar warehouse gains nothing from secondary indexes and pays for them on every load
        # ("no index is required on the Cloud Database", v8); keys keep their unique index.
        unique_only = role == CLOUD and dialect == "duckdb"
        for schema_id in self.placement.schemas_in(role):
            schema = self.registry.get(schema_id)
            self.tables[(role, schema_id)] = build_table(schema, metadata, dialect, unique_only=unique_only)
        self.internal[(role, MANAGED_TABLES)] = managed_table(metadata, dialect)
        self.metadata[role] = metadata

    def check(self) -> None:
        for role in self.roles:
            check_connection(self.engines[role], role)

    def home(self, schema_id: str) -> str:
        return self.placement.home(schema_id)

    def engine(self, role: str) -> sa.Engine:
        return self.engines[role]

    def engine_for(self, schema_id: str) -> sa.Engine:
        return self.engines[self.home(schema_id)]

    def dialect(self, role: str) -> str:
        return self.engines[role].dialect.name

    def table(self, schema_id: str, role: str | None = None) -> sa.Table:
        role = role or self.home(schema_id)
        try:
            return self.tables[(role, schema_id)]
        except KeyError:
            raise KeyError(f"schema '{schema_id}' has no table in the {role} database") from None

    @contextmanager
    def write(self, role: str) -> Iterator[sa.Connection]:
        """One write transaction on the database of `role`."""
        with self.engines[role].connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        engines = list(self.engines.values()) + [getattr(self, "_sequence_engine", None)]
        for engine in {id(e): e for e in engines if e is not None}.values():
            engine.dispose()
