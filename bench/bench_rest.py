"""REST API benchmark: GET a profile by PKey, and a 25-row page at depth 1 and at a deep page, on N
profiles generated with SQL inside the database, beside a bare Starlette JSON endpoint served by
uvicorn in the same run (same framework, same client, same concurrency).

Run: .venv/bin/python -m bench.bench_rest [--rows 1000000] [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import sqlalchemy as sa

from opencampaign.instance import Instance

from .common import print_table

AUTH = ("admin", "bench-pw")
PROFILE = "/rest/profileAndServices/profile"
BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
ITEM = {"PKey": "@x" * 12, "href": "http://127.0.0.1/rest/profileAndServices/profile/@x", "email": "a@b.c",
        "firstName": "Ann", "lastName": "Lee", "gender": "female", "birthDate": "1980-10-24",
        "created": "2019-09-25 23:20:35.000Z", "location": {"city": "Paris", "zipCode": "75001"}}
async def item(request): return JSONResponse(ITEM)
uvicorn.run(Starlette(routes=[Route("/item", item), Route("/r/test", item)]), host="127.0.0.1",
            port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def generate(instance: Instance, rows: int) -> None:
    """N recipients written by one INSERT ... SELECT inside the database (no Python row loop)."""
    storage = instance.storage
    table = storage.table("nms:recipient")
    engine = storage.engine_for("nms:recipient")
    col = {key: table.c[key].name for key in ("iRecipientId", "sEmail", "sFirstName", "sLastName", "iGender",
                                               "sCity", "tsCreated", "tsLastModified", "tsBirthDate")}
    dialect = engine.dialect.name
    series = {"duckdb": f"SELECT range AS i FROM range(1, {rows} + 1)",
              "postgresql": f"SELECT generate_series(1, {rows}) AS i"}.get(
        dialect, f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) SELECT i FROM s")
    concat = "||"
    sql = (f'INSERT INTO "{table.name}" ("{col["iRecipientId"]}", "{col["sEmail"]}", "{col["sFirstName"]}", '
           f'"{col["sLastName"]}", "{col["iGender"]}", "{col["sCity"]}", "{col["tsCreated"]}", '
           f'"{col["tsLastModified"]}", "{col["tsBirthDate"]}") '
           f"SELECT i + 100000, 'user' {concat} CAST(i AS VARCHAR) {concat} '@example.com', 'First', "
           f"'Last' {concat} CAST(i % 1000 AS VARCHAR), i % 3, 'City', TIMESTAMP '2024-01-01 00:00:00', "
           f"TIMESTAMP '2024-01-01 00:00:00', DATE '1980-01-01' FROM ({series}) AS g")
    with storage.write(storage.home("nms:recipient")) as conn:
        conn.execute(sa.text(sql))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/r/test", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


async def load(base: str, paths: list[str], seconds: float, concurrency: int, auth: tuple[str, str] | None
               ) -> tuple[float, float, int]:
    """Requests/s and p99 latency (ms) of `concurrency` clients cycling through `paths`."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, auth=auth, limits=limits, timeout=30) as client:
        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                begin = time.perf_counter()
                response = await client.get(paths[i % len(paths)])
                latencies.append(time.perf_counter() - begin)
                errors += response.status_code != 200
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    return len(latencies) / elapsed, p99, errors


def deep_cursor(client: httpx.Client, rows_before: int) -> str:
    """A 25-row page starting after `rows_before` rows. The cursor is reached by 1000-row hops on the
    single-field projection (`/profile/email`); cursors depend on the order only, not on the path."""
    href, walked, cursor = f"{PROFILE}/email?_lineCount=1000", 0, ""
    while walked < rows_before:
        step = min(1000, rows_before - walked)
        body = client.get(href, params={"_lineCount": step, **({"_lineStart": cursor} if cursor else {})}).json()
        walked += len(body["content"])
        cursor = parse_qs(urlsplit(body["next"]["href"]).query)["_lineStart"][0]
        href = f"{PROFILE}/email"
    return f"{PROFILE}?" + urlencode({"_lineCount": 25, "_lineStart": cursor})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--depth", type=int, default=10_000, help="page number of the deep page (25 rows/page)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        data = Path(tmp) / "data"
        env = {"OPENCAMPAIGN_ADMIN_PASSWORD": AUTH[1]}
        instance = Instance.open(data)
        instance.init(environ=env)
        began = time.perf_counter()
        generate(instance, args.rows)
        print(f"generated {args.rows:,} profiles in {time.perf_counter() - began:.1f}s "
              f"({instance.storage.engine_for('nms:recipient').dialect.name})")
        instance.close()

        port, bare_port = free_port(), free_port()
        server = start([sys.executable, "-m", "opencampaign.cli", "serve", "--data-dir", str(data), "--port",
                        str(port)], port, env)
        bare = start([sys.executable, "-c", BARE_APP, str(bare_port)], bare_port)
        try:
            base = f"http://127.0.0.1:{port}"
            depth = min(args.depth, args.rows // 25)
            with httpx.Client(base_url=base, auth=AUTH, timeout=120) as client:
                first = client.get(f"{PROFILE}?_lineCount=1000").json()["content"]
                rng = random.Random(7)
                deep = deep_cursor(client, (depth - 1) * 25)
                sample = client.get(deep.replace("_lineCount=25", "_lineCount=1000")).json()["content"]
                pkeys = [p["href"] for p in rng.sample(first + sample, min(500, len(first + sample)))]
            cases = [
                ("GET profile by PKey", base, [h.replace(base, "") for h in pkeys], AUTH),
                ("GET 25-row page, depth 1", base, [f"{PROFILE}?_lineCount=25"], AUTH),
                (f"GET 25-row page, depth {depth:,}", base, [deep], AUTH),
                ("bare Starlette JSON endpoint", f"http://127.0.0.1:{bare_port}", ["/item"], None),
            ]
            results = []
            for label, url, paths, auth in cases:
                asyncio.run(load(url, paths, 1.0, args.concurrency, auth))  # warm-up
                rps, p99, errors = asyncio.run(load(url, paths, args.seconds, args.concurrency, auth))
                results.append((label, rps, p99, errors))
        finally:
            for proc in (server, bare):
                proc.terminate()
                proc.wait(timeout=20)
    bare_rps = results[-1][1]
    rows = [(f"{label} (p99 {p99:.1f} ms{', errors ' + str(errors) if errors else ''})", f"{rps:,.0f} req/s",
             f"{bare_rps:,.0f} req/s (bare)", f"{rps / bare_rps:.2f}") for label, rps, p99, errors in results]
    print_table(f"REST API on {args.rows:,} profiles, {args.concurrency} concurrent clients, {args.seconds:.0f}s each",
                rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
