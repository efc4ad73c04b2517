"""Starlette routes of the REST API: `routes(instance)` is mounted by server/app.py.

URL grammar under `<base>/<api>/`: `<res>`, `<res>/_count`, `<res>/<field>`, `<res>/byX[/byY]…`,
`<res>/<PKey>`, `<res>/<PKey>/<collection>/[<PKey>|_count]`, `history/<PKey>`,
`resourceType/<res>`, `<res>/metadata`. Handlers run blocking data calls in the thread pool.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..methods.registry import MethodError
from ..query.errors import DataApiError
from ..security.services import security_for
from .auth import Authenticator
from .errors import GENERIC_500, RestError, error_response
from .handlers import Handlers
from .mapping import APIS
from .openapi import docs_page, openapi_document

DEFAULT_BASE = "/rest"
LOG = logging.getLogger("opencampaign.rest")
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"]


def status_of(exc: DataApiError | MethodError) -> int:
    text = str(exc)
    if "same key" in text and "already exists" in text:
        return 409
    return 400 if exc.client else 500


def error_text(exc: DataApiError | MethodError) -> str:
    """Headline first, then its causes (innermost last)."""
    if isinstance(exc, DataApiError):
        return " ".join(reversed(exc.lines))
    return " ".join([f"{exc.code} {exc.message}", *reversed(exc.detail)])


def routes(instance: Any) -> list[BaseRoute]:
    base = str(instance.settings.get("rest", "base", DEFAULT_BASE) or DEFAULT_BASE).rstrip("/")
    handlers = Handlers(instance, base)
    auth = Authenticator(instance)
    limits = security_for(instance).limits  # §6: per API and account, shared with SOAP; 429 + Retry-After
    spec_cache: dict[str, Any] = {}

    async def api_call(request: Request) -> Response:
        api = request.path_params["api"]
        path = request.path_params.get("path", "")
        limit_headers: dict[str, str] = {}
        try:
            if api not in APIS:
                raise RestError(404, f"Unknown API '{api}'")
            ctx = auth.resolve(request)
            if limits.enabled:
                head = path.split("/", 1)[0] or ""
                decision = limits.hit(ctx.login, f"{request.method} {base}/{api}/{head}".rstrip("/"))
                if not decision.allowed:
                    return JSONResponse({"error_code": "429050", "message": "Too many requests"}, status_code=429,
                                        headers=decision.headers())
                limit_headers = decision.headers()
            body: Any = None
            if request.method in ("POST", "PATCH", "PUT"):
                raw = await request.body()
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise RestError(400, "The request body is not valid JSON") from None
            root = str(request.base_url).rstrip("/") + base
            status, payload = await run_in_threadpool(handlers.dispatch, ctx, request.method, api, path,
                                                      dict(request.query_params), body, root)
        except RestError as exc:
            return error_response(exc.status, exc.message)
        except (DataApiError, MethodError) as exc:
            status = status_of(exc)
            if status >= 500:  # server-side causes (database text...) go to the log only
                LOG.error("REST %s %s: %s", request.method, request.url.path, error_text(exc))
                return error_response(500, GENERIC_500)
            return error_response(status, error_text(exc))
        except Exception:  # noqa: BLE001 - never a stack trace on the wire
            LOG.exception("REST %s %s", request.method, request.url.path)
            return error_response(500, GENERIC_500)
        if status == 204 or payload is None:
            return Response(status_code=204, headers=limit_headers)
        return JSONResponse(payload, status_code=status, headers=limit_headers)

    async def openapi(request: Request) -> Response:
        if "doc" not in spec_cache:
            spec_cache["doc"] = openapi_document(handlers.mapping, base)
        return JSONResponse(spec_cache["doc"])

    async def docs(_request: Request) -> Response:
        return HTMLResponse(docs_page(base + "/openapi.json"))

    async def index(request: Request) -> Response:
        root = str(request.base_url).rstrip("/") + base
        return JSONResponse({"content": [{"name": api, "href": f"{root}/{api}/"} for api in APIS],
                             "openapi": f"{root}/openapi.json", "docs": f"{root}/docs"})

    # One route per API: other paths under the base (e.g. /rest/workflow) stay free for other routers.
    api_routes: list[BaseRoute] = []
    for api in APIS:
        api_routes.append(Route(f"{base}/{api}", _bind(api_call, api), methods=METHODS))
        api_routes.append(Route(f"{base}/{api}/{{path:path}}", _bind(api_call, api), methods=METHODS))
    return [
        Route(base + "/openapi.json", openapi, methods=["GET"]),
        Route(base + "/docs", docs, methods=["GET"]),
        Route(base, index, methods=["GET"]),
        Route(base + "/", index, methods=["GET"]),
        *api_routes,
    ]


def _bind(handler: Any, api: str) -> Any:
    async def bound(request: Request) -> Response:
        request.path_params["api"] = api
        return await handler(request)

    return bound
