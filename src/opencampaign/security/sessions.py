"""Operator sessions: session + security tokens, stored in `xtk:sessionInfo` (business-rest-auth.md §7.3).

- The session token (`___<GUID>`) identifies the session; the security token (`@...==`) must come
  with it on every call: a cookie alone is not enough (CSRF guard).
- Only SHA-256 hashes of both tokens are stored, so a copy of the database opens no session.
- Sessions live in the local database and so survive a restart; a per-process cache avoids a
  database read per call and re-reads a session at most every `CACHE_SECONDS` (logoff, rights
  and disabled operators are noticed within that delay).
- Lifetime is `[session] ttl_seconds`, extended by activity (written at most once per half-TTL).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..context import CallContext
from .operators import LogonError, Operators

SCHEMA = "xtk:sessionInfo"
CACHE_SECONDS = 30.0
CACHE_MAX = 10_000
REMEMBER_ME_TTL = 30 * 24 * 3600


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


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
        return CallContext(login=self.login, login_id=self.operator_id, rights=self.rights)


class SessionStore:
    def __init__(self, instance: Any):
        self.instance = instance
        self.storage = instance.storage
        self.table = self.storage.table(SCHEMA)
        self.operators = Operators(self.storage)
        self.ttl = int(instance.settings.get("session", "ttl_seconds", 24 * 3600))
        self.remember_ttl = int(instance.settings.get("session", "remember_me_ttl_seconds", REMEMBER_ME_TTL))
        self._cache: dict[str, tuple[Session, float]] = {}
        self._lock = threading.Lock()

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
        session = self._load(token_hash(session_token))
        if session is None:  # the operator vanished between the logon and now
            raise LogonError()
        return session_token, security_token, session

    def close(self, session_token: str) -> None:
        key = token_hash(session_token)
        with self._lock:
            self._cache.pop(key, None)
        t = self.table
        with self.storage.write(self.storage.home(SCHEMA)) as conn:
            conn.execute(sa.delete(t).where(t.c.sToken == key))

    # --- checking ----------------------------------------------------------------------------

    def resolve(self, session_token: str, security_token: str | None) -> Session | None:
        """The live session for these tokens; `security_token=None` skips the CSRF check (bearer use)."""
        if not session_token or len(session_token) > 512:
            return None
        session = self._get(token_hash(session_token))
        if session is None:
            return None
        if security_token is not None and not hmac.compare_digest(session.security_hash, token_hash(security_token)):
            return None
        return session

    def _get(self, key: str) -> Session | None:
        now_mono = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or now_mono - cached[1] > CACHE_SECONDS:
            session = self._load(key)
            if session is None:
                with self._lock:
                    self._cache.pop(key, None)
                return None
            cached = (session, now_mono)
            self._remember(key, cached)
        session = cached[0]
        now = _now()
        if session.expires <= now:
            with self._lock:
                self._cache.pop(key, None)
            return None
        lifetime = self.remember_ttl if session.remember_me else self.ttl
        if (session.expires - now).total_seconds() < lifetime / 2:
            session = self._extend(session, now + timedelta(seconds=lifetime), now)
            self._remember(key, (session, cached[1]))
        return session

    def _remember(self, key: str, entry: tuple[Session, float]) -> None:
        with self._lock:
            if len(self._cache) >= CACHE_MAX and key not in self._cache:
                self._cache.clear()  # crude but bounded; entries reload from the database
            self._cache[key] = entry

    def _extend(self, session: Session, expires: datetime, now: datetime) -> Session:
        t = self.table
        with self.storage.write(self.storage.home(SCHEMA)) as conn:
            conn.execute(sa.update(t).where(t.c.sToken == session.key).values(tsExpires=expires, tsLastActivity=now))
        return replace(session, expires=expires)

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
