"""`POST /nl/jsp/soaprouter.jsp`: the HTTP side of the SOAP router.

Hostile input is refused before any work: bodies over `[server] max_body_bytes` (413), non-XML
content types (415), bodies that trickle in too slowly (408); XML with DTDs or entities, deep
nesting or no recognisable method gets a SOAP fault. Method calls run in a worker thread (they
block on the databases); faults go out with HTTP 200 so that clients read the Campaign code.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..security.sessions import store_for
from .dispatch import Action, Dispatcher, action_from_body, credentials, parse_action
from .envelope import build_fault, parse_request
from .faults import BAD_REQUEST, SoapFault

XML_TYPES = {"text/xml", "application/soap+xml", "application/xml"}
BODY_TIMEOUT = 30.0  # seconds to receive a whole body
MEDIA_TYPE = "text/xml; charset=utf-8"


class BodyTooLarge(Exception):
    pass


def _media(content_type: str) -> tuple[str, dict[str, str]]:
    kind, *params = [p.strip() for p in content_type.split(";")]
    values = {}
    for param in params:
        key, _, value = param.partition("=")
        values[key.strip().lower()] = value.strip().strip('"')
    return kind.lower(), values


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class SoapRouter:
    def __init__(self, instance: Any):
        self.instance = instance
        self.dispatcher = Dispatcher(instance, store_for(instance))
        self.max_body = int(instance.settings.get("server", "max_body_bytes", 4 * 1024 * 1024))
        # A few worker threads, not Starlette's 40: calls are mostly Python (GIL-bound), and dozens of
        # threads contending for the GIL multiply tail latency. 0 runs calls on the event loop.
        threads = int(instance.settings.get("server", "soap_threads", 4))
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="soap") if threads > 0 else None

    def _fault(self, request: Request, fault: SoapFault) -> Response:
        log = request.scope.get("state", {}).get("log")
        if log is not None:
            log["fault"] = fault.code
        return Response(build_fault(fault), status_code=fault.status, media_type=MEDIA_TYPE, headers=fault.headers)

    async def handle(self, request: Request) -> Response:
        state = request.scope.get("state", {})
        extras = {"request-id": state.get("request_id", ""),
                  "remote-addr": request.client.host if request.client else "",
                  "user-agent": request.headers.get("user-agent", "")[:256]}
        try:
            kind, params = _media(request.headers.get("content-type", ""))
            if kind and kind not in XML_TYPES:
                raise SoapFault(BAD_REQUEST, f"Unsupported content type '{kind[:64]}': SOAP requests are text/xml "
                                "or application/soap+xml.", status=415)
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                raise SoapFault(BAD_REQUEST, f"Request body larger than {self.max_body} bytes.", status=413)
            try:
                async with asyncio.timeout(BODY_TIMEOUT):  # cheaper than wait_for: no extra task
                    body = await _read_body(request, self.max_body)
            except BodyTooLarge:
                raise SoapFault(BAD_REQUEST, f"Request body larger than {self.max_body} bytes.", status=413) from None
            except TimeoutError:
                raise SoapFault(BAD_REQUEST, "Request body not received in time.", status=408) from None
            soap = parse_request(body, params.get("charset"))
            action = self._action(request, soap, params)
            if "log" in state:
                state["log"]["action"] = f"{action.urn}#{action.method}"
            creds = credentials(request.headers, request.cookies, soap)
            if self.executor is None:
                reply, headers = self.dispatcher.dispatch(soap, action, creds, extras)
            else:
                loop = asyncio.get_running_loop()
                reply, headers = await loop.run_in_executor(self.executor, self.dispatcher.dispatch, soap, action,
                                                            creds, extras)
        except SoapFault as fault:
            return self._fault(request, fault)
        except ClientDisconnect:
            return Response(status_code=400)
        return Response(reply, media_type=MEDIA_TYPE, headers=headers)

    @staticmethod
    def _action(request: Request, soap: Any, params: dict[str, str]) -> Action:
        header = request.headers.get("soapaction")
        raw = header if header and header.strip().strip('"') else params.get("action", "")
        if raw:
            action = parse_action(raw)
            if action is None:
                raise SoapFault(BAD_REQUEST, f"Malformed SOAPAction '{raw.strip()[:128]}': expected "
                                "'namespace:schema#Method' or 'interface|namespace:schema#Method'.")
            if action.method.lower() != soap.method.lower():
                raise SoapFault(BAD_REQUEST, f"The SOAPAction method '{action.method}' does not match the body "
                                f"element '{soap.method[:64]}'.")
            return action
        action = action_from_body(soap)  # SOAP 1.2 style or a client that forgot the header
        if action is None:
            raise SoapFault(BAD_REQUEST, "Missing SOAPAction header ('namespace:schema#Method'), and the method "
                            "element is not in a 'urn:namespace:schema' namespace.")
        return action
