"""Cost of the auth + limit path per request, beside a get-by-key call, in one run.

    .venv/bin/python -m bench.bench_auth [--seconds 2]

Measured in-process on one instance (embedded databases): what a transport does for every call
before the method runs — bearer-token validation (cached after the first use, as in the server),
session lookup with its CSRF check, a rate-limiter hit (memory, and Redis when reachable) — and
a queryDef get-by-key on nms:recipient, the cheapest data call. Goal: auth + limits < 10% of it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.querydef import execute_query
from opencampaign.query.write import write_collection
from opencampaign.security.ratelimit import RateLimits
from opencampaign.security.services import security_for

from .common import print_table

ENV = {"OPENCAMPAIGN_ADMIN_PASSWORD": "bench-password"}


def per_call(func: Callable[[], object], seconds: float) -> float:
    """Mean seconds per call over about `seconds` of calls (after a short warm-up)."""
    for _ in range(20):
        func()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            func()
        calls += 50
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        instance = Instance.open(Path(tmp) / "inst", environ=ENV)
        instance.init(environ=ENV)
        security = security_for(instance)
        admin = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))
        rows = "".join(f'<recipient email="r{i}@example.com" firstName="R{i}"/>' for i in range(1000))
        write_collection(instance.storage, instance.registry,
                         f'<recipient-collection xtkschema="nms:recipient">{rows}</recipient-collection>', admin)
        get = ('<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/><node expr="@email"/>'
               "</select><where><condition expr=\"@email = 'r500@example.com'\"/></where></queryDef>")

        client_id, secret, _email = security.tokens.accounts.create("bench", ["campaign - bench - admin"])
        token = security.tokens.issue(client_id, secret)["access_token"]
        session_token, security_token, _session = security.sessions.logon("admin", "bench-password")
        memory = RateLimits(default_tps=10**9)
        try:
            redis: RateLimits | None = RateLimits(default_tps=10**9, storage_uri="redis://127.0.0.1:6379")
            redis.hit("probe", "probe")
        except Exception:  # noqa: BLE001 - Redis is optional for this figure
            redis = None

        t_get = per_call(lambda: execute_query(instance.storage, instance.registry, get, admin), args.seconds)
        t_bearer = per_call(lambda: security.bearer_context(token), args.seconds)
        t_verify = per_call(lambda: security.tokens.validate(token), args.seconds)
        t_session = per_call(lambda: security.sessions.resolve(session_token, security_token), args.seconds)
        t_memory = per_call(lambda: memory.hit("admin", "xtk:queryDef#ExecuteQuery"), args.seconds)
        t_redis = per_call(lambda: redis.hit("admin", "xtk:queryDef#ExecuteQuery"), args.seconds) if redis else None
        instance.close()

    def us(t: float) -> str:
        return f"{t * 1e6:.1f} µs"

    rows_out = [
        ("get-by-key (queryDef, cloud DB)", us(t_get), "-", "1.00"),
        ("bearer token (validated, cached)", us(t_bearer), f"get-by-key {us(t_get)}", f"{t_bearer / t_get:.3f}"),
        ("bearer token first use (RS256 verify + account)", us(t_verify), f"get-by-key {us(t_get)}",
         f"{t_verify / t_get:.3f}"),
        ("session + security token", us(t_session), f"get-by-key {us(t_get)}", f"{t_session / t_get:.3f}"),
        ("rate limit hit (memory)", us(t_memory), f"get-by-key {us(t_get)}", f"{t_memory / t_get:.3f}"),
    ]
    if t_redis is not None:
        rows_out.append(("rate limit hit (Redis)", us(t_redis), f"get-by-key {us(t_get)}", f"{t_redis / t_get:.3f}"))
    path = t_bearer + t_memory
    rows_out.append(("auth + limit path (bearer + memory limiter)", us(path), f"get-by-key {us(t_get)}",
                     f"{path / t_get:.3f} (goal < 0.10)"))
    if t_redis is not None:
        rows_out.append(("auth + limit path (bearer + Redis limiter)", us(t_bearer + t_redis),
                         f"get-by-key {us(t_get)}", f"{(t_bearer + t_redis) / t_get:.3f}"))
    print_table("Auth and rate-limit cost per request", rows_out)


if __name__ == "__main__":
    main()
