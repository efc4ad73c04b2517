"""uvicorn's HTTP protocol with one write per response instead of two.

uvicorn writes a response's head when the app sends `http.response.start` and its body with
`http.response.body`: two TCP segments, and a client waiting for the response is woken twice (on
this 2-core VM each wake-up costs ~20 µs of the server's CPU, as much as a short SOAP call's
Python). Here the writes made while a request runs are held until the loop's next turn and sent
as one; large bodies (streaming) are sent once COALESCE_LIMIT bytes are pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

COALESCE_LIMIT = 64 * 1024


class CoalescingTransport:
    """A transport proxy whose writes are joined until the event loop's next turn."""

    __slots__ = ("_transport", "_loop", "_pending", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        if pending is None:
            self._pending = pending = []
            self._size = 0
            self._loop.call_soon(self.flush)
        pending.append(bytes(data))
        self._size += len(data)
        if self._size >= COALESCE_LIMIT:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size() if self._pending else \
            self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Flow control (pause/resume reading, write-buffer limits) stays on the real transport.
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
