"""Per-API transactions-per-second limits (business-rest-auth.md §6), on the `limits` library.

Each API (`xtk:queryDef#ExecuteQuery`, `GET /rest/profileAndServices/profile`...) has a limit per
account and an optional global limit across accounts. Counters live in memory for one process (with
`serve --workers N`, each worker counts its own calls: N times the limit in all), or in Redis
(`[limits] storage = "redis://127.0.0.1:6379"`) so the limit holds across workers and nodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # 0 = unlimited
    remaining: int
    reset_seconds: int  # until a slot frees up

    def headers(self) -> dict[str, str]:
        if not self.limit:
            return {}
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_seconds)}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_seconds))
        return headers


UNLIMITED = Decision(True, 0, 0, 0)


class RateLimits:
    def __init__(self, *, default_tps: int = 0, global_tps: int = 0, per_api: dict[str, int] | None = None,
                 storage_uri: str = "memory://", namespace: str = "opencampaign"):
        self.default_tps = int(default_tps)
        self.global_tps = int(global_tps)
        self.per_api = {k: int(v) for k, v in (per_api or {}).items()}
        # Distinct key prefixes per strategy: strategies sharing one Redis otherwise collide (stack.md).
        self.storage = storage_from_string(storage_uri, key_prefix=f"{namespace}-mw") if storage_uri.startswith(
            "redis") else storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.storage_uri = storage_uri

    @classmethod
    def from_settings(cls, settings) -> RateLimits:  # noqa: ANN001 - config.Settings
        limits = settings.values.get("limits", {})
        per_api = {k: v for k, v in (limits.get("api") or {}).items()}
        return cls(default_tps=int(limits.get("tps_default") or 0), global_tps=int(limits.get("tps_global") or 0),
                   per_api=per_api, storage_uri=str(limits.get("storage") or "memory://"),
                   namespace=str(limits.get("namespace") or "opencampaign"))

    @property
    def enabled(self) -> bool:
        return bool(self.default_tps or self.global_tps or self.per_api)

    @property
    def local(self) -> bool:
        """A hit needs no network round trip: no limits, or counters in this process's memory."""
        return not self.enabled or self.storage_uri.startswith("memory")

    def limit_for(self, api: str) -> int:
        return self.per_api.get(api, self.default_tps)

    def hit(self, account: str, api: str) -> Decision:
        """Count one call of `api` by `account`; the decision says whether it may proceed."""
        decision = UNLIMITED
        limit = self.limit_for(api)
        if limit > 0:
            decision = self._hit(RateLimitItemPerSecond(limit), "account", api, account)
            if not decision.allowed:
                return decision
        if self.global_tps > 0:
            global_decision = self._hit(RateLimitItemPerSecond(self.global_tps), "global", api)
            if not global_decision.allowed or decision is UNLIMITED:
                return global_decision
        return decision

    def _hit(self, item: RateLimitItemPerSecond, *keys: str) -> Decision:
        allowed = self.limiter.hit(item, *keys)
        stats = self.limiter.get_window_stats(item, *keys)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, max(0, stats.remaining), reset)
