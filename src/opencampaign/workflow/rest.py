"""REST workflow execution (business-rest-auth.md §4.6): commands and external-signal triggers.

- `POST <base>/workflow/execution/<id>/commands {"method": "start"|"pause"|"resume"|"stop"}`
- `GET <base>/workflow/execution/<id>`: state, and `activities.activity.<signal>.trigger.href`
- `POST <trigger href> {"source": "API", "parameters": {...}}`: parameters must be declared on
  the signal activity (`<parameter name=".." type="string|number|boolean|datetime"/>`).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from . import commands, model

MAX_PAYLOAD = 64 * 1024
GENERIC = "RST-360011 An error has occurred - please contact your administrator."
COMMANDS = {"start": commands.start, "pause": commands.pause, "resume": commands.resume, "stop": commands.stop}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def check_parameters(activity: model.Activity, params: Any) -> dict[str, str]:
    """Declared, typed signal parameters -> event variables; refusals use Campaign's error texts."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(f"{GENERIC} 'parameters' must be an object.")
    declared = {p.get("name"): (p.get("type") or "string") for p in activity.elem.iter("parameter")}
    result: dict[str, str] = {}
    for name, value in params.items():
        if name not in declared:
            raise ValueError(f"{GENERIC} '{name}' parameter isn't defined in signal activity. "
                             f"XTK-170006 Unable to parse expression 'HandleTrigger(@name, $(source), $({{parameters}}))'.")
        result[name] = _typed(name, declared[name], value)
    return result


def _typed(name: str, kind: str, value: Any) -> str:
    ok = {"string": isinstance(value, str), "number": isinstance(value, int | float) and not isinstance(value, bool),
          "boolean": isinstance(value, bool)}.get(kind)
    if kind == "datetime":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            ok = True
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(f"{GENERIC} Parameter '{name}' must be of type {kind}.")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def routes(instance: Any) -> list[BaseRoute]:
    from ..rest.auth import Authenticator
    from ..rest.errors import RestError

    base = str(instance.settings.get("rest", "base", "/rest") or "/rest").rstrip("/")
    interval = float(instance.settings.get("workflow", "signal_min_interval_seconds", 600) or 0)
    auth = Authenticator(instance)
    last_trigger: dict[tuple[int, str], float] = {}
    lock = threading.Lock()

    async def _body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_PAYLOAD:
            raise RestError(413, f"{GENERIC} The payload exceeds {MAX_PAYLOAD // 1024} KB.")
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise RestError(400, "The request body is not valid JSON") from None

    async def execution(request: Request) -> Response:
        try:
            auth.resolve(request)
            wf = await run_in_threadpool(commands.find, instance, request.path_params["wid"])
            definition = model.parse_definition(model.activities_element(wf["mData"]))
        except RestError as exc:
            return _error(exc.status, exc.message)
        except commands.CommandError as exc:
            return _error(404, exc.message)
        except model.DefinitionError as exc:
            return _error(500, f"{GENERIC} {exc}")
        root = str(request.url).split("?")[0].rstrip("/")
        signals = {a.name: {"name": a.name, "trigger": {"href": f"{root}/activities/activity/{a.name}/trigger"}}
                   for a in definition.activities.values() if a.type in ("signal", "externalSignal")}
        state = wf["iState"]
        return JSONResponse({"PKey": str(wf["iWorkflowId"]), "id": wf["sInternalName"], "label": wf["sLabel"],
                             "state": model.STATE_NAMES.get(state, str(state)), "failed": bool(wf["iFailed"]),
                             "activities": {"activity": signals}})

    async def command(request: Request) -> Response:
        try:
            ctx = auth.resolve(request)
            body = await _body(request)
            method = str(body.get("method", "")).lower() if isinstance(body, dict) else ""
            if method not in COMMANDS:
                raise RestError(400, f"{GENERIC} Unknown command '{method}' (start, pause, resume, stop).")
            wf = await run_in_threadpool(COMMANDS[method], instance, request.path_params["wid"], ctx)
        except RestError as exc:
            return _error(exc.status, exc.message)
        except commands.CommandError as exc:
            return _error(404 if exc.code == "XSV-350009" else 400, f"{GENERIC} {exc}")
        return JSONResponse({"PKey": str(wf["iWorkflowId"]), "state": model.STATE_NAMES.get(wf["iState"])})

    async def trigger(request: Request) -> Response:
        name = request.path_params["activity"]
        try:
            ctx = auth.resolve(request)
            body = await _body(request)
            if not isinstance(body, dict) or not body.get("source"):
                raise RestError(400, f"{GENERIC} The 'source' property is mandatory.")
            wf = await run_in_threadpool(commands.find, instance, request.path_params["wid"])
            definition = model.parse_definition(model.activities_element(wf["mData"]))
            activity = definition.activities.get(name)
            if activity is None or activity.type not in ("signal", "externalSignal"):
                raise RestError(404, f"{GENERIC} '{name}' is not a signal activity of the workflow.")
            if wf["iState"] not in commands.ALIVE:
                raise RestError(400, f"{GENERIC} The workflow '{wf['sInternalName']}' is not started.")
            try:
                values = check_parameters(activity, body.get("parameters"))
            except ValueError as exc:
                raise RestError(500, str(exc)) from None
            key = (wf["iWorkflowId"], name)
            with lock:
                last = last_trigger.get(key)
                if interval and last is not None and time.monotonic() - last < interval:
                    # ACS answers with plain text during the 10-minute window
                    return PlainTextResponse("The signal cannot be triggered more often than every "
                                             f"{int(interval // 60)} minutes.", status_code=429)
                last_trigger[key] = time.monotonic()
            values["source"] = str(body["source"])
            await run_in_threadpool(commands.post_event, instance, wf["iWorkflowId"], name, "", values, False, ctx,
                                    source="API")
        except RestError as exc:
            return _error(exc.status, exc.message)
        except commands.CommandError as exc:
            return _error(404, exc.message)
        return JSONResponse({"PKey": str(wf["iWorkflowId"]), "activity": name, "source": body["source"]})

    prefix = f"{base}/workflow/execution/{{wid}}"
    return [Route(prefix, execution, methods=["GET"]),
            Route(prefix + "/commands", command, methods=["POST"]),
            Route(prefix + "/activities/activity/{activity}/trigger", trigger, methods=["POST"])]
