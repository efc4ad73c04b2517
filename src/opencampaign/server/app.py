"""The HTTP application: one Starlette app for every transport."""

from __future__ import annotations

import mimetypes
import socket
import threading
from datetime import UTC, datetime

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
from ..soap import RequestLog, soap_routes
from ..workflow.rest import routes as workflow_routes

BUILD_NUMBER = SESSION_BUILD_NUMBER  # reported as Campaign's build by /r/test and Logon; clients only parse it


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


def create_app(instance: Instance) -> Starlette:
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
    routes = soap_routes(instance) + routes  # first: the SOAP router is the hot path, routes match in order
    app = Starlette(routes=routes, middleware=[Middleware(RequestLog)])
    app.state.instance = instance
    return app


