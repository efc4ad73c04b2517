"""Operator sessions: session + security tokens, stored in `xtk:sessionInfo` (business-rest-auth.md §7.3).

- The session token (`___<GUID>`) identifies the session; the security token (`@...==`) must come
  with it on every call: a cookie alone is not enough (CSRF guard).
- Only SHA-256 hashes of both tokens are stored, so a copy of the database opens no session.
- Sessions live in the local database and so survive a restart; a per-process cache avoids a
  database read per call and re-reads a session at most every `CACHE_SECONDS` (rights and
  disabled operators are noticed within that delay).
- A Logoff takes effect at once in every process sharing the data dir (`serve --workers N`): the
  closing process appends the session's hash to `DIR/sessions.revoked` and changes the 8 bytes of
  `DIR/sessions.epoch`, which every process maps in memory and compares before trusting its cache
  (a memory read per call; the list is read only when they changed). Processes on other hosts
  notice within `CACHE_SECONDS`.
- Lifetime is `[session] ttl_seconds`, extended by activity (written at most once per half-TTL).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mmap
import os
import secrets
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from ..context import CallContext
from .operators import LogonError, Operators

SCHEMA = "xtk:sessionInfo"
CACHE_SECONDS = 30.0
CACHE_MAX = 10_000
REMEMBER_ME_TTL = 30 * 24 * 3600
REVOCATIONS_FILE = "sessions.revoked"  # in the data dir: hashes of closed sessions, one a line
REVOCATIONS_MAX = 1 << 20  # bytes; then the file starts over (every process then empties its cache)
EPOCH_FILE = "sessions.epoch"  # in the data dir: 8 bytes rewritten after every revocation
_HASH_LINE = 65  # 64 hex digits and a newline

log = logging.getLogger("opencampaign.sessions")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_HASHES: dict[str, str] = {}  # token -> hash: clients send the same two tokens on every call
_HASHES_MAX = 20_000


def token_hash(token: str) -> str:
    digest = _HASHES.get(token)
    if digest is None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()  # bounded: random tokens from a hostile client only cost hashing again
        _HASHES[token] = digest
    return digest


def new_session_token() -> str:
    return "___" + str(uuid.UUID(bytes=secrets.token_bytes(16))).upper()


def new_security_token() -> str:
    return "@" + secrets.token_urlsafe(48) + "=="


@dataclass(frozen=True)
class Session:
    key: str  # hash of the session token
    security_hash: str
    operator_id: int
    login: str
    label: str
    rights: frozenset[str]
    groups: tuple[int, ...]
    expires: datetime
    remember_me: bool = False
    auth_type: str = "native"
    locale: str = "en"
    timezone: str = ""
    home_dir: str = ""

    def context(self) -> CallContext:
        """The caller of this session's calls: built once (every call asks), with read-only
        variables so that no call can leave values behind for the next one."""
        ctx = self.__dict__.get("_context")
        if ctx is None:
            ctx = CallContext(login=self.login, login_id=self.operator_id, rights=self.rights,
                              variables=MappingProxyType({}))  # type: ignore[arg-type]
            self.__dict__["_context"] = ctx  # frozen dataclass: a cache, not a field
        return ctx


@dataclass(frozen=True, slots=True)
class _Entry:
    session: Session
    loaded: float  # time.monotonic() of the database read
    expires_at: float  # session.expires, as epoch seconds (cheaper to compare than datetimes)
    extend_at: float  # from then on, activity extends the session


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


class SessionStore:
    def __init__(self, instance: Any):
        self.instance = instance
        self.storage = instance.storage
        self.table = self.storage.table(SCHEMA)
        self.operators = Operators(self.storage)
        self.ttl = int(instance.settings.get("session", "ttl_seconds", 24 * 3600))
        self.remember_ttl = int(instance.settings.get("session", "remember_me_ttl_seconds", REMEMBER_ME_TTL))
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        # Bumped by every revocation: a session read from the database before it is not cached.
        self._generation = 0
        data_dir = getattr(instance, "data_dir", None)
        self._revocations = os.path.join(data_dir, REVOCATIONS_FILE) if data_dir is not None else None
        # (inode, bytes consumed) of the revocations file; sessions closed before start-up were deleted.
        self._revoked_file: tuple[int | None, int] = (None, 0)
        if self._revocations is not None and os.path.exists(self._revocations):
            stat = os.stat(self._revocations)
            self._revoked_file = (stat.st_ino, stat.st_size)
        self._epoch = _map_epoch(os.path.join(data_dir, EPOCH_FILE)) if data_dir is not None else None
        self._epoch_seen = self._epoch[:8] if self._epoch is not None else b""

    # --- opening and closing -----------------------------------------------------------------

    def logon(self, login: str, password: str, *, remember_me: bool = False,
              remote: str = "") -> tuple[str, str, Session]:
        """Raises LogonError (XSV-350012) on a bad login, password, disabled or banned account."""
        operator = self.operators.authenticate(login, password)
        if operator.disabled:
            raise LogonError()
        return self.open(operator.id, remember_me=remember_me, remote=remote)

    def open(self, operator_id: int, *, remember_me: bool = False, remote: str = "",
             auth_type: str = "native") -> tuple[str, str, Session]:
        session_token, security_token = new_session_token(), new_security_token()
        now = _now()
        expires = now + timedelta(seconds=self.remember_ttl if remember_me else self.ttl)
        t = self.table
        new_id = self.storage.sequences.next_id("XtkNewId")
        with self.storage.write(self.storage.home(SCHEMA)) as conn:
            conn.execute(sa.delete(t).where(t.c.tsExpires < now))  # housekeeping: expired sessions
            conn.execute(sa.insert(t).values(
                iSessionInfoId=new_id, sToken=token_hash(session_token), sSecurityTokenHash=token_hash(security_token),
                tsCreated=now, tsExpires=expires, tsLastActivity=now, iRememberMe=int(remember_me),
                sAuthenticationType=auth_type, sRemoteAddress=remote[:64], iOperatorId=operator_id))
        key = token_hash(session_token)
        generation = self._generation
        session = self._load(key)
        if session is None:  # the operator vanished between the logon and now
            raise LogonError()
        self._remember(key, self._entry(session, time.monotonic()), generation)  # its first call needs no read
        return session_token, security_token, session

    def close(self, session_token: str) -> None:
        key = token_hash(session_token)
        t = self.table
        # The row goes first: a concurrent read in this process then finds nothing to cache again.
        with self.storage.write(self.storage.home(SCHEMA)) as conn:
            conn.execute(sa.delete(t).where(t.c.sToken == key))
        self._forget(key)
        self._publish_revocation(key)

    # --- checking ----------------------------------------------------------------------------

    def resolve(self, session_token: str, security_token: str | None) -> Session | None:
        """The live session for these tokens; `security_token=None` skips the CSRF check (bearer use)."""
        if not session_token or len(session_token) > 512:
            return None
        session = self._get(token_hash(session_token))
        if session is None or not self._security_ok(session, security_token):
            return None
        return session

    def resolve_cached(self, session_token: str, security_token: str | None) -> tuple[bool, Session | None]:
        """`resolve` without any database access: (True, its answer) when this process can tell,
        (False, None) when `resolve` would read or write the database (unknown or stale entry,
        expiry or an extension due). For callers that must not block (the event loop)."""
        if not session_token or len(session_token) > 512:
            return True, None
        self._sync_revocations()
        entry = self._cache.get(token_hash(session_token))
        if entry is None or time.monotonic() - entry.loaded > CACHE_SECONDS:
            return False, None
        if time.time() >= min(entry.expires_at, entry.extend_at):
            return False, None
        session = entry.session
        return True, (session if self._security_ok(session, security_token) else None)

    @staticmethod
    def _security_ok(session: Session, security_token: str | None) -> bool:
        return security_token is None or hmac.compare_digest(session.security_hash, token_hash(security_token))

    def _get(self, key: str) -> Session | None:
        self._sync_revocations()
        entry = self._cache.get(key)  # a dict read is atomic; the lock guards changes
        now_mono = time.monotonic()
        if entry is None or now_mono - entry.loaded > CACHE_SECONDS:
            generation = self._generation
            session = self._load(key)
            if session is None:
                self._forget(key)
                return None
            entry = self._entry(session, now_mono)
            self._remember(key, entry, generation)
        now = time.time()
        if entry.expires_at <= now:
            self._forget(key)
            return None
        if now >= entry.extend_at:
            generation = self._generation
            lifetime = self.remember_ttl if entry.session.remember_me else self.ttl
            today = _now()
            session = self._extend(entry.session, today + timedelta(seconds=lifetime), today)
            entry = self._entry(session, entry.loaded)
            self._remember(key, entry, generation)
        return entry.session

    def _entry(self, session: Session, loaded: float) -> _Entry:
        lifetime = self.remember_ttl if session.remember_me else self.ttl
        expires_at = _epoch(session.expires)
        return _Entry(session, loaded, expires_at, expires_at - lifetime / 2)

    def _remember(self, key: str, entry: _Entry, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a session was closed meanwhile, maybe this one: read it again next time
            if len(self._cache) >= CACHE_MAX and key not in self._cache:
                self._cache.clear()  # crude but bounded; entries reload from the database
            self._cache[key] = entry

    def _forget(self, key: str) -> None:
        with self._lock:
            self._generation += 1
            self._cache.pop(key, None)

    def _extend(self, session: Session, expires: datetime, now: datetime) -> Session:
        t = self.table
        with self.storage.write(self.storage.home(SCHEMA)) as conn:
            conn.execute(sa.update(t).where(t.c.sToken == session.key).values(tsExpires=expires, tsLastActivity=now))
        return replace(session, expires=expires)

    # --- revocations shared by the processes of one data dir ------------------------------------

    def _publish_revocation(self, key: str) -> None:
        if self._revocations is None:
            return
        try:
            if os.path.exists(self._revocations) and os.path.getsize(self._revocations) > REVOCATIONS_MAX:
                # Start over with a new file (a new inode): every process then empties its cache.
                fresh = f"{self._revocations}.{os.getpid()}.tmp"
                with open(fresh, "wb"):
                    pass
                os.replace(fresh, self._revocations)
            # One O_APPEND write of a whole line: concurrent writers never interleave within it.
            fd = os.open(self._revocations, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, key.encode("ascii") + b"\n")
            finally:
                os.close(fd)
            if self._epoch is not None:  # after the line: a process seeing the new epoch finds it
                self._epoch[:8] = secrets.token_bytes(8)
        except OSError as exc:
            log.warning("could not record the logoff in %s (other processes notice it within %.0f s): %s",
                        self._revocations, CACHE_SECONDS, exc)

    def _sync_revocations(self) -> None:
        """Forget the sessions other processes closed since the last call (a memory read when none)."""
        if self._revocations is None:
            return
        if self._epoch is not None:
            epoch = self._epoch[:8]
            if epoch == self._epoch_seen:
                return
            self._epoch_seen = epoch  # before reading: a later revocation changes it again
        try:
            stat = os.stat(self._revocations)
        except OSError:
            return  # no logoff recorded yet
        seen = self._revoked_file
        if seen[0] == stat.st_ino and seen[1] == stat.st_size:
            return
        with self._lock:
            seen = self._revoked_file
            if seen[0] is None:  # the file appeared: read it from the start
                seen = self._revoked_file = (stat.st_ino, 0)
            if seen[0] != stat.st_ino or stat.st_size < seen[1]:
                self._generation += 1
                self._cache.clear()  # the file started over: lines may have been missed
                self._revoked_file = (stat.st_ino, stat.st_size)
                return
            try:
                with open(self._revocations, "rb") as handle:
                    handle.seek(seen[1])
                    data = handle.read(stat.st_size - seen[1])
            except OSError:
                return
            complete = data[:data.rfind(b"\n") + 1]  # a line being written is read next time
            self._generation += 1
            for line in complete.split(b"\n"):
                if len(line) == _HASH_LINE - 1:
                    self._cache.pop(line.decode("ascii"), None)
            self._revoked_file = (stat.st_ino, seen[1] + len(complete))

    def for_operator(self, login: str, *, auth_type: str = "ims") -> Session | None:
        """A session-shaped view of an operator who calls with a bearer token (no stored session)."""
        operator = self.operators.load(login)
        if operator is None or operator.disabled:
            return None
        return Session(key="", security_hash="", operator_id=operator.id, login=operator.name, label=operator.label,
                       rights=operator.rights, groups=tuple(g for g, _ in operator.groups),
                       expires=_now() + timedelta(seconds=self.ttl), auth_type=auth_type)

    def _load(self, key: str) -> Session | None:
        t = self.table
        op = self.storage.table("xtk:operator")
        query = (sa.select(t.c.sSecurityTokenHash, t.c.tsExpires, t.c.iRememberMe, t.c.sAuthenticationType,
                           op.c.sName, op.c.sLocale, op.c.sTimezone, op.c.sHomeDir)
                 .join(op, op.c.iOperatorId == t.c.iOperatorId).where(t.c.sToken == key))
        with self.storage.engine_for(SCHEMA).connect() as conn:
            row = conn.execute(query).first()
            if row is None or row.tsExpires is None or row.tsExpires <= _now():
                return None
            operator = self.operators.load(row.sName, conn)
        if operator is None or operator.disabled:
            return None
        return Session(key=key, security_hash=row.sSecurityTokenHash or "", operator_id=operator.id,
                       login=operator.name, label=operator.label, rights=operator.rights,
                       groups=tuple(g for g, _ in operator.groups), expires=row.tsExpires,
                       remember_me=bool(row.iRememberMe), auth_type=row.sAuthenticationType or "native",
                       locale=row.sLocale or "en", timezone=row.sTimezone or "", home_dir=row.sHomeDir or "")


def _map_epoch(path: str) -> mmap.mmap | None:
    """The shared epoch file mapped in memory (MAP_SHARED: every process sees a write at once), or
    None where it cannot be (then every check stats the revocations file instead)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)  # zeros; several processes doing it at once is harmless
        return mmap.mmap(fd, 8)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


_STORES: weakref.WeakKeyDictionary[Any, SessionStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def store_for(instance: Any) -> SessionStore:
    """The session store of an instance (one per process and instance)."""
    with _STORES_LOCK:
        store = _STORES.get(instance)
        if store is None:
            store = _STORES[instance] = SessionStore(instance)
        return store


class SessionRefused(Exception):
    code = "XSV-350008"


def resolve_context(instance: Any, session_token: str, security_token: str) -> CallContext:
    """For other transports (REST): the caller of a session, or SessionRefused (XSV-350008)."""
    session = store_for(instance).resolve(session_token, security_token or "")
    if session is None:
        raise SessionRefused("XSV-350008 Session has expired or is invalid. Please reconnect.")
    return session.context()
