"""A request id for every HTTP request, in the logs and echoed in `x-request-id`.

The client's `x-request-id` (acc-js-sdk sends one with `enableRequestIdHeader`) is kept when it is
reasonable; otherwise a new one is drawn. Transports add what they know (SOAP action, fault code)
to `scope["state"]["log"]`, and one line per request is logged when the response starts.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("opencampaign.http")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_PREFIX = f"{os.getpid():x}{random.getrandbits(32):08x}"
_COUNTER = itertools.count(1)


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _SAFE_ID.fullmatch(text):
                return text
            break
    # Unique per process and request; cheaper than uuid4, whose urandom call cost ~50 µs here.
    return f"{_PREFIX}-{next(_COUNTER):x}"


# Set by the server (server/run.py) when the line would only reach its own handler: it then writes
# the line directly, without the cost of a LogRecord. Otherwise, and in tests, the logger is used.
_access_sink: Callable[[str], None] | None = None


def set_access_sink(sink: Callable[[str], None] | None) -> None:
    global _access_sink  # noqa: PLW0603 - one sink per process
    _access_sink = sink


class RequestLog:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware, and it does not buffer bodies)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope.get("headers", []))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        extra: dict[str, str] = {}
        state["log"] = extra
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_request(rid, scope, status, start, extra)


def log_request(rid: str, scope: dict, status: int, start: float, extra: dict[str, str]) -> None:
    """The one line of a request, when `opencampaign.http` logs at INFO."""
    if log.isEnabledFor(logging.INFO):
        details = "".join(f" {k}={v}" for k, v in extra.items())
        args = (rid, scope.get("method", ""), scope.get("path", ""), status, (time.perf_counter() - start) * 1000,
                details)
        if _access_sink is not None:
            _access_sink("rid=%s %s %s %d %.1fms%s" % args)  # noqa: UP031 - the logger's own format
        else:
            log.info("rid=%s %s %s %d %.1fms%s", *args)
