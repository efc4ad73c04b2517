"""Workflow definitions: the `<activities>` XML of an xtk:workflow, parsed and validated.

Each child of `<activities>` is one activity; its tag is the activity type, `@name` its unique
name, and `<transitions>` holds its outgoing transitions (`<anyTag name=".." target=".."/>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..xmlsafe import XMLInputError, parse_xml

# xtk:workflow:state
EDITION, START_REQUESTED, STARTED, PAUSE_REQUESTED, PAUSED, RESUME_REQUESTED, STOP_REQUESTED, FINISHED = (
    0, 10, 11, 12, 13, 14, 15, 20)
# xtk:workflowTask:status
TASK_PENDING, TASK_RUNNING, TASK_WAITING, TASK_COMPLETED, TASK_FAILED, TASK_CANCELLED = 0, 1, 2, 3, 4, 5
# xtk:workflowEvent:status
EV_PENDING, EV_PROCESSING, EV_PROCESSED, EV_CANCELLED, EV_FAILED = 0, 1, 2, 3, 4
# xtk:workflowLog:logType
LOG_INFO, LOG_WARNING, LOG_ERROR, LOG_DEBUG = 0, 1, 2, 3

STATE_NAMES = {EDITION: "edition", START_REQUESTED: "startRequested", STARTED: "started",
               PAUSE_REQUESTED: "pauseRequested", PAUSED: "paused", RESUME_REQUESTED: "resumeRequested",
               STOP_REQUESTED: "stopRequested", FINISHED: "finished"}


class DefinitionError(ValueError):
    """A workflow definition that cannot run; the message names the activity."""


@dataclass(frozen=True)
class Transition:
    name: str
    target: str | None  # None: the transition ends the branch
    source: str


@dataclass
class Activity:
    name: str
    type: str
    elem: etree._Element
    transitions: list[Transition] = field(default_factory=list)

    def attr(self, name: str, default: str = "") -> str:
        value = self.elem.get(name)
        return default if value is None else value

    def transition(self, name: str = "") -> Transition | None:
        if not name:
            return self.transitions[0] if self.transitions else None
        return next((t for t in self.transitions if t.name == name), None)


@dataclass
class Definition:
    activities: dict[str, Activity]

    def inbound(self, name: str) -> list[Transition]:
        return [t for a in self.activities.values() for t in a.transitions if t.target == name]

    def get(self, name: str) -> Activity:
        try:
            return self.activities[name]
        except KeyError:
            raise DefinitionError(f"Activity '{name}' does not exist in the workflow") from None


def activities_element(memo: str | None) -> etree._Element | None:
    """The `<activities>` element of an xtk:workflow mData memo."""
    if not memo:
        return None
    try:
        root = parse_xml(memo, source="workflow mData")
    except XMLInputError as exc:
        raise DefinitionError(str(exc)) from None
    return root if root.tag == "activities" else root.find("activities")


def parse_definition(activities: etree._Element | None) -> Definition:
    result: dict[str, Activity] = {}
    if activities is None:
        raise DefinitionError("The workflow has no activities")
    for elem in activities:
        if not isinstance(elem.tag, str):
            continue
        name = elem.get("name") or ""
        if not name:
            raise DefinitionError(f"An activity of type '{elem.tag}' has no name")
        if name in result:
            raise DefinitionError(f"Activity '{name}': another activity has the same name")
        transitions: list[Transition] = []
        holder = elem.find("transitions")
        for t in holder if holder is not None else []:
            if not isinstance(t.tag, str):
                continue
            transitions.append(Transition(t.get("name") or str(t.tag), t.get("target") or None, name))
        result[name] = Activity(name, str(elem.tag), elem, transitions)
    if not result:
        raise DefinitionError("The workflow has no activities")
    return Definition(result)


def vars_to_xml(values: dict[str, Any], tag: str = "variables") -> str:
    root = etree.Element(tag)
    for key, value in values.items():
        if value is None:
            continue
        root.set(key, _text(value))
    return etree.tostring(root, encoding="unicode")


def vars_from_xml(text: str | etree._Element | None) -> dict[str, str]:
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    root = text if isinstance(text, etree._Element) else parse_xml(text, source="variables")
    if root.tag != "variables" and root.find("variables") is not None:
        root = root.find("variables")
    return dict(root.attrib)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
