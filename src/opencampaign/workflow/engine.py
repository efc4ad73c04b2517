"""Runs the tasks of one workflow while its worker holds the lease.

Durable state is in the local database: pending events (`xtk:workflowEvent`) activate
activities; a task (`xtk:workflowTask`) is created `running` in the same transaction that
consumes its events, and completed in the transaction that posts its outbound events. Both
transactions renew the lease conditionally (fencing): a worker that lost its lease cannot commit.
A task found `running` when a worker takes a workflow over was interrupted: it runs again, and
activities are idempotent (work tables are recreated, update data skips committed batches).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..xmlsafe import parse_xml
from . import activities as acts
from . import model
from . import worktables as wt
from .activities import Output, Population, RunContext, Wait
from .expr import context_with_vars
from .model import Definition, DefinitionError
from .store import Store, keyed, now_ms, utcnow

log = logging.getLogger("opencampaign.workflow")
POPULATION_VARS = ("tableName", "schema", "targetSchema", "recCount")


class LeaseLost(RuntimeError):
    pass


@dataclass
class TaskInput:
    inputs: list[Population]
    event_vars: dict[str, str]
    task_vars: dict[str, str]
    wake: int | None = None


def task_memo(data: TaskInput) -> str:
    root = etree.Element("workflowTask")
    v = etree.SubElement(root, "vars")
    for k, val in data.task_vars.items():
        v.set(k, str(val))
    e = etree.SubElement(root, "event")
    for k, val in data.event_vars.items():
        e.set(k, str(val))
    for p in data.inputs:
        etree.SubElement(root, "input", table=p.table, schema=p.schema, count=str(p.count), source=p.source)
    if data.wake is not None:
        root.set("wake", str(data.wake))
    return etree.tostring(root, encoding="unicode")


def read_task_memo(memo: str | None) -> TaskInput:
    if not memo:
        return TaskInput([], {}, {})
    root = parse_xml(memo, source="task mData")
    v, e = root.find("vars"), root.find("event")
    inputs = [Population(i.get("table", ""), i.get("schema", ""), int(i.get("count", "0")), i.get("source", ""))
              for i in root.findall("input")]
    wake = root.get("wake")
    return TaskInput(inputs, dict(e.attrib) if e is not None else {}, dict(v.attrib) if v is not None else {},
                     int(wake) if wake else None)


@dataclass
class Chained:
    """A task created `running` in the transaction that completed its predecessor, to execute next."""
    wf: dict[str, Any]
    definition: Definition
    task: dict[str, Any]
    data: TaskInput


def population_of(values: dict[str, str], source: str) -> Population | None:
    if not values.get("tableName"):
        return None
    return Population(values["tableName"], values.get("schema") or values.get("targetSchema", ""),
                      int(values.get("recCount") or 0), source)


class Engine:
    def __init__(self, instance: Any, store: Store, owner: str, ttl_ms: int):
        self.instance = instance
        self.storage = instance.storage
        self.store = store
        self.owner = owner
        self.ttl_ms = ttl_ms
        self._next: Chained | None = None
        self._deadline = 0.0
        self._definitions: dict[str, Definition] = {}
        self._ctx: CallContext | None = None

    # -- entry point ---------------------------------------------------------------------------
    def run(self, wid: int, budget_s: float = 5.0) -> int | None:
        """Process the workflow until idle or out of budget; returns when it next needs a worker."""
        deadline = self._deadline = time.monotonic() + budget_s
        seen_event = 0
        while True:
            if self._next is not None:  # created with its predecessor's completion: run it now
                chained, self._next = self._next, None
                self._execute(chained.wf, chained.definition, chained.task, chained.data, None, woken=False)
                continue
            wf = self.store.get(wid)
            state = wf["iState"]
            if state == model.START_REQUESTED:
                self._begin(wf)
                continue
            if state == model.PAUSE_REQUESTED:
                self._set_state(wid, model.PAUSED, "Workflow paused")
                return None
            if state == model.RESUME_REQUESTED:
                self._set_state(wid, model.STARTED, "Workflow resumed")
                continue
            if state == model.STOP_REQUESTED:
                self._finish(wf, "Workflow stopped")
                return None
            if state != model.STARTED:
                return None
            progressed, wake, seen = self._step(wf)
            seen_event = max(seen_event, seen)
            if not progressed:
                if wake == -1:
                    self._finish(wf, "Workflow finished")
                    return None
                return self._pending_since(wid, seen_event, wake)
            if time.monotonic() > deadline:
                return now_ms()

    def _pending_since(self, wid: int, seen: int, wake: int | None) -> int | None:
        e = self.store.event
        with self.store.engine.connect() as conn:
            newer = conn.execute(sa.select(sa.func.count()).select_from(e).where(
                e.c.iWorkflowId == wid, e.c.iStatus == model.EV_PENDING, e.c.iWorkflowEventId > seen)).scalar()
        return now_ms() if newer else wake

    # -- state changes -------------------------------------------------------------------------
    @contextmanager
    def fenced(self, wid: int) -> Iterator[sa.Connection]:
        """A local write transaction that commits only while this worker holds the lease."""
        with self.store.write() as conn:
            if not self.store.renew(conn, wid, self.owner, self.ttl_ms):
                raise LeaseLost(f"lease of workflow {wid} lost")
            yield conn

    def _set_state(self, wid: int, state: int, message: str, **values: Any) -> None:
        with self.fenced(wid) as conn:
            self.store.update_wf(conn, wid, iState=state, **values)
            self.store.log(conn, wid, message)

    def _definition(self, wf: dict[str, Any]) -> Definition:
        memo = wf["mData"] or ""
        definition = self._definitions.get(memo)
        if definition is None:
            definition = model.parse_definition(model.activities_element(wf["mData"]))
            acts.validate_definition(definition, self.storage)
            self._definitions = {memo: definition}
        return definition

    def _begin(self, wf: dict[str, Any]) -> None:
        wid = wf["iWorkflowId"]
        try:
            definition = self._definition(wf)
        except DefinitionError as exc:
            self._error(wid, None, "", str(exc))
            return
        if wf.get("tsLastStart") is not None:  # populations of a previous run (none before the first one)
            wt.drop_all(self.storage, wid)
        self._ctx = None
        with self.fenced(wid) as conn:
            self._cancel(conn, wid)
            posted = []
            for activity in definition.activities.values():
                if activity.type in acts.INITIAL and not definition.inbound(activity.name):
                    eid = self.store.post_event(conn, wid, activity.name, "", {}, source="start")
                    posted.append((eid, activity.name, {}))
            self.store.update_wf(conn, wid, iState=model.STARTED, iFailed=0, tsLastStart=utcnow())
            self.store.log(conn, wid, f"Workflow started by {self._context(wid).login}")
            self._chain(conn, {**wf, "iState": model.STARTED}, definition, posted, "", 0)

    def _cancel(self, conn: sa.Connection, wid: int) -> None:
        t, e = self.store.task, self.store.event
        conn.execute(sa.update(t).where(t.c.iWorkflowId == wid, t.c.iStatus.in_(
            [model.TASK_PENDING, model.TASK_RUNNING, model.TASK_WAITING])).values(iStatus=model.TASK_CANCELLED))
        conn.execute(sa.update(e).where(e.c.iWorkflowId == wid, e.c.iStatus == model.EV_PENDING)
                     .values(iStatus=model.EV_CANCELLED))

    def _finish(self, wf: dict[str, Any], message: str) -> None:
        wid = wf["iWorkflowId"]
        with self.fenced(wid) as conn:
            self._cancel(conn, wid)
            self.store.update_wf(conn, wid, iState=model.FINISHED, tsLastEnd=utcnow())
            self.store.log(conn, wid, message)
        if not wf.get("iKeepResult"):
            wt.drop_all(self.storage, wid)

    def _idle(self, conn: sa.Connection, wid: int) -> bool:
        """Nothing pending, running or waiting (read in the caller's transaction)."""
        t, e = self.store.task, self.store.event
        busy = conn.execute(sa.select(t.c.iWorkflowTaskId).where(t.c.iWorkflowId == wid, t.c.iStatus.in_(
            [model.TASK_PENDING, model.TASK_RUNNING, model.TASK_WAITING])).limit(1)).first()
        if busy is not None:
            return False
        return conn.execute(sa.select(e.c.iWorkflowEventId).where(
            e.c.iWorkflowId == wid, e.c.iStatus == model.EV_PENDING).limit(1)).first() is None

    def _error(self, wid: int, task_id: int | None, activity: str, message: str) -> None:
        log.info("workflow %s: %s", wid, message)
        with self.fenced(wid) as conn:
            if task_id:
                t = self.store.task
                conn.execute(sa.update(t).where(t.c.iWorkflowTaskId == task_id).values(
                    iStatus=model.TASK_FAILED, mError=message, tsCompletion=utcnow()))
            self.store.update_wf(conn, wid, iState=model.PAUSED, iFailed=1)
            self.store.log(conn, wid, message, activity=activity, level=model.LOG_ERROR, task_id=task_id or 0)

    # -- one step ------------------------------------------------------------------------------
    def _step(self, wf: dict[str, Any]) -> tuple[bool, int | None, int]:
        """Run one task. Returns (progressed, next wake or -1 when the workflow is done, last event seen)."""
        wid = wf["iWorkflowId"]
        try:
            definition = self._definition(wf)
        except DefinitionError as exc:
            self._error(wid, None, "", str(exc))
            return True, None, 0
        t = self.store.task
        with self.store.engine.connect() as conn:
            tasks = conn.execute(keyed(t).where(t.c.iWorkflowId == wid, t.c.iStatus.in_(
                [model.TASK_RUNNING, model.TASK_WAITING])).order_by(t.c.iWorkflowTaskId)).mappings().all()
            events = self.store.pending_events(conn, wid)
        seen = max((ev["iWorkflowEventId"] for ev in events), default=0)
        for task in tasks:  # interrupted by a crash: run again
            if task["iStatus"] == model.TASK_RUNNING:
                self.store.log(None, wid, "Task interrupted: executed again", activity=task["sActivity"],
                               level=model.LOG_WARNING, task_id=task["iWorkflowTaskId"])
                self._execute(wf, definition, dict(task), read_task_memo(task["mData"]), None, woken=False)
                return True, None, seen
        waiting = {task["sActivity"]: dict(task) for task in tasks if task["iStatus"] == model.TASK_WAITING}
        if self._consume_event(wf, definition, events, waiting):
            return True, None, seen
        now = now_ms()
        wakes = []
        for task in waiting.values():
            memo = read_task_memo(task["mData"])
            if memo.wake is not None and memo.wake <= now:
                self._execute(wf, definition, task, memo, None, woken=True)
                return True, None, seen
            if memo.wake is not None:
                wakes.append(memo.wake)
        if not waiting and not events:
            return False, -1, seen
        return False, min(wakes) if wakes else None, seen

    def _consume_event(self, wf: dict[str, Any], definition: Definition, events: list[dict[str, Any]],
                       waiting: dict[str, dict[str, Any]]) -> bool:
        wid = wf["iWorkflowId"]
        sources = self._event_sources(events)
        for ev in events:
            name = ev["sActivity"]
            activity = definition.activities.get(name)
            if activity is None:
                self._drop_events(wid, [ev], model.EV_FAILED, f"Event for unknown activity '{name}' ignored")
                return True
            kind = acts.get(activity.type)
            assert kind is not None
            values = read_event_vars(ev["mData"])
            if ev["sSource"] in ("PostEvent", "API"):
                signal = {"transition": ev["sTransition"] or "", "vars": values, "complete": bool(ev["iComplete"])}
                task = waiting.get(name)
                if task is not None:
                    self._take_events(wid, [ev])
                    self._execute(wf, definition, task, read_task_memo(task["mData"]), signal, woken=True)
                else:
                    self._start_task(wf, definition, activity.name, [ev], TaskInput([], values, {}), signal)
                return True
            if kind.join:
                chosen = self._join_ready(definition, name, [x for x in events if x["sActivity"] == name], sources)
                if chosen is None:
                    continue
                inputs = [p for x in chosen if (p := population_of(read_event_vars(x["mData"]), sources.get(
                    x["iWorkflowEventId"], ""))) is not None]
                merged: dict[str, str] = {}
                for x in chosen:
                    merged.update(read_event_vars(x["mData"]))
                self._start_task(wf, definition, name, chosen, TaskInput(inputs, merged, {}), None)
                return True
            population = population_of(values, sources.get(ev["iWorkflowEventId"], ""))
            self._start_task(wf, definition, name, [ev], TaskInput([population] if population else [], values, {}), None)
            return True
        return False

    def _event_sources(self, events: list[dict[str, Any]]) -> dict[int, str]:
        ids = {ev["iTaskId"] for ev in events if ev["iTaskId"]}
        if not ids:
            return {}
        t = self.store.task
        with self.store.engine.connect() as conn:
            names = dict(conn.execute(sa.select(t.c.iWorkflowTaskId, t.c.sActivity).where(t.c.iWorkflowTaskId.in_(ids))).all())
        return {ev["iWorkflowEventId"]: names.get(ev["iTaskId"], "") for ev in events}

    def _join_ready(self, definition: Definition, name: str, events: list[dict[str, Any]],
                    sources: dict[int, str]) -> list[dict[str, Any]] | None:
        chosen: list[dict[str, Any]] = []
        for inbound in definition.inbound(name):
            match = next((ev for ev in events if sources.get(ev["iWorkflowEventId"]) == inbound.source
                          and ev["sTransition"] == inbound.name and ev not in chosen), None)
            if match is None:
                return None
            chosen.append(match)
        return chosen

    def _take_events(self, wid: int, events: list[dict[str, Any]], conn: sa.Connection | None = None) -> None:
        e = self.store.event
        ids = [ev["iWorkflowEventId"] for ev in events]

        def run(c: sa.Connection) -> None:
            c.execute(sa.update(e).where(e.c.iWorkflowEventId.in_(ids)).values(
                iStatus=model.EV_PROCESSED, tsProcessing=utcnow()))

        if conn is not None:
            run(conn)
            return
        with self.fenced(wid) as c:
            run(c)

    def _drop_events(self, wid: int, events: list[dict[str, Any]], status: int, message: str) -> None:
        e = self.store.event
        with self.fenced(wid) as conn:
            conn.execute(sa.update(e).where(e.c.iWorkflowEventId.in_([ev["iWorkflowEventId"] for ev in events]))
                         .values(iStatus=status, tsProcessing=utcnow()))
            self.store.log(conn, wid, message, level=model.LOG_WARNING)

    def _start_task(self, wf: dict[str, Any], definition: Definition, name: str, events: list[dict[str, Any]],
                    data: TaskInput, signal: dict[str, Any] | None) -> None:
        wid = wf["iWorkflowId"]
        task_id = self.store.new_ids("xtk:workflowTask", 1)[0]
        now = utcnow()
        with self.fenced(wid) as conn:
            self._take_events(wid, events, conn)
            conn.execute(sa.insert(self.store.task).values(
                iWorkflowTaskId=task_id, sActivity=name, iStatus=model.TASK_RUNNING, tsCreated=now, tsProcessing=now,
                iWorkflowId=wid, mData=task_memo(data)))
        task = {"iWorkflowTaskId": task_id, "sActivity": name}
        self._execute(wf, definition, task, data, signal, woken=False)

    # -- execution -----------------------------------------------------------------------------
    def _execute(self, wf: dict[str, Any], definition: Definition, task: dict[str, Any], data: TaskInput,
                 signal: dict[str, Any] | None, *, woken: bool) -> None:
        wid, task_id = wf["iWorkflowId"], task["iWorkflowTaskId"]
        activity = definition.activities[task["sActivity"]]
        kind = acts.get(activity.type)
        assert kind is not None
        instance_vars = model.vars_from_xml(_variables(wf["mData"]))
        original_instance = dict(instance_vars)
        rc = RunContext(self.storage, self.store, context_with_vars(self._context(wid), instance_vars, data.event_vars,
                                                                  data.task_vars),
                        wid, task_id, activity, definition, instance_vars, dict(data.event_vars), dict(data.task_vars),
                        list(data.inputs), signal, woken)
        try:
            runner = kind.wake if woken and kind.wake is not None else kind.run
            result = runner(rc)
        except LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001 - any activity failure errors the workflow, not the worker
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not message.startswith("Activity '"):
                message = f"Activity '{activity.name}': {message}"
            log.debug("task %s failed", task_id, exc_info=True)
            self._error(wid, task_id, activity.name, message)
            return
        _test_pause(activity.name)
        outputs = result.outputs if isinstance(result, Wait) else result
        finished = False
        with self.fenced(wid) as conn:
            entries = [(message, activity.name, task_id) for message in rc.messages]
            posted = self._post_outputs(conn, wid, definition, activity.name, task_id, data.event_vars, outputs,
                                        entries)
            t = self.store.task
            if isinstance(result, Wait):
                memo = task_memo(TaskInput(data.inputs, data.event_vars, rc.task_vars, result.until_ms))
                conn.execute(sa.update(t).where(t.c.iWorkflowTaskId == task_id).values(
                    iStatus=model.TASK_WAITING, mData=memo))
            else:
                conn.execute(sa.update(t).where(t.c.iWorkflowTaskId == task_id).values(
                    iStatus=model.TASK_COMPLETED, tsCompletion=utcnow(),
                    mData=task_memo(TaskInput(data.inputs, data.event_vars, rc.task_vars))))
            if instance_vars != original_instance:
                memo = self.store.set_instance_vars(conn, wid, self.store.get(wid)["mData"], instance_vars)
                wf = {**wf, "mData": memo}
            # Fewer commits: the next task is created in this transaction (it consumes its event here), and
            # the workflow finishes here when nothing is left; both only while it is still started.
            if time.monotonic() < self._deadline:
                w = self.store.wf
                state = conn.execute(sa.select(w.c.iState).where(w.c.iWorkflowId == wid)).scalar()
                if state == model.STARTED:
                    chained = self._chain(conn, wf, definition, posted, activity.name, task_id)
                    if not chained and not isinstance(result, Wait) and self._idle(conn, wid):
                        self.store.update_wf(conn, wid, iState=model.FINISHED, tsLastEnd=utcnow())
                        entries.append(("Workflow finished", "", 0))
                        finished = True
            self.store.log_many(conn, wid, entries)
        if finished and not wf.get("iKeepResult"):
            wt.drop_all(self.storage, wid)

    def _chain(self, conn: sa.Connection, wf: dict[str, Any], definition: Definition,
               posted: list[tuple[int, str, dict[str, Any]]], source: str, task_id: int) -> bool:
        """Create the task of the first event just posted whose activity needs no other event (no join)."""
        wid = wf["iWorkflowId"]
        for eid, target, values in posted:
            activity = definition.activities.get(target)
            kind = acts.get(activity.type) if activity is not None else None
            if kind is None or kind.join:
                continue
            population = population_of(values, source)
            data = TaskInput([population] if population else [], {k: str(v) for k, v in values.items()}, {})
            new_id = self.store.new_ids("xtk:workflowTask", 1)[0]
            now = utcnow()
            e = self.store.event
            conn.execute(sa.update(e).where(e.c.iWorkflowEventId == eid).values(
                iStatus=model.EV_PROCESSED, tsProcessing=now))
            conn.execute(sa.insert(self.store.task).values(
                iWorkflowTaskId=new_id, sActivity=target, iStatus=model.TASK_RUNNING, tsCreated=now,
                tsProcessing=now, iWorkflowId=wid, mData=task_memo(data)))
            self._next = Chained(wf, definition, {"iWorkflowTaskId": new_id, "sActivity": target}, data)
            return True
        return False

    def _post_outputs(self, conn: sa.Connection, wid: int, definition: Definition, name: str, task_id: int,
                      inbound: dict[str, str], outputs: list[Output], entries: list[tuple[str, str, int]]
                      ) -> list[tuple[int, str, dict[str, Any]]]:
        """Post the outbound events; their log lines go into `entries`. Returns (event id, target, vars)."""
        activity = definition.activities[name]
        posted = []
        for out in outputs:
            transition = activity.transition(out.transition)
            if transition is None:
                continue
            values = {k: v for k, v in inbound.items() if k not in POPULATION_VARS}
            values.update(out.vars)
            p = out.population
            if p is not None:
                values.update(tableName=p.table, schema=p.schema, targetSchema=p.schema, recCount=p.count)
                text = f"{transition.name}: {p.count} row(s) in {p.table}"
            else:
                text = f"{transition.name}: activated"
            target = transition.target
            entries.append((text + (f" -> {target}" if target else ""), name, task_id))
            if target:
                eid = self.store.post_event(conn, wid, target, transition.name, values, source="transition",
                                            task_id=task_id)
                posted.append((eid, target, values))
        return posted

    def _context(self, wid: int) -> CallContext:
        if self._ctx is None:
            lease = self.store.lease_row(wid) or {}
            self._ctx = CallContext(login=lease.get("started_by") or "internal",
                                    login_id=lease.get("started_by_id") or 0, rights=frozenset({"admin"}),
                                    allow_sql=False)
        return self._ctx


def _test_pause(activity: str) -> None:
    # Test hook (`activity:seconds`): a crash window between an activity's work and its completion.
    spec = os.environ.get("OPENCAMPAIGN_WORKFLOW_TEST_TASK_PAUSE", "")
    name, _, seconds = spec.partition(":")
    if name == activity and seconds:
        log.warning("test pause in %s", activity)
        time.sleep(float(seconds))


def read_event_vars(memo: str | None) -> dict[str, str]:
    if not memo:
        return {}
    root = parse_xml(memo, source="event mData")
    v = root if root.tag == "vars" else root.find("vars")
    return dict(v.attrib) if v is not None else {}


def _variables(memo: str | None) -> etree._Element | None:
    if not memo:
        return None
    root = parse_xml(memo, source="workflow mData")
    return root.find("variables")
