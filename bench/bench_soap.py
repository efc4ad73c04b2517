"""SOAP router benchmark (issue #4): ExecuteQuery get-by-key, Write of one recipient and
GetServerTime (router only, no database), beside a bare Starlette endpoint returning a canned
envelope served by the same number of uvicorn workers (same HTTP protocol class), all loaded the same way in the same run:
32 keep-alive connections on loopback, 15 s per scenario in interleaved rounds. Get-by-key asks
for 200 recipients in turn (each request another id, as a client reading records would); the bare
endpoint gets the same requests.

Deployments, all running at once so that interleaved rounds see the same neighbours:
- embedded default (SQLite local + DuckDB cloud), one process: a DuckDB file opens in one process
  only; every DuckDB statement costs 200-500 µs here, which bounds get-by-key (the floor is printed);
- single-database SQLite, `--workers N` (N = cores by default);
- single-database PostgreSQL, `--workers N`, when PostgreSQL answers on 127.0.0.1:5432 (a throwaway
  database is created and dropped).

Goal: get-by-key >= 50% of the bare endpoint's req/s (same worker count) with p99 < 25 ms. Each
round runs a deployment's bare endpoint right before its scenarios; the verdict uses the median of
the rounds' get-by-key / bare ratios (this VM's speed drifts from minute to minute).
Load comes from `wrk` when installed (`apt-get install -y wrk`), else from an asyncio/httpx generator
(which costs more CPU on the same cores: compare figures within one run only).

Run: .venv/bin/python -m bench.bench_soap [--duration 15] [--connections 32] [--workers N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .common import print_table

ROUTER = "/nl/jsp/soaprouter.jsp"
PASSWORD = "bench-admin"
GOAL_RATIO = 0.5
GOAL_P99_MS = 25.0
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
GET = "xtk:queryDef#ExecuteQuery get-by-key"
WRITE = "xtk:session#Write (one recipient)"
TIME = "xtk:session#GetServerTime (router only)"
RECIPIENTS = 200  # get-by-key cycles through this many recipients


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def envelope(urn: str, method: str, token: str, params: str) -> str:
    return ('<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header>'
            f'<Cookie>__sessiontoken={token}</Cookie><X-Security-Token/></SOAP-ENV:Header><SOAP-ENV:Body>'
            f'<m:{method} xmlns:m="urn:{urn}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
            f'<sessiontoken xsi:type="xsd:string">{token}</sessiontoken>{params}</m:{method}>'
            '</SOAP-ENV:Body></SOAP-ENV:Envelope>')


def literal(name: str, xml: str) -> str:
    return f'<{name} xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">{xml}</{name}>'


# The bare endpoint runs on the same server stack as opencampaign: uvicorn with the same protocol class.
BARE_PROTOCOL = "opencampaign.server.protocol:CoalescingHttpToolsProtocol"
BARE_APP = textwrap.dedent('''
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    BODY = open({path!r}, "rb").read()
    async def canned(request):
        await request.body()
        return Response(BODY, media_type="text/xml; charset=utf-8")
    app = Starlette(routes=[Route("/nl/jsp/soaprouter.jsp", canned, methods=["POST"])])
''')


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, url: str, ready_path: str):
        self.log = log.open("w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[:6]} exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(url + ready_path, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{args[:6]} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, action: str, body: str | list[str], headers: dict[str, str], duration: int, connections: int,
            workdir: Path) -> dict[str, float]:
    script = workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in {**headers, "SOAPAction": action}.items()]
    if isinstance(body, str):
        lines.append(f"wrk.body = [==[{body}]==]")
    else:  # each connection's requests cycle through the bodies (other ids: no reply can be cached)
        lines.append("local bodies = {" + ",".join(f"[==[{b}]==]" for b in body) + "}")
        lines.append("local n = math.random(#bodies)")
        lines.append("request = function() n = n % #bodies + 1; return wrk.format(nil, nil, nil, bodies[n]) end")
    script.write_text("\n".join(lines) + "\n")
    # --timeout 30s: a slow reply counts in the latency figures instead of vanishing as an error.
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "30s", "--latency",
                          "-s", str(script), url + ROUTER], capture_output=True, text=True,
                         timeout=duration + 90).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    failed = re.search(r"Socket errors:.*timeout (\d+)", out)
    errors = (float(non2xx.group(1)) if non2xx else 0.0) + (float(failed.group(1)) if failed else 0.0)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors}


async def _httpx_load(url: str, action: str, body: str | list[str], headers: dict[str, str], duration: int,
                      connections: int) -> dict[str, float]:
    bodies = [body] if isinstance(body, str) else body
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + duration

        async def worker(offset: int) -> None:
            nonlocal errors
            sent = offset
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                sent += 1
                response = await client.post(ROUTER, content=bodies[sent % len(bodies)],
                                             headers={**headers, "SOAPAction": action})
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200 or b"SOAP-ENV:Fault" in response.content:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n * 7) for n in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "errors": float(errors)}


def load(url: str, action: str, body: str | list[str], headers: dict[str, str], duration: int, connections: int,
         workdir: Path) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, action, body, headers, duration, connections, workdir)
    return asyncio.run(_httpx_load(url, action, body, headers, duration, connections))


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of equal length: mean throughput, median p50, worst p99, total errors."""
    p50s = sorted(r["p50"] for r in runs)
    return {"rps": sum(r["rps"] for r in runs) / len(runs), "p50": p50s[len(p50s) // 2],
            "p99": max(r["p99"] for r in runs), "errors": sum(r["errors"] for r in runs)}


@dataclass
class Deployment:
    name: str
    workers: int
    env: dict[str, str]
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, tuple[str, str | list[str]]] = field(default_factory=dict)  # scenario -> (action, body/ies)
    server: Process | None = None


def prepare(deployment: Deployment, base_env: dict[str, str], work: Path) -> bytes:
    """Start the server, log on, write the recipients; returns a get-by-key reply (the canned body)."""
    port = free_port()
    deployment.url = f"http://127.0.0.1:{port}"
    data = work / f"instance-{port}"
    args = [sys.executable, "-m", "opencampaign.cli", "serve", "--data-dir", str(data), "--port", str(port)]
    if deployment.workers > 1:
        args += ["--workers", str(deployment.workers)]
    deployment.server = Process(args, {**base_env, **deployment.env}, work / f"server-{port}.log", deployment.url,
                                "/r/test")
    http = httpx.Client(base_url=deployment.url, timeout=60)
    logon = http.post(ROUTER, headers={"SOAPAction": "xtk:session#Logon", "Content-Type": "text/xml"},
                      content=envelope("xtk:session", "Logon", "", "<login>admin</login>"
                                       f"<password>{PASSWORD}</password><parameters/>"))
    token = re.search(r"(___[0-9A-F-]+)", logon.text).group(1)  # type: ignore[union-attr]
    security = re.search(r"<pstrSecurityToken[^>]*>([^<]+)<", logon.text).group(1)  # type: ignore[union-attr]
    headers = {"Content-Type": "application/soap+xml;charset=UTF-8", "X-Session-Token": token,
               "X-Security-Token": security}
    write_body = envelope("xtk:persist|xtk:session", "Write", token, literal(
        "doc", '<recipient xtkschema="nms:recipient" _operation="insert" email="bench@example.com" '
               'firstName="Bench" lastName="Mark"/>'))
    wrote = http.post(ROUTER, content=write_body, headers={**headers, "SOAPAction": "xtk:persist|xtk:session#Write"})
    assert "<WriteResponse" in wrote.text, wrote.text  # the loads below only count HTTP errors
    # Recipients to read: each get-by-key request asks for one of them in turn.
    collection = "".join(f'<recipient email="reader{n}@example.com" firstName="Reader" lastName="N{n}"/>'
                         for n in range(RECIPIENTS))
    wrote = http.post(ROUTER, headers={**headers, "SOAPAction": "xtk:persist|xtk:session#WriteCollection"},
                      content=envelope("xtk:persist|xtk:session", "WriteCollection", token, literal(
                          "doc", f'<recipient-collection xtkschema="nms:recipient">{collection}'
                                 '</recipient-collection>')))
    assert "<WriteCollectionResponse" in wrote.text, wrote.text
    find = envelope("xtk:queryDef", "ExecuteQuery", token, literal(
        "document", '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select>'
                    "<where><condition expr=\"@email like 'reader%'\"/></where></queryDef>"))
    found = http.post(ROUTER, content=find, headers={**headers, "SOAPAction": "xtk:queryDef#ExecuteQuery"})
    ids = re.findall(r'id="(\d+)"', found.text)
    assert len(ids) == RECIPIENTS, found.text[:500]

    def get_body(rid: str) -> str:
        return envelope("xtk:queryDef", "ExecuteQuery", token, literal(
            "document", '<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/>'
                        '<node expr="@email"/><node expr="@firstName"/><node expr="@lastName"/></select>'
                        f'<where><condition expr="@id = {rid}"/></where></queryDef>'))

    get_bodies = [get_body(rid) for rid in ids]
    for rid, body in zip(ids[:3], get_bodies, strict=False):  # the replies hold the row asked for
        reply = http.post(ROUTER, content=body, headers={**headers, "SOAPAction": "xtk:queryDef#ExecuteQuery"})
        assert f'id="{rid}"' in reply.text and "reader" in reply.text, reply.text
    deployment.headers = headers
    deployment.bodies = {
        TIME: ("xtk:session#GetServerTime", envelope("xtk:session", "GetServerTime", token, "")),
        GET: ("xtk:queryDef#ExecuteQuery", get_bodies),
        WRITE: ("xtk:persist|xtk:session#Write", write_body),
    }
    return reply.content


def duckdb_floor_us() -> float:
    """What one trivial DuckDB statement costs through SQLAlchemy here (the embedded get-by-key floor)."""
    import sqlalchemy as sa

    engine = sa.create_engine("duckdb:///:memory:")
    with engine.connect() as conn:
        for _ in range(50):
            conn.exec_driver_sql("select 1").scalar()
        start = time.perf_counter()
        for _ in range(500):
            conn.exec_driver_sql("select 1").scalar()
        elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed / 500 * 1e6


def new_pg_database() -> str | None:
    try:
        import psycopg

        name = f"oc_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"PostgreSQL deployment skipped: {str(exc).splitlines()[0]}")
        return None


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per scenario (all rounds)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds sharing --duration per scenario")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes (default: cores)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL deployment")
    parser.add_argument("--soap-threads", type=int, default=None, help="[server] soap_threads of the servers")
    args = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    base_env["OPENCAMPAIGN_ADMIN_PASSWORD"] = PASSWORD
    if args.soap_threads is not None:
        base_env["OPENCAMPAIGN_SERVER__SOAP_THREADS"] = str(args.soap_threads)
    deployments = [Deployment("embedded SQLite + DuckDB, 1 process", 1, {}),
                   Deployment(f"single-database SQLite, --workers {args.workers}", args.workers,
                              {"OPENCAMPAIGN_SINGLE_DATABASE": "1"})]
    pg_name = None if args.no_postgres else new_pg_database()
    if pg_name:
        deployments.append(Deployment(f"single-database PostgreSQL, --workers {args.workers}", args.workers, {
            "OPENCAMPAIGN_LOCAL_DB": f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}",
            "OPENCAMPAIGN_SINGLE_DATABASE": "1"}))
    floor = duckdb_floor_us()
    bares: dict[int, tuple[str, Process]] = {}
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            try:
                canned = b""
                for deployment in deployments:
                    canned = prepare(deployment, base_env, work)
                (work / "canned.xml").write_bytes(canned)
                (work / "bare_app.py").write_text(BARE_APP.format(path=str(work / "canned.xml")))
                for workers in sorted({d.workers for d in deployments}):
                    port = free_port()
                    bare_url = f"http://127.0.0.1:{port}"
                    bares[workers] = (bare_url, Process(
                        [sys.executable, "-m", "uvicorn", "--app-dir", str(work), "bare_app:app", "--port", str(port),
                         "--workers", str(workers), "--log-level", "warning", "--no-access-log",
                         "--http", BARE_PROTOCOL],
                        base_env, work / f"bare-{workers}.log", bare_url, "/"))
                first = deployments[0]
                get_action, get_body = first.bodies[GET]
                for deployment in deployments:  # warm-up: connections, caches, every worker's pools
                    load(deployment.url, get_action, deployment.bodies[GET][1], deployment.headers, 2,
                         args.connections, work)
                for bare_url, _ in bares.values():
                    load(bare_url, get_action, get_body, first.headers, 2, args.connections, work)
                # Interleaved rounds: a neighbour's load on the shared cores hits every scenario alike.
                # Each deployment's scenarios run right after a run of its bare endpoint: this VM's
                # speed drifts from minute to minute, so ratios are taken between neighbouring runs.
                runs: dict[tuple[str, str], list[dict[str, float]]] = {}
                slice_s = max(1, args.duration // args.rounds)
                for _ in range(args.rounds):
                    for deployment in deployments:
                        bare_url = bares[deployment.workers][0]
                        runs.setdefault((deployment.name, "bare"), []).append(
                            load(bare_url, get_action, get_body, first.headers, slice_s, args.connections, work))
                        for scenario, (action, body) in deployment.bodies.items():
                            runs.setdefault((deployment.name, scenario), []).append(
                                load(deployment.url, action, body, deployment.headers, slice_s, args.connections,
                                     work))
            finally:
                for _, process in bares.values():
                    process.stop()
                for deployment in deployments:
                    if deployment.server is not None:
                        deployment.server.stop()
    finally:
        if pg_name:
            drop_pg_database(pg_name)
    results = {key: combine(value) for key, value in runs.items()}
    ratios = {d.name: paired_ratio(runs[(d.name, GET)], runs[(d.name, "bare")]) for d in deployments}
    report(results, ratios, deployments, args, floor, load_before)
    return 0


def paired_ratio(runs: list[dict[str, float]], bare_runs: list[dict[str, float]]) -> float:
    """The median over rounds of req/s / the bare endpoint's req/s measured just before."""
    ratios = sorted(r["rps"] / b["rps"] for r, b in zip(runs, bare_runs, strict=True))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def report(results: dict[tuple[str, str], dict[str, float]], ratios: dict[str, float],
           deployments: list[Deployment], args: argparse.Namespace, floor: float, load_before: float) -> None:
    generator = "wrk -t2" if shutil.which("wrk") else "asyncio/httpx"
    rows: list[tuple[str, str, str, str]] = []
    verdicts = []
    for deployment in deployments:
        bare = results[(deployment.name, "bare")]
        rows.append((f"» {deployment.name}", "", "", ""))
        rows.append((f"  bare endpoint x{deployment.workers} (canned envelope): req/s", f"{bare['rps']:.0f}", "-",
                     "1.00"))
        rows.append(("  bare endpoint: p50 / p99 ms", f"{bare['p50']:.2f} / {bare['p99']:.2f}", "-",
                     f"errors {int(bare['errors'])}"))
        for scenario in (GET, WRITE, TIME):
            r = results[(deployment.name, scenario)]
            rows.append((f"  {scenario}: req/s", f"{r['rps']:.0f}", f"bare x{deployment.workers} {bare['rps']:.0f}",
                         f"{r['rps'] / bare['rps']:.2f}"))
            rows.append((f"  {scenario}: p50 / p99 ms", f"{r['p50']:.2f} / {r['p99']:.2f}", "-",
                         f"errors {int(r['errors'])}"))
        get = results[(deployment.name, GET)]
        ratio = ratios[deployment.name]
        met = ratio >= GOAL_RATIO and get["p99"] < GOAL_P99_MS
        verdicts.append(f"  {deployment.name}: get-by-key {get['rps']:.0f} req/s, {ratio:.2f} x bare (median of the "
                        f"rounds' ratios), p99 {get['p99']:.1f} ms -> {'met' if met else 'NOT met'}")
    print_table(f"SOAP router, {args.connections} keep-alive connections, {args.duration} s per scenario in "
                f"{args.rounds} interleaved rounds, load from {generator}; ratio = req/s / bare endpoint with the "
                "same number of uvicorn workers", rows)
    print(f"DuckDB floor: one 'select 1' costs {floor:.0f} µs here, so the embedded deployment cannot exceed "
          f"~{1e6 / floor:.0f} get-by-key/s per process whatever the router does.")
    print(f"machine load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"({os.cpu_count()} cores; other processes skew figures)")
    print(f"goal (get-by-key >= {GOAL_RATIO:.0%} of bare req/s, p99 < {GOAL_P99_MS:.0f} ms):")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
