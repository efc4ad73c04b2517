"""Durable workflow state in the local database: workflows, tasks, events, logs and leases.

The lease table (`XtkWorkflowLease`, engine-private) holds one row per started workflow: the
worker owning it, until when, and when it next needs attention. Ownership changes only through a
conditional UPDATE, so two workers never run the same workflow (hence the same task).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..schema.ddl import physical
from ..xmlsafe import parse_xml
from . import model

LEASE_TABLE = "XtkWorkflowLease"


def now_ms() -> int:
    return int(time.time() * 1000)


def utcnow() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def memo_vars(memo: str | None, child: str) -> dict[str, str]:
    if not memo:
        return {}
    root = parse_xml(memo, source="mData")
    elem = root if root.tag == child else root.find(child)
    return dict(elem.attrib) if elem is not None else {}


def vars_memo(root_tag: str, child: str, values: dict[str, Any]) -> str | None:
    if not values:
        return None
    root = etree.Element(root_tag)
    sub = etree.SubElement(root, child)
    for key, value in values.items():
        if value is not None:
            sub.set(key, model._text(value))
    return etree.tostring(root, encoding="unicode")


def create_tables(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """CREATE the engine-private tables when missing. Two processes may race to create them (PostgreSQL then
    fails one CREATE on its catalog's unique index): the loser checks that the table is there and goes on."""
    try:
        # a write transaction from the start: on SQLite a deferred one that reads the catalog, then
        # CREATEs, fails at once with "database is locked" when another connection wrote in between
        with engine.connect().execution_options(write=True) as conn, conn.begin():
            metadata.create_all(conn, checkfirst=True)
    except sa.exc.DBAPIError:
        with engine.connect() as conn:
            present = {t.lower() for t in sa.inspect(conn).get_table_names()}
        if any(t.name.lower() not in present for t in metadata.sorted_tables):
            raise


def keyed(*items: Any) -> sa.Select:
    """SELECT of tables / columns labelled by their keys (Campaign's spelling, lower case on PostgreSQL)."""
    cols: list[Any] = []
    for item in items:
        cols.extend(item.c if isinstance(item, sa.Table) else [item])
    return sa.select(*[c.label(c.key) for c in cols])


class Store:
    def __init__(self, storage: Any):
        self.storage = storage
        self.role = storage.home("xtk:workflow")
        self.engine: sa.Engine = storage.engine(self.role)
        self.wf = storage.table("xtk:workflow", self.role)
        self.task = storage.table("xtk:workflowTask", self.role)
        self.event = storage.table("xtk:workflowEvent", self.role)
        self.log_t = storage.table("xtk:workflowLog", self.role)
        dialect = self.engine.dialect.name
        md = sa.MetaData()
        p = lambda n: physical(n, dialect)  # noqa: E731
        self.lease = sa.Table(
            p(LEASE_TABLE), md,
            sa.Column(p("iWorkflowId"), sa.Integer, primary_key=True, autoincrement=False, key="id"),
            sa.Column(p("sOwner"), sa.String(128), key="owner"),
            sa.Column(p("iExpires"), sa.BigInteger, nullable=False, default=0, key="expires"),
            sa.Column(p("iWake"), sa.BigInteger, key="wake"),  # epoch ms; NULL = nothing due
            sa.Column(p("iStartedById"), sa.Integer, key="started_by_id"),
            sa.Column(p("sStartedBy"), sa.String(64), key="started_by"),
            # Counts wake-ups asked for by others (events, commands): a worker that releases the lease with
            # "nothing due" must not erase one posted while it ran (the column predates this use).
            sa.Column(p("iTaskSeq"), sa.Integer, nullable=False, default=0, key="pokes"),
        )
        create_tables(md, self.engine)

    def write(self) -> Any:
        return self.storage.write(self.role)

    def new_ids(self, schema_id: str, count: int) -> list[int]:
        schema = self.storage.registry.get(schema_id)
        return self.storage.sequences.next_ids(schema.pk_sequence or "XtkNewId", count)

    # -- workflows ---------------------------------------------------------------------------
    def find(self, ref: str | int) -> dict[str, Any] | None:
        w = self.wf
        text = str(ref).strip()
        cond = w.c.iWorkflowId == int(text) if text.isdigit() else w.c.sInternalName == text
        with self.engine.connect() as conn:
            row = conn.execute(keyed(w).where(cond, w.c.iWorkflowId != 0)).mappings().first()
        return dict(row) if row else None

    def get(self, wid: int) -> dict[str, Any]:
        row = self.find(wid)
        if row is None:
            raise KeyError(wid)
        return row

    def list(self) -> list[dict[str, Any]]:
        w = self.wf
        with self.engine.connect() as conn:
            rows = conn.execute(keyed(w.c.iWorkflowId, w.c.sInternalName, w.c.sLabel, w.c.iState, w.c.iFailed,
                                          w.c.tsLastStart, w.c.tsLastEnd)
                                .where(w.c.iWorkflowId != 0).order_by(w.c.sInternalName)).mappings().all()
        return [dict(r) for r in rows]

    def update_wf(self, conn: sa.Connection, wid: int, **values: Any) -> int:
        return conn.execute(sa.update(self.wf).where(self.wf.c.iWorkflowId == wid).values(**values)).rowcount

    def set_instance_vars(self, conn: sa.Connection, wid: int, memo: str | None, values: dict[str, Any]) -> str:
        root = parse_xml(memo, source="workflow mData") if memo else etree.Element("workflow")
        for old in root.findall("variables"):
            root.remove(old)
        var = etree.SubElement(root, "variables")
        for key, value in values.items():
            var.set(key, model._text(value))
        memo = etree.tostring(root, encoding="unicode")
        self.update_wf(conn, wid, mData=memo)
        return memo

    # -- log ---------------------------------------------------------------------------------
    def log(self, conn: sa.Connection | None, wid: int, message: str, *, activity: str = "",
            level: int = model.LOG_INFO, task_id: int = 0) -> None:
        values = {"iWorkflowLogId": self.new_ids("xtk:workflowLog", 1)[0], "tsLog": utcnow(),
                  "iLogType": level, "sActivity": activity[:64], "mMessage": message,
                  "iWorkflowId": wid, "iTaskId": task_id}
        if conn is not None:
            conn.execute(sa.insert(self.log_t).values(values))
            return
        with self.write() as own:
            own.execute(sa.insert(self.log_t).values(values))

    def log_many(self, conn: sa.Connection, wid: int, entries: list[tuple[str, str, int]],
                 level: int = model.LOG_INFO) -> None:
        """Several messages (message, activity, task id) in one INSERT."""
        if not entries:
            return
        ids, now = self.new_ids("xtk:workflowLog", len(entries)), utcnow()
        conn.execute(sa.insert(self.log_t), [
            {"iWorkflowLogId": i, "tsLog": now, "iLogType": level, "sActivity": activity[:64], "mMessage": message,
             "iWorkflowId": wid, "iTaskId": task_id} for i, (message, activity, task_id) in zip(ids, entries, strict=True)])

    def logs(self, wid: int, after: int = 0) -> list[dict[str, Any]]:
        t = self.log_t
        with self.engine.connect() as conn:
            rows = conn.execute(keyed(t).where(t.c.iWorkflowId == wid, t.c.iWorkflowLogId > after)
                                .order_by(t.c.iWorkflowLogId)).mappings().all()
        return [dict(r) for r in rows]

    def tasks(self, wid: int) -> list[dict[str, Any]]:
        t = self.task
        with self.engine.connect() as conn:
            rows = conn.execute(keyed(t).where(t.c.iWorkflowId == wid).order_by(t.c.iWorkflowTaskId)).mappings().all()
        return [dict(r) for r in rows]

    # -- leases ------------------------------------------------------------------------------
    def ensure_lease_row(self, conn: sa.Connection, wid: int, *, wake: int | None, started_by: tuple[int, str] | None
                         ) -> None:
        lt = self.lease
        values: dict[str, Any] = {"wake": wake, "pokes": lt.c.pokes + 1}
        if started_by is not None:
            values.update(started_by_id=started_by[0], started_by=started_by[1])
        if conn.execute(sa.update(lt).where(lt.c.id == wid).values(**values)).rowcount == 0:
            conn.execute(sa.insert(lt).values(id=wid, owner=None, expires=0, **{**values, "pokes": 1}))

    def wake(self, conn: sa.Connection, wid: int, at: int | None = None) -> None:
        self.ensure_lease_row(conn, wid, wake=now_ms() if at is None else at, started_by=None)

    def candidates(self, limit: int = 50) -> list[int]:
        """Workflows needing a worker now and not leased by a live worker."""
        w, lt, now = self.wf, self.lease, now_ms()
        requested = w.c.iState.in_([model.START_REQUESTED, model.PAUSE_REQUESTED, model.RESUME_REQUESTED,
                                    model.STOP_REQUESTED])
        due = sa.and_(w.c.iState == model.STARTED, lt.c.wake.is_not(None), lt.c.wake <= now)
        query = (sa.select(w.c.iWorkflowId).select_from(w.join(lt, lt.c.id == w.c.iWorkflowId))
                 .where(sa.or_(requested, due), sa.or_(lt.c.owner.is_(None), lt.c.expires < now))
                 .order_by(lt.c.wake).limit(limit))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def acquire(self, wid: int, owner: str, ttl_ms: int, *, needed: bool = False) -> bool:
        """Take the lease (free, expired or already mine); with `needed`, only if the workflow still needs a
        worker (a candidate list goes stale while other threads work through it)."""
        lt, w, now = self.lease, self.wf, now_ms()
        conds = [lt.c.id == wid, sa.or_(lt.c.owner.is_(None), lt.c.expires < now, lt.c.owner == owner)]
        if needed:
            requested = sa.exists().where(w.c.iWorkflowId == wid, w.c.iState.in_(
                [model.START_REQUESTED, model.PAUSE_REQUESTED, model.RESUME_REQUESTED, model.STOP_REQUESTED]))
            conds.append(sa.or_(sa.and_(lt.c.wake.is_not(None), lt.c.wake <= now), requested))
        with self.write() as conn:
            return conn.execute(sa.update(lt).where(*conds).values(owner=owner, expires=now + ttl_ms)).rowcount == 1

    def renew(self, conn: sa.Connection, wid: int, owner: str, ttl_ms: int) -> bool:
        lt = self.lease
        return conn.execute(sa.update(lt).where(lt.c.id == wid, lt.c.owner == owner)
                            .values(expires=now_ms() + ttl_ms)).rowcount == 1

    def pokes(self, wid: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.lease.c.pokes).where(self.lease.c.id == wid)).scalar() or 0

    def release(self, wid: int, owner: str, wake: int | None, seen_pokes: int | None = None) -> None:
        """Free the lease; when someone asked for a wake-up since `seen_pokes`, the workflow is due now."""
        lt = self.lease
        if seen_pokes is not None:
            value: Any = sa.case((lt.c.pokes != seen_pokes, now_ms()), else_=sa.literal(wake, sa.BigInteger))
        else:
            value = wake
        with self.write() as conn:
            conn.execute(sa.update(lt).where(lt.c.id == wid, lt.c.owner == owner)
                         .values(owner=None, expires=0, wake=value))

    def lease_row(self, wid: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(keyed(self.lease).where(self.lease.c.id == wid)).mappings().first()
        return dict(row) if row else None

    # -- events ------------------------------------------------------------------------------
    def post_event(self, conn: sa.Connection, wid: int, activity: str, transition: str, values: dict[str, Any], *,
                   source: str, complete: bool = False, task_id: int = 0) -> int:
        eid = self.new_ids("xtk:workflowEvent", 1)[0]
        conn.execute(sa.insert(self.event).values(
            iWorkflowEventId=eid, sActivity=activity, sTransition=transition, iStatus=model.EV_PENDING,
            sSource=source, iComplete=1 if complete else 0, tsCreated=utcnow(), iWorkflowId=wid, iTaskId=task_id,
            mData=vars_memo("workflowEvent", "vars", values)))
        return eid

    def pending_events(self, conn: sa.Connection, wid: int) -> list[dict[str, Any]]:
        e = self.event
        rows = conn.execute(keyed(e).where(e.c.iWorkflowId == wid, e.c.iStatus == model.EV_PENDING)
                            .order_by(e.c.iWorkflowEventId)).mappings().all()
        return [dict(r) for r in rows]
