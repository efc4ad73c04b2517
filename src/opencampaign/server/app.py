"""The HTTP application: one Starlette app for every transport."""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import __version__
from ..instance import Instance
from ..methods.xtk_session import BUILD_NUMBER as SESSION_BUILD_NUMBER
from ..rest.routes import routes as rest_routes
from ..scripting.methods import register_js_methods
from ..security.routes import routes as ims_routes
from ..security.services import security_for
from ..soap import ROUTER_PATH, RequestLog, SoapRouter, soap_routes
from ..soap.observability import log_request, request_id_of
from ..workflow.rest import routes as workflow_routes

BUILD_NUMBER = SESSION_BUILD_NUMBER  # reported as Campaign's build by /r/test and Logon; clients only parse it
log = logging.getLogger("opencampaign.http")


class SoapFastPath:
    """Sends `POST /nl/jsp/soaprouter.jsp` straight to the SOAP router, past Starlette's middleware
    stack and route matching (which cost as much as a short SOAP call), with the request id and
    log line of RequestLog but no wrapped `send`; everything else goes to the Starlette app.
    An unexpected error answers 500, as Starlette would."""

    def __init__(self, app: Starlette, router: SoapRouter):
        self.app = app
        self.state = app.state
        self.router = router

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTER_PATH or scope["method"] != "POST" \
                or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope["headers"])
        extra: dict[str, str] = {}
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["log"] = extra
        start = time.perf_counter()
        status = 500
        try:
            status = await self.router.serve(scope, receive, send, rid.encode("latin-1"))
        except Exception:
            log.exception("SOAP router failed on request %s", rid)
            body = b"Internal Server Error"
            with contextlib.suppress(Exception):  # the response may have started: nothing more to send
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"x-request-id", rid.encode("latin-1"))]})
                await send({"type": "http.response.body", "body": body})
        finally:
            log_request(rid, scope, status, start, extra)


class DataModelPages:
    """The data-model description, rendered once on first request and kept in memory."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self._pages: dict[str, bytes] | None = None
        self._lock = threading.Lock()

    def get(self, path: str) -> bytes | None:
        if self._pages is None:
            with self._lock:
                if self._pages is None:
                    from ..docsite import render_pages

                    self._pages = render_pages(self.instance.registry, placement=self.instance.storage.placement)
        return self._pages.get(path)


def create_app(instance: Instance) -> SoapFastPath:
    pages = DataModelPages(instance)
    host = socket.gethostname()

    async def home(_request: Request) -> Response:
        return RedirectResponse("/datamodel/")

    async def datamodel(request: Request) -> Response:
        path = request.path_params.get("path", "") or "index.html"
        if path.endswith("/"):
            path += "index.html"
        content = pages.get(path)
        if content is None:
            return PlainTextResponse(f"No data-model page '{path}'", status_code=404)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith(".md"):
            media_type = "text/markdown"
        return Response(content, media_type=media_type)

    async def r_test(request: Request) -> Response:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
        client = request.client.host if request.client else ""
        body = (f"<redir status='OK' date='{now}' build='{BUILD_NUMBER}' sha1='opencampaign-{__version__}' "
                f"instance='{instance.data_dir.name}' sourceIP='{client}' host='{request.url.hostname}' "
                f"localHost='{host}'/>")
        return Response(body, media_type="text/xml")

    async def favicon(_request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", home),
        Route("/favicon.ico", favicon),
        Route("/datamodel", lambda r: RedirectResponse("/datamodel/")),
        Route("/datamodel/", datamodel),
        Route("/datamodel/{path:path}", datamodel),
        Route("/r/test", r_test),
    ]
    register_js_methods(instance.registry)  # schema methods implemented by xtk:javascript libraries
    routes += ims_routes(security_for(instance).tokens)
    routes += workflow_routes(instance)
    routes += rest_routes(instance)
    router = SoapRouter(instance)
    routes = soap_routes(instance, router) + routes
    app = Starlette(routes=routes, middleware=[Middleware(RequestLog)])
    app.state.instance = instance
    return SoapFastPath(app, router)


