"""The workflow worker: threads that lease runnable workflows and run them (Campaign's wfserver/runwf).

A lease is taken with a conditional UPDATE (free or expired -> mine) and renewed by a heartbeat
thread while a workflow runs; a crashed worker's workflows are taken over once its leases expire.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .commands import store_of
from .engine import Engine, LeaseLost
from .store import now_ms

log = logging.getLogger("opencampaign.workflow")


def _setting(instance: Any, key: str, default: float) -> float:
    value = instance.settings.get("workflow", key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class Worker:
    def __init__(self, instance: Any, *, threads: int | None = None, lease_seconds: float | None = None,
                 poll_seconds: float | None = None):
        self.instance = instance
        self.store = store_of(instance)
        self.threads = int(threads or _setting(instance, "threads", 4))
        self.ttl_ms = int(1000 * (lease_seconds or _setting(instance, "lease_seconds", 30)))
        self.poll = poll_seconds or _setting(instance, "poll_seconds", 0.2)
        self.prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._held: dict[int, str] = {}
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(f"{self.prefix}:{i}",), name=f"wkf-worker-{i}",
                                      daemon=True)
            thread.start()
            self._workers.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="wkf-heartbeat", daemon=True)
        beat.start()
        self._workers.append(beat)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    # -- work ----------------------------------------------------------------------------------
    def run_once(self, owner: str | None = None) -> bool:
        """Process every workflow that can be leased now; True when one was processed."""
        owner = owner or f"{self.prefix}:sync"
        did = False
        candidates = self.store.candidates()
        if self.threads > 1:  # threads of one worker do not all race for the same first candidate
            random.shuffle(candidates)
        for wid in candidates:
            if self._stop.is_set():
                break
            if not self.store.acquire(wid, owner, self.ttl_ms, needed=True):
                continue
            did = True
            with self._lock:
                self._held[wid] = owner
            wake: int | None = now_ms() + 5000
            seen_pokes = self.store.pokes(wid)  # read after the lease: a later poke is seen by release
            try:
                wake = Engine(self.instance, self.store, owner, self.ttl_ms).run(wid)
            except LeaseLost:
                log.warning("workflow %s: lease lost, abandoning it", wid)
                continue
            except Exception:  # noqa: BLE001 - a broken workflow must not stop the worker
                log.exception("workflow %s: unexpected error", wid)
            finally:
                with self._lock:
                    self._held.pop(wid, None)
                try:
                    self.store.release(wid, owner, wake, seen_pokes)
                except Exception:  # noqa: BLE001
                    log.exception("workflow %s: cannot release the lease", wid)
        return did

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                did = self.run_once(owner)
            except Exception:  # noqa: BLE001 - database hiccup: retry later
                log.exception("worker loop")
                did = False
            if not did:
                self._stop.wait(self.poll)

    def _heartbeat(self) -> None:
        interval = max(self.ttl_ms / 3000, 0.05)
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held.items())
            for wid, owner in held:
                try:
                    with self.store.write() as conn:
                        self.store.renew(conn, wid, owner, self.ttl_ms)
                except Exception:  # noqa: BLE001
                    log.exception("heartbeat of workflow %s", wid)


def start_background(instance: Any) -> Callable[[], None]:
    """Start a worker in this process (the embedded default of `serve`); returns its stop function."""
    worker = Worker(instance)
    worker.start()
    return worker.stop


def wait_idle(instance: Any, names: list[str | int], timeout: float = 60.0) -> bool:
    """Wait until the workflows are finished or paused (tests, CLI)."""
    store = store_of(instance)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [store.find(n) for n in names]
        if all(s is not None and s["iState"] in (13, 20) for s in states):
            return True
        time.sleep(0.05)
    return False
