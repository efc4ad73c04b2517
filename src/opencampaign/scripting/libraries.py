"""`xtk:javascript` libraries, read and translated once per storage and name.

An entry stays valid until a statement writing the library table runs or commits in this process
(SQLAlchemy events: immediate) and is re-read at most every `REVALIDATE` seconds otherwise (writes by other processes); its
`version` (a digest of the code) only changes when the code does, so warm contexts stay warm.
A library whose top level only declares functions is `warm`: `methods.py` keeps it evaluated per context.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import e4x
from .engine import HostError

REVALIDATE = 2.0
TABLE_SCHEMA = "xtk:javascript"


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    source: str  # as stored
    code: str  # translated
    functions: tuple[str, ...] | None  # the declared functions when the top level declares nothing else


@dataclass
class _Entry:
    library: Library
    generation: int
    checked: float


class LibraryCache:
    def __init__(self, storage: Any):
        self.engine = storage.engine_for(TABLE_SCHEMA)  # not the storage: the cache is weakly keyed by it
        self.generation = 0
        self.entries: dict[str, _Entry] = {}
        self.lock = threading.Lock()
        table = storage.table(TABLE_SCHEMA)
        self.table = table
        self.query = sa.select(table.c.mData).where(table.c.sNamespace == sa.bindparam("ns"),
                                                    table.c.sName == sa.bindparam("name"))
        marker = table.name.lower()
        ref = weakref.ref(self)

        def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            cache = ref()
            if cache is not None and marker in statement.lower() and statement.lstrip()[:6].upper() != "SELECT":
                cache.generation += 1
                conn.info["opencampaign_js_write"] = True

        def on_commit(conn: Any) -> None:  # again at commit: a reader may have cached the uncommitted state
            cache = ref()
            if cache is not None and conn.info.pop("opencampaign_js_write", False):
                cache.generation += 1

        sa.event.listen(self.engine, "after_cursor_execute", on_execute)
        sa.event.listen(self.engine, "commit", on_commit)

    def get(self, name: str) -> Library:
        entry = self.entries.get(name)
        now = time.monotonic()
        if entry is not None and entry.generation == self.generation and now - entry.checked < REVALIDATE:
            return entry.library
        generation = self.generation
        source = self._read(name)
        version = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
        if entry is not None and entry.library.version == version:
            library = entry.library
        else:
            library = Library(name, version, source, e4x.translate_cached(source), declared_functions(source))
        with self.lock:
            self.entries[name] = _Entry(library, generation, now)
        return library

    def _read(self, name: str) -> str:
        if ":" not in name:
            raise HostError("JST-310003", f"Invalid library name '{name}' (expected 'namespace:name.js').")
        ns, short = name.split(":", 1)
        with self.engine.connect() as conn:
            code = conn.execute(self.query, {"ns": ns, "name": short}).scalar()
        if code is None:
            raise HostError("JST-310004", f"JavaScript library '{name}' not found.")
        return str(code)


_CACHES: weakref.WeakKeyDictionary[Any, LibraryCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def library(instance: Any, name: str) -> Library:
    storage = instance.storage
    cache = _CACHES.get(storage)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.get(storage)
            if cache is None:
                cache = _CACHES[storage] = LibraryCache(storage)
    return cache.get(name)


def declared_functions(source: str) -> tuple[str, ...] | None:
    """Names of the top-level `function NAME(...) {...}` declarations, or None when the top level holds
    anything else (statements, variables, loadLibrary calls...)."""
    try:
        toks = [t for t in e4x.tokenize(source) if t.kind not in ("ws", "comment")]
    except e4x.E4XSyntaxError:
        return None
    names: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == ";" or (t.kind == "str" and t.text[1:-1] == "use strict"):
            i += 1
            continue
        if not (t.text == "function" and i + 2 < len(toks) and toks[i + 1].kind == "ident" and toks[i + 2].text == "("):
            return None
        names.append(toks[i + 1].text)
        i = _skip_group(toks, i + 2)
        if i >= len(toks) or toks[i].text != "{":
            return None
        i = _skip_group(toks, i)
    return tuple(names) if len(set(names)) == len(names) else None


def _skip_group(toks: list[e4x.Tok], i: int) -> int:
    """Index after the bracket group opening at i."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind != "punct":
            continue
        if toks[j].text in ("(", "{", "["):
            depth += 1
        elif toks[j].text in (")", "}", "]"):
            depth -= 1
            if depth == 0:
                return j + 1
    return len(toks)
