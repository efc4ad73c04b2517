"""The security services of one instance in one process: operators, sessions, tokens, limits.

Every transport (SOAP, REST, scripts) resolves callers and counts calls through this one object,
so the same rules apply whichever way a request arrives.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from ..context import CallContext
from .identity import BearerAuthenticator
from .ims import TokenError, TokenService
from .operators import Operators
from .ratelimit import Decision, RateLimits
from .sessions import store_for

_SERVICES: weakref.WeakKeyDictionary[Any, Security] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class Security:
    def __init__(self, instance: Any):
        self.instance = instance
        self.operators = Operators(instance.storage)
        self.tokens = TokenService(instance.settings, instance.storage)
        self.bearer = BearerAuthenticator(self.tokens, self.operators)
        self.limits = RateLimits.from_settings(instance.settings)
        self.sessions = store_for(instance)

    def bearer_context(self, token: str) -> CallContext:
        """The operator an `Authorization: Bearer` token acts as; TokenError when it is refused.

        A session token of this server is accepted as a bearer too (clients that pass the Logon
        token that way); anything else must be a valid access token.
        """
        session = self.sessions.resolve(token, None)
        if session is not None:
            return session.context()
        return self.bearer.context(token)

    def hit(self, ctx: CallContext, api: str, remote: str = "") -> Decision:
        account = ctx.login or f"anonymous@{remote}"
        return self.limits.hit(account, api)


def security_for(instance: Any) -> Security:
    with _LOCK:
        services = _SERVICES.get(instance)
        if services is None:
            services = _SERVICES[instance] = Security(instance)
        return services


__all__ = ["Security", "security_for", "TokenError"]
