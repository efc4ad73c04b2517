"""Id sequences (Campaign's XtkNewId, NmsRecipientId...), kept in the local database.

Campaign guarantees uniqueness, not order (data-model.md §1.7), so each process reserves blocks
and hands ids out from memory: one round trip per block instead of one per row.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from ..schema.ddl import physical

SEQUENCE_TABLE = "XtkSequence"
FIRST_ID = 1000  # ids below 1000 are reserved (data-model.md §1.7)
MAX_ID = 2147483646


def sequence_table(metadata: sa.MetaData, dialect: str) -> sa.Table:
    return sa.Table(
        physical(SEQUENCE_TABLE, dialect), metadata,
        sa.Column(physical("sName", dialect), sa.String(64), primary_key=True, key="sName"),
        sa.Column(physical("iNextId", dialect), sa.BigInteger, nullable=False, key="iNextId"),
    )


class SequenceAllocator:
    def __init__(self, engine: sa.Engine, table: sa.Table, block: int = 1000):
        self.engine = engine
        self.table = table
        self.block = block
        self._lock = threading.Lock()
        self._ranges: dict[str, tuple[int, int]] = {}  # name -> (next, end exclusive)

    def next_ids(self, name: str, count: int) -> list[int]:
        if count <= 0:
            return []
        ids: list[int] = []
        with self._lock:
            while len(ids) < count:
                start, end = self._ranges.get(name, (0, 0))
                if start >= end:
                    start, end = self._reserve(name, max(self.block, count - len(ids)))
                take = min(end - start, count - len(ids))
                ids.extend(range(start, start + take))
                self._ranges[name] = (start + take, end)
        return ids

    def next_id(self, name: str) -> int:
        return self.next_ids(name, 1)[0]

    def _reserve(self, name: str, size: int) -> tuple[int, int]:
        t = self.table
        with self.engine.begin() as conn:
            # UPDATE first: it takes the row lock on PostgreSQL, so concurrent processes serialise here.
            updated = conn.execute(
                sa.update(t).where(t.c.sName == name).values(iNextId=t.c.iNextId + size).returning(t.c.iNextId)
            ).scalar()
            if updated is None:
                conn.execute(sa.insert(t).values(sName=name, iNextId=FIRST_ID + size))
                updated = FIRST_ID + size
        start = updated - size
        if updated > MAX_ID:
            raise OverflowError(f"sequence '{name}' is exhausted (max {MAX_ID}); purge old data or use int64 keys")
        return start, updated
