"""Request -> CallContext: the single place REST authenticates a caller.

Accepted, in order: `Authorization: Bearer <access token>` (IMS-style technical accounts, or the
session token of a Logon), the session of a SOAP Logon (`X-Session-Token` or cookie
`__sessiontoken`, plus `X-Security-Token`), then HTTP Basic with an operator's login and password
(checked with the same lockout rules as Logon; cached briefly so argon2 does not run per call).
Callers act with their own rights, as on SOAP.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any

from starlette.requests import Request

from ..context import CallContext
from ..security.operators import LogonError
from ..security.services import TokenError, security_for
from ..security.sessions import SessionRefused, resolve_context
from .errors import RestError

_CACHE_MAX = 1024
_CACHE_SECONDS = 30.0


class Authenticator:
    def __init__(self, instance: Any):
        self.instance = instance
        self.security = security_for(instance)
        self._basic: dict[str, tuple[float, CallContext]] = {}
        self._lock = threading.Lock()

    def resolve(self, request: Request) -> CallContext:
        headers = request.headers
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            try:
                return self.security.bearer_context(auth[7:].strip())
            except TokenError as exc:
                raise RestError(401, f"Invalid bearer token: {exc.description}") from None
        session = headers.get("x-session-token") or request.cookies.get("__sessiontoken")
        if session:
            try:
                return resolve_context(self.instance, session, headers.get("x-security-token", ""))
            except SessionRefused as exc:
                raise RestError(401, str(exc)) from None
        if auth[:6].lower() == "basic ":
            return self._from_basic(auth[6:].strip())
        raise RestError(401, "Authentication required: Authorization: Bearer <token>, or the X-Session-Token and "
                        "X-Security-Token headers of a Logon")

    def _from_basic(self, token: str) -> CallContext:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._basic.get(key)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        try:
            login, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RestError(401, "Malformed Basic authorization") from None
        try:
            ctx = self.security.operators.authenticate(login, password).context()
        except LogonError:
            raise RestError(401, "Invalid login or password") from None
        with self._lock:
            if len(self._basic) >= _CACHE_MAX:
                self._basic.clear()
            self._basic[key] = (now, ctx)
        return ctx
