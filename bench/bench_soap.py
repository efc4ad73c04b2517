"""SOAP router benchmark: ExecuteQuery get-by-key and Write of one recipient, beside a bare
Starlette endpoint returning a canned envelope, all served the same way (uvicorn, one process)
and loaded the same way in the same run: 32 keep-alive connections on loopback, 15 s each.

The embedded server is one process on purpose: its DuckDB file can be opened by one process only.
Load comes from `wrk` when installed (`apt-get install -y wrk`), else from an asyncio/httpx generator
(which costs more CPU on the same two cores: compare figures within one run only).

Run: .venv/bin/python -m bench.bench_soap [--duration 15] [--connections 32]
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
from pathlib import Path

import httpx

from .common import print_table

ROUTER = "/nl/jsp/soaprouter.jsp"
PASSWORD = "bench-admin"
GOAL_RATIO = 0.5
GOAL_P99_MS = 25.0


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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[:4]} exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(url + ready_path, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{args[:4]} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, action: str, body: str, headers: dict[str, str], duration: int, connections: int,
            workdir: Path) -> dict[str, float]:
    script = workdir / f"wrk-{abs(hash(action + body)) % 10**8}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in {**headers, "SOAPAction": action}.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          url + ROUTER], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": float(non2xx.group(1)) if non2xx else 0.0}


async def _httpx_load(url: str, action: str, body: str, headers: dict[str, str], duration: int,
                      connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(ROUTER, content=body, headers={**headers, "SOAPAction": action})
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200 or b"SOAP-ENV:Fault" in response.content:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "errors": float(errors)}


def load(url: str, action: str, body: str, headers: dict[str, str], duration: int, connections: int,
         workdir: Path) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, action, body, headers, duration, connections, workdir)
    return asyncio.run(_httpx_load(url, action, body, headers, duration, connections))


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of equal length: mean throughput, median p50, worst p99, total errors."""
    p50s = sorted(r["p50"] for r in runs)
    return {"rps": sum(r["rps"] for r in runs) / len(runs), "p50": p50s[len(p50s) // 2],
            "p99": max(r["p99"] for r in runs), "errors": sum(r["errors"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds sharing --duration per scenario")
    parser.add_argument("--soap-threads", type=int, default=None, help="[server] soap_threads of the server")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCAMPAIGN_")}
    env["OPENCAMPAIGN_ADMIN_PASSWORD"] = PASSWORD
    if args.soap_threads is not None:
        env["OPENCAMPAIGN_SERVER__SOAP_THREADS"] = str(args.soap_threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port, bare_port = free_port(), free_port()
        url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        server = Process([sys.executable, "-m", "opencampaign.cli", "serve", "--data-dir", str(work / "instance"),
                          "--port", str(port)], env, work / "server.log", url, "/r/test")
        bare = None
        try:
            http = httpx.Client(base_url=url, timeout=30)
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
            find = envelope("xtk:queryDef", "ExecuteQuery", token, literal(
                "document", '<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/></select>'
                            '</queryDef>'))
            found = http.post(ROUTER, content=find, headers={**headers, "SOAPAction": "xtk:queryDef#ExecuteQuery"})
            rid = re.search(r'id="(\d+)"', found.text).group(1)  # type: ignore[union-attr]
            get_body = envelope("xtk:queryDef", "ExecuteQuery", token, literal(
                "document", '<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/>'
                            '<node expr="@email"/><node expr="@firstName"/><node expr="@lastName"/></select>'
                            f'<where><condition expr="@id = {rid}"/></where></queryDef>'))
            canned = http.post(ROUTER, content=get_body, headers={**headers, "SOAPAction": "xtk:queryDef#ExecuteQuery"})
            assert "<ExecuteQueryResponse" in canned.text, canned.text
            (work / "canned.xml").write_bytes(canned.content)
            (work / "bare_app.py").write_text(BARE_APP.format(path=str(work / "canned.xml")))
            bare = Process([sys.executable, "-m", "uvicorn", "--app-dir", str(work), "bare_app:app", "--port",
                            str(bare_port), "--log-level", "warning", "--no-access-log"], env, work / "bare.log",
                           bare_url, "/")
            get_action = "xtk:queryDef#ExecuteQuery"
            for target in (url, bare_url):  # warm-up: connections, caches
                load(target, get_action, get_body, headers, 2, args.connections, work)
            time_body = envelope("xtk:session", "GetServerTime", token, "")
            scenarios = {
                "bare Starlette endpoint (canned envelope)": (bare_url, get_action, get_body),
                "xtk:session#GetServerTime (router only, no database)": (url, "xtk:session#GetServerTime", time_body),
                "xtk:queryDef#ExecuteQuery get-by-key": (url, get_action, get_body),
                "xtk:session#Write (one recipient)": (url, "xtk:persist|xtk:session#Write", write_body),
            }
            # Interleaved rounds: a neighbour's load on the shared cores hits every scenario alike.
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
            slice_s = max(1, args.duration // args.rounds)
            for _ in range(args.rounds):
                for name, (target, action, body) in scenarios.items():
                    rounds[name].append(load(target, action, body, headers, slice_s, args.connections, work))
            results = {name: combine(runs) for name, runs in rounds.items()}
        finally:
            if bare is not None:
                bare.stop()
            server.stop()
    generator = "wrk -t2" if shutil.which("wrk") else "asyncio/httpx"
    base = results["bare Starlette endpoint (canned envelope)"]["rps"]
    rows = []
    for name, r in results.items():
        rows.append((f"{name}: req/s", f"{r['rps']:.0f}", f"{base:.0f}", f"{r['rps'] / base:.2f}"))
        rows.append((f"{name}: p50 / p99 ms", f"{r['p50']:.2f} / {r['p99']:.2f}", "-",
                     f"errors {int(r['errors'])}"))
    print_table(f"SOAP router, {args.connections} keep-alive connections, {args.duration} s per scenario in "
                f"{args.rounds} interleaved rounds, load from {generator}, one server process", rows)
    print(f"machine load average during the run: {os.getloadavg()[0]:.1f} (2 cores; other processes skew figures)")
    get = results["xtk:queryDef#ExecuteQuery get-by-key"]
    ok = get["rps"] >= GOAL_RATIO * base and get["p99"] < GOAL_P99_MS
    print(f"goal (get-by-key >= {GOAL_RATIO:.0%} of bare req/s, p99 < {GOAL_P99_MS:.0f} ms): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
