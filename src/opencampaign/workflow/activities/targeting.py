"""Targeting: query, enrichment, split, deduplication. Each is one CREATE TABLE ... AS SELECT."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from lxml import etree

from ...storage.placement import CLOUD
from .. import worktables as wt
from ..expr import SchemaScope, column_name
from ..model import Activity, Definition, DefinitionError
from . import ActivityError, Output, Population, RunContext, register


def _order(scope: SchemaScope, parent: etree._Element | None) -> list[Any]:
    result = []
    for node in parent.findall("node") if parent is not None else []:
        col = scope.value(node.get("expr") or "")
        result.append(col.desc().nulls_last() if node.get("sortDesc") == "true" else col.asc().nulls_last())
    return result


def _extra_nodes(elem: etree._Element | None) -> list[tuple[str, str]]:
    nodes = []
    for i, node in enumerate(elem.findall("node") if elem is not None else []):
        expr = node.get("expr") or ""
        nodes.append((expr, column_name(node.get("alias") or expr, i)))
    return nodes


def _check_schema(activity: Activity, storage: Any, schema_id: str) -> None:
    schema = storage.registry.find(schema_id)
    if schema is None:
        raise DefinitionError(f"Activity '{activity.name}': unknown schema '{schema_id}'")
    if not schema.has_table:
        raise DefinitionError(f"Activity '{activity.name}': schema '{schema_id}' has no table")
    try:
        storage.table(schema_id, CLOUD)
    except KeyError:
        raise DefinitionError(f"Activity '{activity.name}': schema '{schema_id}' is not in the cloud database "
                              "and cannot be targeted") from None


# -- query -----------------------------------------------------------------------------------
def audience_filter(storage: Any, pk: Any, name: str) -> Any:
    rel, group = storage.table("nms:rcpGrpRel", CLOUD), storage.table("nms:group", CLOUD)
    members = (sa.select(rel.c.iRecipientId).select_from(rel.join(group, group.c.iGroupId == rel.c.iRcpGroupId))
               .where(group.c.sName == name))
    return pk.in_(members)


def run_query(rc: RunContext) -> list[Output]:
    a = rc.activity
    scope = SchemaScope(rc.storage, rc.ctx, a.attr("schema"))
    columns = [scope.pk.label(wt.ID)] + [scope.value(expr).label(alias) for expr, alias in _extra_nodes(a.elem.find("select"))]
    filters = scope.root_filter()
    cond = scope.where(a.elem.find("where"))
    if cond is not None:
        filters.append(cond)
    if a.attr("audience"):
        filters.append(audience_filter(rc.storage, scope.pk, a.attr("audience")))
    select = sa.select(*columns).select_from(scope.from_root()).where(*filters)
    population = rc.create(0, select, scope.schema.id)
    return [rc.emit(t.name, population) for t in a.transitions]


def validate_query(activity: Activity, definition: Definition, storage: Any) -> None:
    if not activity.attr("schema"):
        raise DefinitionError(f"Activity '{activity.name}': a query needs a 'schema' attribute")
    _check_schema(activity, storage, activity.attr("schema"))


# -- enrichment ------------------------------------------------------------------------------
def run_enrichment(rc: RunContext) -> list[Output]:
    a = rc.activity
    main = _primary(rc)
    with wt.engine(rc.storage).connect() as conn:
        work = wt.table(conn, main.table)
        others = {p.source: (p, wt.table(conn, p.table)) for p in rc.inputs if p is not main}
    scope = SchemaScope(rc.storage, rc.ctx, main.schema)
    columns: list[Any] = list(work.c)
    columns += [scope.value(expr).label(alias) for expr, alias in _extra_nodes(a.elem)]
    source: Any = scope.from_work(work) if len(columns) > len(work.c) else work
    for data in a.elem.findall("data"):
        found = others.get(data.get("activity") or "")
        if found is None:
            raise ActivityError(f"Activity '{a.name}': no inbound population from '{data.get('activity')}'")
        other = found[1].alias(f"d_{len(columns)}")
        key = data.get("key") or wt.ID
        source = source.outerjoin(other, other.c[key] == work.c[wt.ID])
        for col in (data.get("columns") or "").split(","):
            if col.strip():
                columns.append(other.c[col.strip()].label(data.get("prefix", "") + col.strip()))
    population = rc.create(0, sa.select(*columns).select_from(source), main.schema)
    return [rc.emit(t.name, population) for t in a.transitions]


def _primary(rc: RunContext) -> Population:
    name = rc.activity.attr("primary")
    if name:
        for p in rc.inputs:
            if p.source == name:
                return p
        raise ActivityError(f"Activity '{rc.activity.name}': no inbound population from '{name}'")
    return rc.one_input()


# -- split -----------------------------------------------------------------------------------
def run_split(rc: RunContext) -> list[Output]:
    a = rc.activity
    main = rc.one_input()
    with wt.engine(rc.storage).connect() as conn:
        work = wt.table(conn, main.table)
    done: list[str] = []
    outputs: list[Output] = []
    for k, subset in enumerate(a.elem.findall("subset"), start=1):
        name = subset.get("name") or f"subset{k}"
        scope = SchemaScope(rc.storage, rc.ctx, main.schema)
        cond = scope.where(subset.find("where"))
        order = _order(scope, subset.find("orderBy"))
        w = work.alias("w")
        source = w.join(scope.from_root(), w.c[wt.ID] == scope.pk) if cond is not None or order else w
        filters = [cond] if cond is not None else []
        filters += [~sa.exists().where(sa.table(t, sa.column(wt.ID)).c[wt.ID] == w.c[wt.ID]) for t in done]
        select = sa.select(*[w.c[c.name] for c in work.c]).select_from(source).where(*filters)
        limit = int(subset.get("limit") or 0)
        if order or limit:
            select = select.order_by(*order, w.c[wt.ID])
        if limit:
            select = select.limit(limit)
        population = rc.create(k, select, main.schema)
        done.append(population.table)
        outputs.append(rc.emit(name, population))
    remainder = a.elem.find("remainder")
    if remainder is not None:
        w = work.alias("w")
        filters = [~sa.exists().where(sa.table(t, sa.column(wt.ID)).c[wt.ID] == w.c[wt.ID]) for t in done]
        population = rc.create(len(done) + 1, sa.select(*[w.c[c.name] for c in work.c]).where(*filters), main.schema)
        outputs.append(rc.emit(remainder.get("name") or "remainder", population))
    wanted = set(rc.transition_names())
    return [o for o in outputs if o.transition in wanted]


def validate_split(activity: Activity, definition: Definition, storage: Any) -> None:
    if not activity.elem.findall("subset"):
        raise DefinitionError(f"Activity '{activity.name}': a split needs at least one <subset>")


# -- deduplication ---------------------------------------------------------------------------
def run_dedup(rc: RunContext) -> list[Output]:
    a = rc.activity
    main = rc.one_input()
    with wt.engine(rc.storage).connect() as conn:
        work = wt.table(conn, main.table)
    scope = SchemaScope(rc.storage, rc.ctx, main.schema)
    keys: list[Any] = []
    for key in a.elem.findall("key"):
        keys.append(work.c[key.get("column")] if key.get("column") else scope.value(key.get("expr") or ""))
    if not keys and a.attr("keys"):
        keys = [scope.value(k.strip()) for k in a.attr("keys").split(",") if k.strip()]
    if not keys:
        raise ActivityError(f"Activity '{a.name}': a deduplication needs keys")
    order = _order(scope, a.elem.find("orderBy")) + [work.c[wt.ID].asc()]
    rn = sa.func.row_number().over(partition_by=keys, order_by=order).label("_rn")
    inner = sa.select(*work.c, rn).select_from(scope.from_work(work)).subquery("d")
    cols = [inner.c[c.name] for c in work.c]
    kept = rc.create(0, sa.select(*cols).where(inner.c._rn == 1), main.schema)
    rc.log(f"{main.count - kept.count} duplicate(s) removed")
    outputs = [rc.emit(t.name, kept) for t in a.transitions if t.name != "duplicates"]
    if any(t.name == "duplicates" for t in a.transitions):
        outputs.append(rc.emit("duplicates", rc.create(1, sa.select(*cols).where(inner.c._rn > 1), main.schema)))
    return outputs


register("query", run_query, validate=validate_query)
register("enrichment", run_enrichment, join=True)
register("split", run_split, validate=validate_split)
register("deduplication", run_dedup)
