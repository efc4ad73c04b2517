"""Folder rights (business-rest-auth.md §7.2): which folders' records a caller may read or change.

A folder with no `xtk:folderAccess` row is open to everyone; one with rows is restricted to the
groups and operators listed, with the rights their rows give. Administrators and the internal
account have every right. The rights table is small and read at most every CACHE_SECONDS, so a
change of rights reaches running servers within that delay.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa

from ..context import CallContext
from .operators import Operators

CACHE_SECONDS = 5.0
ACTIONS = ("read", "write", "delete")


class FolderRights:
    def __init__(self, storage: Any):
        self.storage = storage
        self.table = storage.table("xtk:folderAccess")
        self.operators = Operators(storage)
        self._lock = threading.Lock()
        self._rows: tuple[float, list[tuple[int, int, int, bool, bool, bool]]] | None = None
        self._groups: dict[str, tuple[float, frozenset[int]]] = {}

    def _grants(self) -> list[tuple[int, int, int, bool, bool, bool]]:
        now = time.monotonic()
        with self._lock:
            if self._rows is not None and now - self._rows[0] < CACHE_SECONDS:
                return self._rows[1]
        t = self.table
        with self.storage.engine_for("xtk:folderAccess").connect() as conn:
            rows = [(r.iFolderId, r.iGroupId, r.iOperatorId, bool(r.iRead), bool(r.iWrite), bool(r.iDelete))
                    for r in conn.execute(sa.select(t.c.iFolderId, t.c.iGroupId, t.c.iOperatorId, t.c.iRead,
                                                    t.c.iWrite, t.c.iDelete).where(t.c.iFolderAccessId != 0))]
        with self._lock:
            self._rows = (now, rows)
        return rows

    def _group_ids(self, ctx: CallContext) -> frozenset[int]:
        now = time.monotonic()
        with self._lock:
            cached = self._groups.get(ctx.login)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        operator = self.operators.load(ctx.login) if ctx.login else None
        groups = frozenset(g for g, _name in operator.groups) if operator else frozenset()
        with self._lock:
            self._groups[ctx.login] = (now, groups)
        return groups

    def denied(self, ctx: CallContext, action: str = "read") -> frozenset[int]:
        """Folder ids whose records `ctx` may not `action` (read, write or delete)."""
        if ctx.is_admin:
            return frozenset()
        grants = self._grants()
        if not grants:
            return frozenset()
        position = 3 + ACTIONS.index(action)
        groups = self._group_ids(ctx)
        restricted, allowed = set(), set()
        for row in grants:
            restricted.add(row[0])
            if row[position] and ((row[2] and row[2] == ctx.login_id) or (row[1] and row[1] in groups)):
                allowed.add(row[0])
        return frozenset(restricted - allowed)


_RIGHTS: weakref.WeakKeyDictionary[Any, FolderRights] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def folder_rights(storage: Any) -> FolderRights | None:
    """The folder rights of a storage, or None when its schemas have no xtk:folderAccess."""
    rights = _RIGHTS.get(storage)  # every queryDef asks: no lock once known
    if rights is not None:
        return rights
    try:
        storage.table("xtk:folderAccess")
    except KeyError:
        return None
    with _LOCK:
        rights = _RIGHTS.get(storage)
        if rights is None:
            rights = _RIGHTS[storage] = FolderRights(storage)
        return rights


def folder_column(schema: Any) -> str | None:
    """The FK column of a schema's `folder` link to xtk:folder, if it has one."""
    link = schema.node("folder") if schema.root is not None else None
    if link is None or not getattr(link, "is_link", False) or link.target != "xtk:folder" or link.unbound:
        return None
    if len(link.joins) != 1:
        return None
    attr = schema.attribute(link.joins[0].src)
    return attr.sqlname if attr is not None else None
