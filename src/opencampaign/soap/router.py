"""`POST /nl/jsp/soaprouter.jsp`: the HTTP side of the SOAP router.

Hostile input is refused before any work: bodies over `[server] max_body_bytes` (413), non-XML
content types (415), bodies that trickle in too slowly (408); XML with DTDs or entities, deep
nesting or no recognisable method gets a SOAP fault. Faults go out with HTTP 200 so that clients
read the Campaign code.

Method calls block on the databases, so they run in a few worker threads; calls known to be short
run on the event loop instead (the thread hand-off costs as much as a short call): methods that
touch no database, and single-row reads (queryDef get/getIfExists) from SQLite, by a caller this
process already knows. The router is a plain ASGI app: no Request/Response objects on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from starlette.requests import ClientDisconnect, cookie_parser

from ..security.services import security_for
from ..security.sessions import store_for
from . import codec
from .dispatch import Action, Credentials, Dispatcher, Target, action_from_body, credentials, parse_action
from .envelope import SoapRequest, build_fault, parse_request
from .faults import BAD_REQUEST, SoapFault
from .prepared import PLAIN_APIS, QUERY_API, Template, Templates

XML_TYPES = {"text/xml", "application/soap+xml", "application/xml"}
BODY_TIMEOUT = 30.0  # seconds to receive a whole body
MEDIA_TYPE = "text/xml; charset=utf-8"
_MEDIA_HEADER = (b"content-type", MEDIA_TYPE.encode("latin-1"))
# The request headers the router reads (ASGI gives names in lower case).
_WANTED = frozenset({b"content-type", b"content-length", b"soapaction", b"authorization", b"x-session-token",
                     b"x-security-token", b"cookie", b"user-agent"})

# Calls that may run on the event loop. Methods touching no database:
INLINE_METHODS = frozenset({"xtk:session#GetServerTime"})
INLINE_READS = frozenset({"get", "getIfExists"})  # queryDef operations bounded to one row
# [server] inline_reads: "auto" (SQLite, and PostgreSQL on this machine), "sqlite", "off" (all in threads)
INLINE_READ_MODES = ("auto", "sqlite", "off")
LOOPBACK_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})
# An inline call using more CPU than SLOW_CPU (or waiting longer than SLOW_WALL: a lock, the disk)
# sends its kind of call to the threads for SLOW_PENALTY seconds. CPU time, not wall time: on a
# busy machine the scheduler stretches every call; and a query's first run (compilation) takes a few ms.
SLOW_CPU = 0.02
SLOW_WALL = 0.25
SLOW_PENALTY = 60.0
log = logging.getLogger("opencampaign.soap")
TEMPLATED_APIS = frozenset({QUERY_API, *PLAIN_APIS})
Learn = tuple[Target, "str | None", bool]  # what a template of the request needs from its call


class BodyTooLarge(Exception):
    pass


@lru_cache(maxsize=256)  # clients send one or two Content-Type values; the result is only read
def _media(content_type: str) -> tuple[str, dict[str, str]]:
    kind, *params = [p.strip() for p in content_type.split(";")]
    values = {}
    for param in params:
        key, _, value = param.partition("=")
        values[key.strip().lower()] = value.strip().strip('"')
    return kind.lower(), values


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers the router reads, in one pass; the first of repeated ones, as Starlette's get()."""
    found: dict[str, str] = {}
    for name, value in raw:
        if name in _WANTED:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, headers: dict[str, str], request_id: bytes | None) -> None:
    raw = [(b"content-length", str(len(body)).encode("latin-1"))]
    if body:
        raw.append(_MEDIA_HEADER)
    if request_id is not None:
        raw.append((b"x-request-id", request_id))
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyDeadlines:
    """Cancels requests whose body has not arrived within BODY_TIMEOUT. One timer sweeps every second
    instead of a timer per request (asyncio.timeout schedules and cancels one on every call)."""

    def __init__(self, timeout: float = BODY_TIMEOUT, period: float = 1.0):
        self.timeout = timeout
        self.period = period
        self.reading: dict[asyncio.Task[Any], float] = {}  # task -> deadline (loop time)
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.reading[task] = loop.time() + self.timeout
        if self._timer is None or self._loop is not loop:  # (another loop: tests run one per client)
            self._loop = loop
            self._timer = loop.call_later(self.period, self._sweep, loop)

    def done(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching; True when the task was cancelled for its deadline (it is then uncancelled)."""
        self.reading.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self.reading.items()):
            if deadline <= now and task.get_loop() is loop:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.period, self._sweep, loop) if self.reading else None


class InlinePolicy:
    """Which calls are short enough to run on the event loop rather than in a worker thread.

    A slow query on the loop would stall every connection of the process, so only calls with bounded
    work qualify, and a kind of call seen slow goes back to the threads for a while.
    Never with a shared (Redis) rate limiter: each call would then wait on the network.
    """

    def __init__(self, instance: Any, *, enabled: bool):
        self.storage = instance.storage
        self.reads = str(instance.settings.get("server", "inline_reads", "auto")).lower()
        if self.reads not in INLINE_READ_MODES:
            raise ValueError(f"[server] inline_reads: '{self.reads}' is not one of {', '.join(INLINE_READ_MODES)}")
        self.enabled = enabled and self.reads != "off"
        self._local: dict[str, bool] = {}
        self._slow_until: dict[str, float] = {}

    def key(self, target: Target, request: SoapRequest) -> str | None:
        """A name for this kind of call when it may run on the loop, else None."""
        return self.available(self.kind(target, request))

    def kind(self, target: Target, request: SoapRequest) -> str | None:
        """A name for this kind of call when it is short enough for the loop (whether or not it was
        seen slow lately), else None."""
        if not self.enabled:
            return None
        api = target.api
        if api in INLINE_METHODS:
            return api
        if api != "xtk:queryDef#ExecuteQuery" or len(request.params) < 2:
            return None
        query = codec.first_child(request.params[1])
        if query is None or query.get("operation") not in INLINE_READS:
            return None
        schema_id = query.get("schema") or ""
        if not self._local_read(schema_id):
            return None
        return f"{api}:{schema_id}"

    def available(self, key: str | None) -> str | None:
        """`key`, unless that kind of call was seen slow lately."""
        if key is None:
            return None
        until = self._slow_until.get(key)
        if until is not None:
            if time.monotonic() < until:
                return None
            self._slow_until.pop(key, None)
        return key

    def observe(self, key: str, cpu: float, wall: float) -> None:
        if cpu > SLOW_CPU or wall > SLOW_WALL:
            log.info("%s took %.1f ms (%.1f ms CPU) on the event loop: such calls run in threads for %.0f s",
                     key, wall * 1000, cpu * 1000, SLOW_PENALTY)
            self._slow_until[key] = time.monotonic() + SLOW_PENALTY

    def _local_read(self, schema_id: str) -> bool:
        """The schema and the local database (sessions, folder rights) are SQLite files (the read waits
        on no network and, in WAL mode, on no writer) or, with `[server] inline_reads = "auto"`, a
        PostgreSQL server on this machine (a loopback round trip costs less than the hand-off to a
        thread). Waiting for a pooled connection is bounded by the calls of the threads holding them,
        which never need the loop to finish."""
        local = self._local.get(schema_id)
        if local is None:
            try:
                engines = [self.storage.engine_for(schema_id), self.storage.engine("local")]
            except Exception:  # noqa: BLE001 - unknown or table-less schema: the query answers, from a thread
                engines = []
            local = bool(engines) and all(self._engine_is_local(e) for e in engines)
            if len(self._local) < 4096:
                self._local[schema_id] = local
        return local

    def _engine_is_local(self, engine: Any) -> bool:
        name = engine.dialect.name
        if name == "sqlite":
            return True
        if name != "postgresql" or self.reads != "auto":
            return False
        host = engine.url.host or ""
        return host in LOOPBACK_HOSTS or host.startswith("/")  # no host, or a directory: a Unix socket


class SoapRouter:
    """The ASGI app of the SOAP router endpoint."""

    def __init__(self, instance: Any):
        self.instance = instance
        self.dispatcher = Dispatcher(instance, store_for(instance))
        self.max_body = int(instance.settings.get("server", "max_body_bytes", 4 * 1024 * 1024))
        # A few worker threads, not Starlette's 40: calls are mostly Python (GIL-bound), and dozens of
        # threads contending for the GIL multiply tail latency. 0 runs calls on the event loop.
        threads = int(instance.settings.get("server", "soap_threads", 4))
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="soap") if threads > 0 else None
        self.inline = InlinePolicy(instance, enabled=security_for(instance).limits.local)
        self.deadlines = BodyDeadlines()
        self.templates = Templates()  # prepared requests (prepared.py)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """As an ASGI app behind RequestLog (which adds the x-request-id header)."""
        await self.serve(scope, receive, send, None)

    async def serve(self, scope: dict, receive: Any, send: Any, request_id: bytes | None) -> int:
        """Answers one request; returns the HTTP status sent. `request_id`, when given, is sent as
        the x-request-id header."""
        state = scope.get("state") or {}
        log_extra = state.get("log")
        headers = _headers(scope["headers"])
        client = scope.get("client")
        extras = {"request-id": state.get("request_id", ""), "remote-addr": client[0] if client else "",
                  "user-agent": headers.get("user-agent", "")[:256]}
        try:
            kind, params = _media(headers.get("content-type", ""))
            if kind and kind not in XML_TYPES:
                raise SoapFault(BAD_REQUEST, f"Unsupported content type '{kind[:64]}': SOAP requests are text/xml "
                                "or application/soap+xml.", status=415)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                raise SoapFault(BAD_REQUEST, f"Request body larger than {self.max_body} bytes.", status=413)
            task = asyncio.current_task()
            assert task is not None
            self.deadlines.watch(task, asyncio.get_running_loop())
            try:
                body = await _read_body(receive, self.max_body)
            except BodyTooLarge:
                raise SoapFault(BAD_REQUEST, f"Request body larger than {self.max_body} bytes.", status=413) from None
            except asyncio.CancelledError:
                if self.deadlines.done(task):
                    raise SoapFault(BAD_REQUEST, "Request body not received in time.", status=408) from None
                raise
            finally:
                self.deadlines.done(task)
            charset = params.get("charset")
            action_key = f"{headers.get('soapaction', '')}\x00{params.get('action', '')}"
            prepared = self.templates.match(action_key, charset, body)
            if prepared is None:
                soap = parse_request(body, charset)
                action = self._action(headers, soap, params)
                template, this = None, None
            else:
                template, this = prepared
                soap, action = template.request, template.action
            if log_extra is not None:
                log_extra["action"] = f"{action.urn}#{action.method}"
            cookie = headers.get("cookie")
            creds = credentials(headers, cookie_parser(cookie) if cookie else {}, soap,
                                template.tokens if template is not None else None)
            reply, reply_headers, learn = await self._call(soap, action, creds, extras, template, this)
            if learn is not None:
                self.templates.learn(action_key, charset, body, soap, action, *learn)
        except SoapFault as fault:
            if log_extra is not None:
                log_extra["fault"] = fault.code
            await _respond(send, fault.status, build_fault(fault), fault.headers, request_id)
            return fault.status
        except ClientDisconnect:
            await _respond(send, 400, b"", {}, request_id)
            return 400
        await _respond(send, 200, reply, reply_headers, request_id)
        return 200

    async def _call(self, soap: SoapRequest, action: Action, creds: Credentials, extras: dict[str, str],
                    template: Template | None, this: Any) -> tuple[bytes, dict[str, str], Learn | None]:
        """The reply and its headers; and, for a parsed request that may be templated, what its
        template needs (the call's target, inline key, whether the method takes lifted documents)."""
        dispatcher = self.dispatcher
        if template is not None:
            target, kind = template.target, template.inline_key
        else:
            target = dispatcher.target(action)
            kind = self.inline.kind(target, soap) if self.executor is not None else None
        learn = None if template is not None or target.api not in TEMPLATED_APIS else \
            (target, kind, dispatcher.accepts_lifted(target))
        if self.executor is None:
            return (*dispatcher.dispatch(soap, action, creds, extras, target, None, this), learn)
        key = self.inline.available(kind)
        if key is not None:
            caller = dispatcher.authenticate_cached(creds, target.method)
            if caller is not None:
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return (*dispatcher.dispatch(soap, action, creds, extras, target, caller, this), learn)
                finally:
                    wall = time.perf_counter() - wall
                    if wall > SLOW_CPU:  # CPU time <= wall time: only then is it worth a second system call
                        self.inline.observe(key, time.thread_time() - cpu, wall)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.executor, dispatcher.dispatch, soap, action, creds, extras, target,
                                           None, this)
        return (*reply, learn)

    @staticmethod
    def _action(headers: dict[str, str], soap: SoapRequest, params: dict[str, str]) -> Action:
        header = headers.get("soapaction")
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
