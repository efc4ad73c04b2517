"""Flow control: start, end, fork, AND-join, test, wait, scheduler, external signal."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ...query.compile_expr import ExprCompiler, QueryScope, Statement
from ..model import Activity, Definition, DefinitionError
from ..store import now_ms
from . import ActivityError, Output, RunContext, Wait, register
from .schedule import next_run, parse_duration, parse_schedule


def _all(rc: RunContext) -> list[Output]:
    population = rc.inputs[0] if rc.inputs else None
    return [rc.emit(t.name, population) for t in rc.activity.transitions]


def run_end(rc: RunContext) -> list[Output]:
    return []


def eval_condition(rc: RunContext, text: str) -> bool:
    """An XTK condition on variables and constants, evaluated by the database."""
    role = rc.storage.home("xtk:workflow")
    stmt = Statement(rc.storage, rc.storage.registry, rc.ctx, role)
    scope = QueryScope(stmt, stmt.schema("xtk:workflow"))
    cond = ExprCompiler(stmt).condition(text, scope)
    query = sa.select(sa.case((cond, 1), else_=0))
    if query.get_final_froms():
        raise ActivityError(f"Activity '{rc.activity.name}': a test expression uses variables and constants only")
    with rc.storage.engine(role).connect() as conn:
        return bool(conn.execute(query).scalar())


def run_test(rc: RunContext) -> list[Output]:
    result = eval_condition(rc, rc.activity.attr("expr"))
    name = "true" if result else "false"
    population = rc.inputs[0] if rc.inputs else None
    rc.log(f"Condition '{rc.activity.attr('expr')}' is {name}")
    return [rc.emit(t.name, population) for t in rc.activity.transitions if t.name == name]


def validate_test(activity: Activity, definition: Definition, storage: Any) -> None:
    if not activity.attr("expr"):
        raise DefinitionError("a test needs an 'expr' attribute")


# -- waiting activities ----------------------------------------------------------------------
def run_wait(rc: RunContext) -> Wait:
    return Wait(now_ms() + int(parse_duration(rc.activity.attr("duration", "0")) * 1000))


def wake_wait(rc: RunContext) -> list[Output]:
    return _all(rc)


def validate_wait(activity: Activity, definition: Definition, storage: Any) -> None:
    parse_duration(activity.attr("duration", "0"))


def run_scheduler(rc: RunContext) -> Wait | list[Output]:
    schedule = parse_schedule(rc.activity.elem)
    at = next_run(schedule, now_ms())
    if at is None:
        return []
    return Wait(at)


def wake_scheduler(rc: RunContext) -> Wait | list[Output]:
    schedule = parse_schedule(rc.activity.elem)
    outputs = _all(rc)
    if schedule.once:
        return outputs
    at = next_run(schedule, now_ms() + 1000)
    return Wait(at, outputs) if at is not None else outputs


def validate_scheduler(activity: Activity, definition: Definition, storage: Any) -> None:
    parse_schedule(activity.elem)


def run_signal(rc: RunContext) -> Wait | list[Output]:
    if rc.signal is not None:
        return _signal_outputs(rc)
    timeout = rc.activity.attr("expiration")
    return Wait(now_ms() + int(parse_duration(timeout) * 1000) if timeout else None)


def wake_signal(rc: RunContext) -> Wait | list[Output]:
    if rc.signal is None:  # expired
        return [rc.emit(t.name) for t in rc.activity.transitions if t.name == "expiration"]
    outputs = _signal_outputs(rc)
    # A signal reached through a transition waits once; an initial signal keeps listening
    # unless the event completes it (PostEvent complete=true).
    once = bool(rc.definition.inbound(rc.activity.name))
    return outputs if rc.signal.get("complete") or once else Wait(None, outputs)


def _signal_outputs(rc: RunContext) -> list[Output]:
    assert rc.signal is not None
    name = rc.signal.get("transition") or ""
    candidates = [t for t in rc.activity.transitions if t.name != "expiration"]
    chosen = next((t for t in candidates if t.name == name), None) if name else (candidates[0] if candidates else None)
    if chosen is None:
        raise ActivityError(f"Activity '{rc.activity.name}': no transition '{name}'")
    # the inbound population (when the signal was reached through a transition) goes on
    population = rc.inputs[0] if rc.inputs else None
    return [rc.emit(chosen.name, population, **rc.signal.get("vars", {}))]


def validate_signal(activity: Activity, definition: Definition, storage: Any) -> None:
    if activity.attr("expiration"):
        parse_duration(activity.attr("expiration"))


register("start", _all)
register("end", run_end)
register("fork", _all)
register("andjoin", _all, join=True)
register("test", run_test, validate=validate_test)
register("wait", run_wait, wake=wake_wait, validate=validate_wait)
register("scheduler", run_scheduler, wake=wake_scheduler, validate=validate_scheduler)
register("signal", run_signal, wake=wake_signal, validate=validate_signal)
register("externalSignal", run_signal, wake=wake_signal, validate=validate_signal)
