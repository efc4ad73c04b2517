"""Which database holds each schema (data-model.md §5, Campaign v8 Enterprise / FFDA).

- local (OLTP): configuration (operators, folders, options, workflows, deliveries, services...)
  and unitary API traffic;
- cloud (OLAP): customer data and logs, and every batch workload.
A schema chooses with `dataSource` on its main element: `nms:extAccount:ffda` (or `cloud`) is the
cloud database, `default` (or `local`) the local one. Without it, built-in namespaces are local
and custom schemas go to the cloud, as v8 does for new tables. Local tables that cloud schemas
link to are replicated to the cloud so that targeting joins stay inside one engine.
"""

from __future__ import annotations

from ..schema.model import Schema
from ..schema.registry import SchemaRegistry
from ..schema.source import RESERVED_NAMESPACES

LOCAL = "local"
CLOUD = "cloud"
CLOUD_SOURCES = {"nms:extAccount:ffda", "ffda", "cloud"}
LOCAL_SOURCES = {"default", "nms:extAccount:default", "local"}


class PlacementError(ValueError):
    pass


def home_of(schema: Schema) -> str | None:
    if not schema.has_table:
        return None
    source = (schema.data_source or "").strip()
    if source in CLOUD_SOURCES:
        return CLOUD
    if source in LOCAL_SOURCES:
        return LOCAL
    if source:
        raise PlacementError(
            f"{schema.source}: schema '{schema.id}' has dataSource '{source}'; "
            f"supported: {', '.join(sorted(CLOUD_SOURCES | LOCAL_SOURCES))}"
        )
    return LOCAL if schema.namespace in RESERVED_NAMESPACES else CLOUD


class Placement:
    def __init__(self, registry: SchemaRegistry, *, single_database: bool):
        self.single_database = single_database
        self.homes = {s.id: home_of(s) for s in registry.tables()}
        replicated: set[str] = set()
        if not single_database:
            for schema in registry.tables():
                if self.homes[schema.id] != CLOUD:
                    continue
                for link in schema.links():
                    if self.homes.get(link.target or "") == LOCAL:
                        replicated.add(link.target or "")
        self.replicated = replicated

    def home(self, schema_id: str) -> str:
        home = self.homes.get(schema_id)
        if home is None:
            raise PlacementError(f"schema '{schema_id}' has no table")
        return home

    def is_replicated(self, schema_id: str) -> bool:
        """A local reference table also copied into the cloud database."""
        return schema_id in self.replicated

    def roles_of(self, schema_id: str) -> list[str]:
        home = self.home(schema_id)
        return [home, CLOUD] if schema_id in self.replicated else [home]

    def schemas_in(self, role: str) -> list[str]:
        """Schema ids that have a table in the database of `role` (their home or a replica)."""
        if self.single_database:
            return sorted(self.homes)
        return sorted(sid for sid in self.homes if role in self.roles_of(sid))
