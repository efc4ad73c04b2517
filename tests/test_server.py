"""The server a new user starts from the README: demo data, /datamodel/, /r/test."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from lxml import etree

from opencampaign.schema.registry import load_registry

from .live_server import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("serve") / "data"
    with LiveServer(data, "--demo") as live:
        yield live


def test_datamodel_lists_every_builtin_schema(server: LiveServer):
    response = httpx.get(f"{server.url}/datamodel/", timeout=60)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    for schema in load_registry():
        assert schema.id in response.text, schema.id
    links = set(re.findall(r'href="(schemas/[^"#]+)"', response.text))
    assert links
    page = httpx.get(f"{server.url}/datamodel/{sorted(links)[0]}", timeout=30)
    assert page.status_code == 200


def test_recipient_page_documents_columns_and_links(server: LiveServer):
    index = httpx.get(f"{server.url}/datamodel/", timeout=60).text
    href = re.search(r'href="(schemas/[^"]*recipient[^"]*\.html)"', index).group(1)
    page = httpx.get(f"{server.url}/datamodel/{href}", timeout=30).text
    for text in ("NmsRecipient", "sEmail", "iFolderId", "xtk:folder", "@email"):
        assert text in page


def test_unknown_page_is_404(server: LiveServer):
    assert httpx.get(f"{server.url}/datamodel/nothing.html").status_code == 404


def test_r_test_answers_like_campaign(server: LiveServer):
    response = httpx.get(f"{server.url}/r/test")
    redir = etree.fromstring(response.content)
    assert redir.tag == "redir" and redir.get("status") == "OK"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", redir.get("date"))
    assert redir.get("build")


def test_demo_data_is_loaded_once(server: LiveServer, tmp_path: Path):
    assert "Demo data loaded." in server.log.read_text()


# --- the HTTP protocol: one write per response (server/protocol.py) ---------------------------------


def _raw_exchange(server: LiveServer, payload: bytes, *, responses: int) -> bytes:
    """Sends `payload` on one connection and reads until `responses` complete responses arrived."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(payload)
        while True:
            heads = [m for m in re.finditer(rb"HTTP/1\.1 \d{3}[^\r]*\r\n(.*?)\r\n\r\n", received, re.S)]
            if len(heads) >= responses:
                last = heads[-1]
                length = re.search(rb"content-length: (\d+)", last.group(1), re.I)
                if length and len(received) - last.end() >= int(length.group(1)):
                    return received
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def test_pipelined_requests_on_one_connection_each_get_their_whole_response(server: LiveServer):
    request = b"GET /r/test HTTP/1.1\r\nHost: x\r\n\r\n"
    soap = (b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>'
            b'<m:GetServerTime xmlns:m="urn:xtk:session"/></SOAP-ENV:Body></SOAP-ENV:Envelope>')
    post = (b"POST /nl/jsp/soaprouter.jsp HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"SOAPAction: xtk:session#GetServerTime\r\nContent-Length: " + str(len(soap)).encode() + b"\r\n\r\n" + soap)
    received = _raw_exchange(server, request + post + request, responses=3)
    assert received.count(b"HTTP/1.1 200") == 3, received[:2000]
    assert received.count(b"<redir status='OK'") == 2
    assert b"<GetServerTimeResponse" in received and received.index(b"<GetServerTimeResponse") < received.rindex(
        b"<redir")


def test_connection_close_is_honoured_after_the_whole_response(server: LiveServer):
    received = _raw_exchange(server, b"GET /r/test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", responses=1)
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    assert body.startswith(b"<redir") and body.endswith(b"/>")


def test_a_large_response_arrives_whole(server: LiveServer):
    response = httpx.get(f"{server.url}/datamodel/schemas/nms_delivery.html", timeout=60)  # over 64 kB
    assert response.status_code == 200 and len(response.content) > 64 * 1024
    assert response.text.rstrip().endswith("</html>")
    assert int(response.headers["content-length"]) == len(response.content)


def test_coalescing_transport_sends_one_write_per_loop_turn():
    import asyncio

    from opencampaign.server.protocol import COALESCE_LIMIT, CoalescingTransport

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str) -> str:
            return f"info:{name}"

    async def scenario() -> Recorder:
        recorder = Recorder()
        transport = CoalescingTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert recorder.writes == [] and transport.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        assert recorder.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.write(b"x" * COALESCE_LIMIT)  # a large write is not held
        assert len(recorder.writes) == 2
        transport.write(b"last")
        transport.close()  # flushes what is pending before closing
        assert recorder.writes[-1] == b"last" and recorder.closed
        assert transport.get_extra_info("peername") == "info:peername"
        return recorder

    recorder = asyncio.run(scenario())
    assert len(recorder.writes) == 3
