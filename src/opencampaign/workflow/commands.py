"""Operator commands on workflows (SOAP methods, REST, CLI): queued, applied by a worker.

Start validates the definition at once (a bad definition is refused naming its activity); the
other state changes are recorded as requests (`startRequested`, `pauseRequested`...) that the
worker holding the workflow applies between two tasks, as Campaign's workflow server does.
"""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa

from ..context import CallContext
from . import activities as acts
from . import model
from . import worktables as wt
from .store import Store, utcnow

RUNNING = (model.START_REQUESTED, model.STARTED, model.PAUSE_REQUESTED, model.RESUME_REQUESTED)
ALIVE = (*RUNNING, model.PAUSED)


class CommandError(Exception):
    def __init__(self, code: str, message: str, *, client: bool = True):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.client = client


_stores: dict[int, Store] = {}


def store_of(instance: Any) -> Store:
    store = _stores.get(id(instance.storage))
    if store is None:
        store = _stores[id(instance.storage)] = Store(instance.storage)
    return store


def find(instance: Any, ref: str | int) -> dict[str, Any]:
    row = store_of(instance).find(ref)
    if row is None:
        raise CommandError("XSV-350009", f"The workflow '{ref}' does not exist (identifier or internal name).")
    return row


def validate(instance: Any, wf: dict[str, Any]) -> model.Definition:
    try:
        definition = model.parse_definition(model.activities_element(wf["mData"]))
        acts.validate_definition(definition, instance.storage)
    except model.DefinitionError as exc:
        raise CommandError("WKF-450010", f"Workflow '{wf['sInternalName']}': {exc}") from None
    return definition


def start(instance: Any, ref: str | int, ctx: CallContext, *, variables: dict[str, Any] | None = None,
          keep_vars: bool = False) -> dict[str, Any]:
    store = store_of(instance)
    wf = find(instance, ref)
    wid = wf["iWorkflowId"]
    if wf["iState"] == model.PAUSED and variables is None and not keep_vars:
        return resume(instance, ref, ctx)
    if wf["iState"] in RUNNING and not keep_vars:
        store.log(None, wid, f"Start ignored: the workflow is already {model.STATE_NAMES[wf['iState']]}",
                  level=model.LOG_WARNING)
        return wf
    validate(instance, wf)
    with store.write() as conn:
        if not keep_vars:
            store.set_instance_vars(conn, wid, wf["mData"], variables or {})
        store.update_wf(conn, wid, iState=model.START_REQUESTED, iFailed=0)
        store.ensure_lease_row(conn, wid, wake=None, started_by=(ctx.login_id, ctx.login or "internal"))
        store.wake(conn, wid)
        store.log(conn, wid, f"Start requested by {ctx.login or 'internal'}")
    return store.get(wid)


def restart(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    return start(instance, ref, ctx, keep_vars=True)


def _request(instance: Any, ref: str | int, ctx: CallContext, allowed: tuple[int, ...], state: int, verb: str
             ) -> dict[str, Any]:
    store = store_of(instance)
    wf = find(instance, ref)
    wid = wf["iWorkflowId"]
    if wf["iState"] not in allowed:
        store.log(None, wid, f"{verb} ignored: the workflow is {model.STATE_NAMES.get(wf['iState'], wf['iState'])}",
                  level=model.LOG_WARNING)
        return wf
    with store.write() as conn:
        store.update_wf(conn, wid, iState=state)
        if state == model.RESUME_REQUESTED and wf["iFailed"]:
            t = store.task  # retry the failed tasks of this run
            conn.execute(sa.update(t).where(t.c.iWorkflowId == wid, t.c.iStatus == model.TASK_FAILED,
                                            t.c.tsCreated >= (wf["tsLastStart"] or utcnow()))
                         .values(iStatus=model.TASK_RUNNING, mError=None))
            store.update_wf(conn, wid, iFailed=0)
        store.wake(conn, wid)
        store.log(conn, wid, f"{verb} requested by {ctx.login or 'internal'}")
    return store.get(wid)


def stop(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    return _request(instance, ref, ctx, ALIVE, model.STOP_REQUESTED, "Stop")


def pause(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    return _request(instance, ref, ctx, (model.STARTED, model.START_REQUESTED, model.RESUME_REQUESTED),
                    model.PAUSE_REQUESTED, "Pause")


def resume(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    return _request(instance, ref, ctx, (model.PAUSED, model.PAUSE_REQUESTED), model.RESUME_REQUESTED, "Resume")


def kill(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    """Unconditional stop: Finished now, whatever a worker is doing (its lease is revoked)."""
    store = store_of(instance)
    wf = find(instance, ref)
    wid = wf["iWorkflowId"]
    t, e, lt = store.task, store.event, store.lease
    with store.write() as conn:
        conn.execute(sa.update(lt).where(lt.c.id == wid).values(owner=None, expires=0, wake=None))
        conn.execute(sa.update(t).where(t.c.iWorkflowId == wid, t.c.iStatus.in_(
            [model.TASK_PENDING, model.TASK_RUNNING, model.TASK_WAITING])).values(iStatus=model.TASK_CANCELLED))
        conn.execute(sa.update(e).where(e.c.iWorkflowId == wid, e.c.iStatus == model.EV_PENDING)
                     .values(iStatus=model.EV_CANCELLED))
        store.update_wf(conn, wid, iState=model.FINISHED, tsLastEnd=utcnow())
        store.log(conn, wid, f"Unconditional stop by {ctx.login or 'internal'}", level=model.LOG_WARNING)
    with contextlib.suppress(sa.exc.SQLAlchemyError):  # cloud busy elsewhere: the next start purges them
        wt.drop_all(instance.storage, wid)
    return store.get(wid)


def post_event(instance: Any, ref: str | int, activity: str, transition: str, variables: dict[str, Any],
               complete: bool, ctx: CallContext, *, source: str = "PostEvent") -> dict[str, Any]:
    """PostEvent: errors about the target are written in its log, not returned (§1.11)."""
    store = store_of(instance)
    wf = find(instance, ref)
    wid = wf["iWorkflowId"]
    if wf["iState"] not in ALIVE:
        store.log(None, wid, f"Event for '{activity}' refused: the workflow is not started", activity=activity,
                  level=model.LOG_ERROR)
        return wf
    definition = model.parse_definition(model.activities_element(wf["mData"]))
    target = definition.activities.get(activity)
    if target is None or target.type not in ("signal", "externalSignal"):
        store.log(None, wid, f"Event refused: '{activity}' is not an external signal activity", activity=activity,
                  level=model.LOG_ERROR)
        return wf
    with store.write() as conn:
        store.post_event(conn, wid, activity, transition or "", variables, source=source, complete=complete)
        store.wake(conn, wid)
        store.log(conn, wid, f"Event received from {ctx.login or 'internal'} ({source})", activity=activity)
    return wf


def wakeup(instance: Any, ref: str | int, ctx: CallContext) -> dict[str, Any]:
    """Execute pending tasks now: waiting tasks (wait, scheduler) become due immediately."""
    store = store_of(instance)
    wf = find(instance, ref)
    wid = wf["iWorkflowId"]
    t = store.task
    with store.write() as conn:
        rows = conn.execute(sa.select(t.c.iWorkflowTaskId, t.c.mData).where(
            t.c.iWorkflowId == wid, t.c.iStatus == model.TASK_WAITING)).all()
        for task_id, memo in rows:
            if memo and ' wake="' in memo:
                from .engine import read_task_memo, task_memo

                data = read_task_memo(memo)
                data.wake = 0
                conn.execute(sa.update(t).where(t.c.iWorkflowTaskId == task_id).values(mData=task_memo(data)))
        store.wake(conn, wid)
        store.log(conn, wid, f"Pending tasks run now at the request of {ctx.login or 'internal'}")
    return wf
