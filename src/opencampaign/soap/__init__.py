"""The SOAP transport: Campaign's `/nl/jsp/*` endpoints (soap-protocol.md, docs/soap.md)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .. import methods as _methods  # noqa: F401 - registers the method implementations
from .dispatch import credentials
from .envelope import SoapRequest
from .jsp import HealthPages
from .observability import RequestLog
from .router import SoapRouter
from .wsdl import PUBLIC_SCHEMAS, build_wsdl

__all__ = ["ROUTER_PATH", "RequestLog", "SoapRouter", "soap_routes"]
ROUTER_PATH = "/nl/jsp/soaprouter.jsp"


def soap_routes(instance: Any, router: SoapRouter | None = None) -> list[Route]:
    router = router or SoapRouter(instance)
    health = HealthPages(instance)

    async def schema_wsdl(request: Request) -> Response:
        schema_id = request.query_params.get("schema", "")
        schema = instance.registry.find(schema_id)
        if schema is None:
            return PlainTextResponse(f"Unknown schema '{schema_id[:128]}'", status_code=404)
        if schema.id not in PUBLIC_SCHEMAS:
            creds = credentials(request.headers, request.cookies, SoapRequest("", "", []))
            token = creds.bearer or creds.session
            security = None if creds.bearer else creds.security
            session = await run_in_threadpool(router.dispatcher.store.resolve, token, security) if token else None
            if session is None:
                return PlainTextResponse("XSV-350008 Session has expired or is invalid. Please reconnect.",
                                         status_code=401)
        location = str(request.base_url).rstrip("/") + "/nl/jsp/soaprouter.jsp"
        body = build_wsdl(instance.registry, schema, location)
        return Response(body, media_type="text/xml; charset=utf-8")

    return [
        Route(ROUTER_PATH, router, methods=["POST"]),  # a plain ASGI app (SoapFastPath usually comes first)
        Route("/nl/jsp/ping.jsp", health.ping, methods=["GET"]),
        Route("/nl/jsp/mcPing.jsp", health.mc_ping, methods=["GET"]),
        Route("/nl/jsp/schemawsdl.jsp", schema_wsdl, methods=["GET"]),
    ]
