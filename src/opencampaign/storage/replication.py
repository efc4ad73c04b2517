"""Local -> cloud replication of reference tables (data-model.md §5.4).

Cloud schemas link to local configuration tables (recipients to folders, subscriptions to
services). Campaign keeps an "h+1" copy of those tables in the cloud database; we copy them
whole (the XS policy: they are small), on demand and after every write to them, so targeting
joins run inside the cloud engine.
"""

from __future__ import annotations

import sqlalchemy as sa

from .placement import CLOUD, LOCAL
from .storage import Storage

BATCH = 5000


def replicate(storage: Storage, schema_ids: list[str] | None = None) -> dict[str, int]:
    """Copy each replicated schema's rows to the cloud; returns rows copied per schema."""
    copied: dict[str, int] = {}
    if storage.single:
        return copied
    for schema_id in sorted(schema_ids if schema_ids is not None else storage.placement.replicated):
        if not storage.placement.is_replicated(schema_id):
            continue
        source = storage.table(schema_id, LOCAL)
        target = storage.table(schema_id, CLOUD)
        with storage.engine(LOCAL).connect() as src:
            # Positional: result keys are physical names, which differ in case on PostgreSQL.
            rows = [tuple(r) for r in src.execute(sa.select(*source.columns))]
        with storage.write(CLOUD) as dst:
            dst.execute(sa.delete(target))
            keys = [c.key for c in source.columns]
            for start in range(0, len(rows), BATCH):
                chunk = [dict(zip(keys, row, strict=True)) for row in rows[start:start + BATCH]]
                dst.execute(sa.insert(target), chunk)
        copied[schema_id] = len(rows)
    return copied
