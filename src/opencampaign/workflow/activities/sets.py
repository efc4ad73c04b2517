"""Set operations on populations of one targeting schema: union, intersection, exclusion."""

from __future__ import annotations

import sqlalchemy as sa

from .. import worktables as wt
from . import ActivityError, Output, Population, RunContext, register


def _keys(p: Population) -> sa.Select:
    return sa.select(sa.table(p.table, sa.column(wt.ID)).c[wt.ID])


def _same_schema(rc: RunContext) -> str:
    schemas = {p.schema for p in rc.inputs}
    if len(schemas) != 1:
        raise ActivityError(f"Activity '{rc.activity.name}': inbound populations have different schemas "
                            f"({', '.join(sorted(schemas))})")
    return schemas.pop()


def run_union(rc: RunContext) -> list[Output]:
    schema = _same_schema(rc)
    select = sa.union(*[_keys(p) for p in rc.inputs]) if len(rc.inputs) > 1 else _keys(rc.inputs[0]).distinct()
    population = rc.create(0, select, schema)
    return [rc.emit(t.name, population) for t in rc.activity.transitions]


def run_intersection(rc: RunContext) -> list[Output]:
    schema = _same_schema(rc)
    select = sa.intersect(*[_keys(p) for p in rc.inputs]) if len(rc.inputs) > 1 else _keys(rc.inputs[0]).distinct()
    population = rc.create(0, select, schema)
    return [rc.emit(t.name, population) for t in rc.activity.transitions]


def run_exclusion(rc: RunContext) -> list[Output]:
    schema = _same_schema(rc)
    primary_name = rc.activity.attr("primary")
    primary = next((p for p in rc.inputs if p.source == primary_name), None) if primary_name else rc.inputs[0]
    if primary is None:
        raise ActivityError(f"Activity '{rc.activity.name}': no inbound population from '{primary_name}'")
    with wt.engine(rc.storage).connect() as conn:
        main = wt.table(conn, primary.table).alias("m")
    filters = [~sa.exists().where(sa.table(p.table, sa.column(wt.ID)).c[wt.ID] == main.c[wt.ID])
               for p in rc.inputs if p is not primary]
    population = rc.create(0, sa.select(*main.c).where(*filters), schema)
    return [rc.emit(t.name, population) for t in rc.activity.transitions]


register("union", run_union, join=True)
register("intersection", run_intersection, join=True)
register("exclusion", run_exclusion, join=True)
