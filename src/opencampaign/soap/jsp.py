"""`ping.jsp` and `mcPing.jsp`: plain-text health pages, exactly as soap-protocol.md §1.3 shows them.

ping: `OK\\n<timestamp>\\n`, or `Error\\n<reason>\\n` when the database does not answer.
mcPing: `Ok\\n<timestamp>\\n<n>/<max> pending events`, or `Error\\nThe queue is full (<n>/<max>)`;
the queue is the Message Center events still pending (`@status=0`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse

log = logging.getLogger("opencampaign.soap")
EVENT_SCHEMAS = ("nms:rtEvent", "nms:batchEvent")
DEFAULT_QUEUE_MAX = 10000


def timestamp(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class HealthPages:
    def __init__(self, instance: Any):
        self.instance = instance
        self.queue_max = int(instance.settings.get("messagecenter", "queue_max_size", DEFAULT_QUEUE_MAX))

    def _database_ok(self) -> str:
        storage = self.instance.storage
        try:
            for role in storage.roles:
                with storage.engine(role).connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
            log.warning("ping: database check failed: %s", exc)
            return "database unavailable"
        return ""

    def _pending_events(self) -> int:
        storage = self.instance.storage
        total = 0
        for schema_id in EVENT_SCHEMAS:
            try:
                table = storage.table(schema_id)
            except KeyError:
                continue
            if "iStatus" not in table.c:
                continue
            with storage.engine_for(schema_id).connect() as conn:
                total += conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.iStatus == 0)).scalar() or 0
        return total

    async def ping(self, _request: Request) -> PlainTextResponse:
        problem = await run_in_threadpool(self._database_ok)
        body = f"Error\n{problem}\n" if problem else f"OK\n{timestamp()}\n"
        return PlainTextResponse(body)

    async def mc_ping(self, _request: Request) -> PlainTextResponse:
        try:
            pending = await run_in_threadpool(self._pending_events)
        except Exception as exc:  # noqa: BLE001
            log.warning("mcPing: cannot count pending events: %s", exc)
            return PlainTextResponse("Error\nThe event queue cannot be read (database unavailable)")
        if pending >= self.queue_max:
            return PlainTextResponse(f"Error\nThe queue is full ({pending}/{self.queue_max})")
        return PlainTextResponse(f"Ok\n{timestamp()}\n{pending}/{self.queue_max} pending events")
