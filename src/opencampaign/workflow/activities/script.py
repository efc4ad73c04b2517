"""JavaScript code activity, through a pluggable runner (the embedded engine of `scripting/`).

A runner is `runner(source, env) -> None`; `env` holds `instance_vars`, `task_vars`, `vars`
(dicts the script may modify: they become instance, task and outbound event variables),
`log(message)` and the workflow / task ids. `set_runner` installs one; by default the engine of
`opencampaign.scripting` is used when it offers a `run_workflow_script` function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..model import Activity, Definition, DefinitionError
from . import ActivityError, Output, RunContext, register

ScriptRunner = Callable[[str, dict[str, Any]], None]
_runner: ScriptRunner | None = None


def set_runner(runner: ScriptRunner | None) -> None:
    global _runner
    _runner = runner


def current_runner() -> ScriptRunner | None:
    if _runner is not None:
        return _runner
    try:
        module = importlib.import_module("opencampaign.scripting")
    except ImportError:
        return None
    return getattr(module, "run_workflow_script", None)


def _source(activity: Activity) -> str:
    script = activity.elem.find("script")
    return (script.text if script is not None else activity.attr("script")) or ""


def run_js(rc: RunContext) -> list[Output]:
    runner = current_runner()
    if runner is None:
        raise ActivityError(f"Activity '{rc.activity.name}': no JavaScript engine is available")
    event_vars = {k: v for k, v in rc.event_vars.items()}
    env: dict[str, Any] = {"instance_vars": rc.instance_vars, "task_vars": rc.task_vars, "vars": event_vars,
                           "log": rc.log, "workflow_id": rc.workflow_id, "task_id": rc.task_id,
                           "activity": rc.activity.name, "storage": rc.storage, "ctx": rc.ctx}
    try:
        runner(_source(rc.activity), env)
    except ActivityError:
        raise
    except Exception as exc:  # noqa: BLE001 - script errors are the activity's error
        raise ActivityError(f"Activity '{rc.activity.name}': {exc}") from None
    population = rc.inputs[0] if rc.inputs else None
    changed = {k: v for k, v in event_vars.items() if rc.event_vars.get(k) != v}
    return [rc.emit(t.name, population, **changed) for t in rc.activity.transitions]


def validate_js(activity: Activity, definition: Definition, storage: Any) -> None:
    if not _source(activity).strip():
        raise DefinitionError(f"Activity '{activity.name}': no script")


register("js", run_js, validate=validate_js)
register("javascript", run_js, validate=validate_js)
