"""From a bearer token to the operator it acts as (technical operators are created on first use)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import sqlalchemy as sa

from ..context import CallContext
from .ims import BearerIdentity, TokenService
from .operators import Operator, Operators

CACHE_SECONDS = 30  # rights changes reach bearer callers within this delay
CACHE_SIZE = 4096


def group_of_profile(profile: str) -> str:
    """Product profiles are named `campaign - <instance> - <group>` (business-rest-auth.md §5.4)."""
    parts = [p.strip() for p in profile.split(" - ")]
    return parts[-1] if len(parts) >= 3 and parts[0].lower() == "campaign" else profile.strip()


class BearerAuthenticator:
    def __init__(self, tokens: TokenService, operators: Operators):
        self.tokens = tokens
        self.operators = operators
        self._cache: OrderedDict[str, tuple[float, CallContext]] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, token: str) -> CallContext:
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
            if hit and hit[0] > now:
                self._cache.move_to_end(token)
                return hit[1]
        identity = self.tokens.validate(token)
        operator = self.operator_for(identity)
        ctx = operator.context()
        with self._lock:
            self._cache[token] = (min(now + CACHE_SECONDS, identity.expires), ctx)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ctx

    def operator_for(self, identity: BearerIdentity) -> Operator:
        operator = self.operators.load(identity.subject)
        if operator is not None:
            return operator
        groups = [group_of_profile(g) for g in identity.groups if g.strip()]
        try:
            return self.operators.create(identity.subject, None, label=f"Technical account {identity.client_id}",
                                         groups=groups, operator_type=1, auth_type="ims")
        except (ValueError, sa.exc.IntegrityError):
            # Another worker created it first.
            operator = self.operators.load(identity.subject)
            if operator is None:
                raise
            return operator
