"""The JavaScript code activity's runner: a workflow script with `instance`, `task` and `vars`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from .api import run_script
from .engine import WORKFLOW_LIMITS


def run_workflow_script(source: str, env: dict[str, Any]) -> None:
    """Run `source` as the workflow's operator; variables it sets flow back into `env`."""
    storage = env["storage"]
    # Scripts reach the data API through these three; the workflow engine holds no Instance.
    instance = SimpleNamespace(storage=storage, registry=storage.registry, settings=storage.settings,
                               data_dir=storage.settings.data_dir)
    script_globals = {
        "instance": {"id": env.get("workflow_id"), "vars": dict(env["instance_vars"])},
        "task": {"id": env.get("task_id"), "name": env.get("activity"), "vars": dict(env["task_vars"])},
        "vars": dict(env["vars"]),
    }
    result = run_script(instance, source, env["ctx"], limits=WORKFLOW_LIMITS, globals=script_globals,
                        returns=["instance", "task", "vars"])
    log = env.get("log")
    for entry in result.logs:
        if log is not None:
            log(entry.message if entry.level == "info" else f"[{entry.level}] {entry.message}")
    if result.error is not None:
        raise RuntimeError(str(result.error))
    out = result.globals
    _update(env["instance_vars"], (out.get("instance") or {}).get("vars"))
    _update(env["task_vars"], (out.get("task") or {}).get("vars"))
    _update(env["vars"], out.get("vars"))


def _update(target: dict[str, Any], values: Any) -> None:
    if isinstance(values, dict):
        target.update({k: v for k, v in values.items() if isinstance(v, str | int | float | bool) or v is None})
