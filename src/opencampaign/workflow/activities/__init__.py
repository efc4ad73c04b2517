"""Activity types: one handler per XML tag of `<activities>`.

A handler runs one task: it reads its inbound populations (work tables), runs SQL in the cloud
database, and returns the outbound transitions to activate (each with its work table and count),
or a `Wait` (scheduler, wait, external signal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...context import CallContext
from .. import worktables as wt
from ..model import Activity, Definition, DefinitionError


@dataclass
class Population:
    table: str
    schema: str
    count: int
    source: str = ""  # activity that produced it


@dataclass
class Output:
    transition: str
    vars: dict[str, Any] = field(default_factory=dict)
    population: Population | None = None


@dataclass
class Wait:
    until_ms: int | None  # None: until an event arrives
    outputs: list[Output] = field(default_factory=list)  # emitted now (recurring scheduler)


@dataclass
class RunContext:
    storage: Any
    store: Any
    ctx: CallContext  # with $(vars/@x) variables
    workflow_id: int
    task_id: int
    activity: Activity
    definition: Definition
    instance_vars: dict[str, Any]
    event_vars: dict[str, Any]
    task_vars: dict[str, Any]
    inputs: list[Population]
    signal: dict[str, Any] | None = None  # the PostEvent being delivered
    woken: bool = False  # re-run of a waiting task
    messages: list[str] = field(default_factory=list)

    def table_name(self, k: int = 0) -> str:
        return wt.name(self.workflow_id, self.task_id, k)

    def one_input(self) -> Population:
        if not self.inputs:
            raise ActivityError(f"Activity '{self.activity.name}' needs an inbound population")
        return self.inputs[0]

    def cloud(self) -> Any:
        return self.storage.write(wt.CLOUD)

    def log(self, message: str) -> None:
        self.messages.append(message)

    def emit(self, transition: str, population: Population | None = None, **values: Any) -> Output:
        return Output(transition, dict(values), population)

    def transition_names(self) -> list[str]:
        return [t.name for t in self.activity.transitions]

    def create(self, k: int, select: sa.Select | str, schema: str) -> Population:
        name = self.table_name(k)
        with self.cloud() as conn:
            count = wt.create_as(conn, name, select)
        return Population(name, schema, count, self.activity.name)


class ActivityError(RuntimeError):
    """An activity failed at run time: the workflow goes to error with this message."""


Runner = Callable[[RunContext], "list[Output] | Wait"]
Validator = Callable[[Activity, Definition, Any], None]


@dataclass
class ActivityType:
    name: str
    run: Runner
    validate: Validator | None = None
    join: bool = False  # waits for one event per inbound transition (AND-join, set operations)
    wake: Runner | None = None  # waiting tasks: called when due or when a signal arrives


TYPES: dict[str, ActivityType] = {}


def register(name: str, run: Runner, *, validate: Validator | None = None, join: bool = False,
             wake: Runner | None = None) -> None:
    TYPES[name] = ActivityType(name, run, validate, join, wake)


def get(name: str) -> ActivityType | None:
    _load()
    return TYPES.get(name)


def validate_definition(definition: Definition, storage: Any) -> None:
    _load()
    for activity in definition.activities.values():
        kind = TYPES.get(activity.type)
        if kind is None:
            raise DefinitionError(f"Activity '{activity.name}': unknown activity type '{activity.type}'")
        for t in activity.transitions:
            if t.target is not None and t.target not in definition.activities:
                raise DefinitionError(f"Activity '{activity.name}': transition '{t.name}' leads to "
                                      f"activity '{t.target}', which does not exist")
        if kind.validate is not None:
            try:
                kind.validate(activity, definition, storage)
            except DefinitionError as exc:
                text = str(exc)
                raise DefinitionError(text if text.startswith("Activity '") else
                                      f"Activity '{activity.name}': {text}") from None
    if not any(TYPES[a.type].name in INITIAL for a in definition.activities.values()
               if not definition.inbound(a.name)):
        raise DefinitionError("The workflow has no initial activity (start, scheduler or external signal)")


INITIAL = ("start", "scheduler", "signal", "externalSignal")

_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import data, flow, script, sets, targeting  # noqa: F401 - they register themselves
