"""Update data and save audience: set-based writes from a work table, restart-safe.

Update data writes in batches; each batch commits together with a marker row
(`XtkWorkflowBatch`: task, batch) in the same database transaction, and a re-executed task skips
the batches already marked, so no batch is ever applied twice.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa

from ...schema.ddl import physical
from ...storage.placement import CLOUD
from .. import worktables as wt
from ..expr import SchemaScope
from ..model import Activity, Definition, DefinitionError
from ..store import create_tables, utcnow
from . import ActivityError, Output, RunContext, register

OPERATIONS = ("insert", "update", "upsert", "insertOrUpdate", "delete")
BATCH_TABLE = "XtkWorkflowBatch"
_batch_tables: dict[int, sa.Table] = {}


def batch_table(engine: sa.Engine) -> sa.Table:
    found = _batch_tables.get(id(engine))
    if found is not None:
        return found
    dialect = engine.dialect.name
    md = sa.MetaData()
    table = sa.Table(physical(BATCH_TABLE, dialect), md,
                     sa.Column(physical("iTaskId", dialect), sa.Integer, primary_key=True, autoincrement=False, key="task"),
                     sa.Column(physical("iBatch", dialect), sa.Integer, primary_key=True, autoincrement=False, key="batch"),
                     sa.Column(physical("iRows", dialect), sa.BigInteger, key="rows"))
    create_tables(md, engine)  # two workers may create it at the same time
    _batch_tables[id(engine)] = table
    return table


def reserve_ids(storage: Any, sequence: str, count: int) -> int:
    """First id of `count` contiguous ids (adapter: SequenceAllocator has no public range call)."""
    if count <= 0:
        return 0
    alloc = storage.sequences
    with alloc._lock:
        start, _end = alloc._reserve(sequence, count)
    return start


def _dest(rc: RunContext) -> tuple[Any, sa.Table, sa.Engine, str]:
    schema = rc.storage.registry.find(rc.activity.attr("schema") or rc.one_input().schema)
    if schema is None or not schema.has_table:
        raise ActivityError(f"Activity '{rc.activity.name}': unknown schema '{rc.activity.attr('schema')}'")
    role = rc.storage.home(schema.id)
    if rc.storage.engine(role) is not rc.storage.engine(CLOUD):
        raise ActivityError(f"Activity '{rc.activity.name}': schema '{schema.id}' is not in the cloud database")
    return schema, rc.storage.table(schema.id, role), rc.storage.engine(role), role


def _column(schema: Any, table: sa.Table, xpath: str, activity: str) -> sa.Column:
    attr = schema.attribute(xpath)
    if attr is None or attr.sqlname is None:
        raise ActivityError(f"Activity '{activity}': '{xpath}' is not a field of schema '{schema.id}'")
    return table.c[attr.sqlname]


def run_update(rc: RunContext) -> list[Output]:
    a = rc.activity
    main = rc.one_input()
    schema, dest, engine, role = _dest(rc)
    operation = a.attr("operation", "update")
    with wt.engine(rc.storage).connect() as conn:
        work = wt.table(conn, main.table)
    scope = SchemaScope(rc.storage, rc.ctx, main.schema)
    needs_join = False

    def source_value(node: Any) -> Any:
        nonlocal needs_join
        if node.get("column"):
            return work.c[node.get("column")]
        if node.get("expr"):
            needs_join = True
            return scope.value(node.get("expr"))
        return work.c[wt.ID]

    keys = [(_column(schema, dest, k.get("dest") or "@id", a.name), source_value(k)) for k in a.elem.findall("key")]
    if not keys:
        pk = schema.primary_key
        if main.schema != schema.id or pk is None or len(pk.fields) != 1:
            raise ActivityError(f"Activity '{a.name}': reconciliation keys (<key dest=... expr=...>) are required")
        keys = [(_column(schema, dest, pk.fields[0], a.name), work.c[wt.ID])]
    fields = [(_column(schema, dest, f.get("dest") or "", a.name), source_value(f)) for f in a.elem.findall("field")]
    source_cols = [v.label(f"_k{i}") for i, (_d, v) in enumerate(keys)] + \
                  [v.label(f"_f{i}") for i, (_d, v) in enumerate(fields)]
    base = sa.select(*source_cols).select_from(scope.from_work(work) if needs_join else work)
    size = int(a.attr("batchSize", "0") or 0)
    markers = batch_table(engine)
    total = main.count
    batches = 1 if size <= 0 or total <= size else (total + size - 1) // size
    staging = None
    if batches > 1:
        staging = rc.table_name(99)
        numbered = sa.select(*source_cols, sa.func.row_number().over(order_by=[v for _d, v in keys]).label("_rn")) \
            .select_from(scope.from_work(work) if needs_join else work)
        with rc.storage.write(role) as conn:
            wt.create_as(conn, staging, numbered)
    applied = 0
    for batch in range(1, batches + 1):
        with rc.storage.write(role) as conn:
            done = conn.execute(sa.select(markers.c.rows).where(markers.c.task == rc.task_id,
                                                                 markers.c.batch == batch)).scalar()
            if done is not None:
                applied += int(done)
                continue
            if staging is not None:
                st = sa.table(staging, *[sa.column(c.name) for c in source_cols], sa.column("_rn"))
                src = sa.select(*[st.c[c.name] for c in source_cols]).where(
                    st.c._rn > (batch - 1) * size, st.c._rn <= batch * size).subquery("src")
            else:
                src = base.subquery("src")
            rows = _apply(rc, conn, operation, schema, dest, keys, fields, src)
            conn.execute(sa.insert(markers).values(task=rc.task_id, batch=batch, rows=rows))
        applied += rows
        if batches > 1:
            rc.store.log(None, rc.workflow_id, f"Batch {batch}/{batches} committed ({rows} rows)",
                         activity=a.name, task_id=rc.task_id)
        _test_pause()
    if staging is not None:
        with rc.storage.write(role) as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {staging}")
    rc.log(f"{operation}: {applied} row(s) of {schema.id} processed")
    return [rc.emit(t.name, main, updateCount=applied) for t in a.transitions]


def _test_pause() -> None:
    # Test hook: lets the restart-safety test kill the worker between two batches.
    delay = os.environ.get("OPENCAMPAIGN_WORKFLOW_TEST_BATCH_PAUSE")
    if delay:
        time.sleep(float(delay))


def _apply(rc: RunContext, conn: sa.Connection, operation: str, schema: Any, dest: sa.Table,
           keys: list[tuple[sa.Column, Any]], fields: list[tuple[sa.Column, Any]], src: Any) -> int:
    match = sa.and_(*[d == src.c[f"_k{i}"] for i, (d, _v) in enumerate(keys)])
    rows = 0
    if operation == "delete":
        return conn.execute(sa.delete(dest).where(sa.exists().where(match))).rowcount
    if operation in ("update", "upsert", "insertOrUpdate") and fields:
        values = {d: src.c[f"_f{i}"] for i, (d, _v) in enumerate(fields)}
        rows += conn.execute(sa.update(dest).values(values).where(match)).rowcount
    if operation in ("insert", "upsert", "insertOrUpdate"):
        rows += _insert(rc, conn, schema, dest, keys, fields, src, match)
    return rows


def _insert(rc: RunContext, conn: sa.Connection, schema: Any, dest: sa.Table, keys: list[tuple[sa.Column, Any]],
            fields: list[tuple[sa.Column, Any]], src: Any, match: Any) -> int:
    new = sa.select(src).where(~sa.exists().where(match)).subquery("new")
    columns: dict[str, Any] = {}
    for i, (d, _v) in enumerate(keys):
        columns[d.key] = new.c[f"_k{i}"]
    for i, (d, _v) in enumerate(fields):
        columns[d.key] = new.c[f"_f{i}"]
    pk = schema.primary_key
    pk_col = dest.c[schema.attribute(pk.fields[0]).sqlname] if pk is not None and len(pk.fields) == 1 else None
    if schema.autopk and pk_col is not None and pk_col.key not in columns:
        count = int(conn.execute(sa.select(sa.func.count()).select_from(new)).scalar() or 0)
        if count == 0:
            return 0
        first = reserve_ids(rc.storage, schema.pk_sequence or "XtkNewId", count)
        columns[pk_col.key] = sa.func.row_number().over() + (first - 1)
    now = utcnow()
    for audit in ("@created", "@lastModified"):
        attr = schema.attribute(audit)
        if attr is not None and attr.sqlname and attr.sqlname not in columns:
            columns[attr.sqlname] = sa.literal(now, sa.DateTime)
    select = sa.select(*[v.label(k) for k, v in columns.items()]).select_from(new)
    return conn.execute(sa.insert(dest).from_select(list(columns), select)).rowcount


def validate_update(activity: Activity, definition: Definition, storage: Any) -> None:
    if activity.attr("operation", "update") not in OPERATIONS:
        raise DefinitionError(f"Activity '{activity.name}': operation must be one of {', '.join(OPERATIONS)}")
    schema_id = activity.attr("schema")
    if schema_id and storage.registry.find(schema_id) is None:
        raise DefinitionError(f"Activity '{activity.name}': unknown schema '{schema_id}'")


# -- save audience ---------------------------------------------------------------------------
def run_save_audience(rc: RunContext) -> list[Output]:
    a = rc.activity
    main = rc.one_input()
    if main.schema != "nms:recipient":
        raise ActivityError(f"Activity '{a.name}': an audience is a list of nms:recipient, not {main.schema}")
    name = a.attr("audience") or a.name
    group, rel = rc.storage.table("nms:group", CLOUD), rc.storage.table("nms:rcpGrpRel", CLOUD)
    with rc.storage.write(rc.storage.home("nms:group")) as conn:
        gid = conn.execute(sa.select(group.c.iGroupId).where(group.c.sName == name)).scalar()
        if gid is None:
            gid = rc.store.new_ids("nms:group", 1)[0]
            now = utcnow()
            conn.execute(sa.insert(group).values(iGroupId=gid, sName=name, sLabel=a.attr("label") or name, iType=1,
                                                 tsCreated=now, tsLastModified=now))
        conn.execute(sa.delete(rel).where(rel.c.iRcpGroupId == gid))
        work = sa.table(main.table, sa.column(wt.ID))
        conn.execute(sa.insert(rel).from_select(["iRcpGroupId", "iRecipientId"],
                                                sa.select(sa.literal(gid), work.c[wt.ID]).distinct()))
    rc.log(f"Audience '{name}' saved: {main.count} recipient(s)")
    return [rc.emit(t.name, main, audience=name) for t in a.transitions]


register("updateData", run_update, validate=validate_update)
register("saveAudience", run_save_audience)
