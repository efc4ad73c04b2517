"""Operators, their named rights, password logon with Campaign's lockout rules.

Rights are additive: those held directly by the operator plus those of its groups
(business-rest-auth.md §7.1). Every failure says the same thing whether or not the login exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..xmlsafe import XMLInputError, parse_xml
from .passwords import hash_password, verify_password

INVALID_LOGON = "XSV-350012 Invalid login or password. Connection denied."
LOCKOUT_DEFAULTS = {  # option name -> default (seconds, or a count)
    "XtkSecurity_max_Unsuccessul_Attempts_Allowed": 3,
    "XtkSecurity_Examine_Window": 600,
    "XtkSecurity_Initial_Ban_Duration": 300,
    "XtkSecurity_Max_Ban_Duration": 3600,
}


DEFAULT_GROUPS = [  # internal name, label, named rights
    ("admin", "Administrator", ["admin"]),
    ("deliveryOperators", "Delivery operators", ["prepareDelivery", "startDelivery"]),
    ("campaignManagers", "Campaign managers", ["insertFolder", "workflow"]),
    ("contentContributors", "Content contributors", []),
    ("reports", "Access to reports", []),
    ("messagecenter", "Message Center agents", ["messageCenter"]),
]


class LogonError(Exception):
    def __init__(self, message: str = INVALID_LOGON):
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


@dataclass
class Operator:
    id: int
    name: str
    label: str
    type: int
    rights: frozenset[str]
    groups: list[tuple[int, str]] = field(default_factory=list)  # (id, name)
    disabled: bool = False

    def context(self, **extra: object) -> CallContext:
        return CallContext(login=self.name, login_id=self.id, rights=self.rights, **extra)  # type: ignore[arg-type]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def rights_from_xml(data: str | None) -> set[str]:
    if not data:
        return set()
    try:
        root = parse_xml(data)
    except XMLInputError:
        return set()
    return {r.get("name", "") for r in root.iter("right") if r.get("name")}


def rights_to_xml(root_tag: str, rights: set[str], existing: str | None = None) -> str:
    """Replace the rights collection in an entity's mData, keeping its other XML fields."""
    root = parse_xml(existing) if existing else etree.Element(root_tag)
    for old in root.findall("rights"):
        root.remove(old)
    holder = etree.SubElement(root, "rights")
    for right in sorted(rights):
        etree.SubElement(holder, "right", name=right)
    return etree.tostring(root, encoding="unicode")


class Operators:
    """Reads and changes operators in the local database (xtk:operator, xtk:group, xtk:operatorGroup)."""

    def __init__(self, storage) -> None:  # noqa: ANN001 - storage.Storage (kept loose to avoid a cycle)
        self.storage = storage
        self.operators = storage.table("xtk:operator")
        self.groups = storage.table("xtk:group")
        self.members = storage.table("xtk:operatorGroup")

    def _engine(self) -> sa.Engine:
        return self.storage.engine_for("xtk:operator")

    def load(self, login: str, conn: sa.Connection | None = None) -> Operator | None:
        t = self.operators
        own = conn is None
        conn = conn or self._engine().connect()
        try:
            row = conn.execute(sa.select(t).where(t.c.sName == login, t.c.iOperatorId != 0)).first()
            if row is None:
                return None
            m = self.members
            g = self.groups
            group_rows = conn.execute(
                sa.select(g.c.iGroupId, g.c.sName, g.c.mData).join(m, m.c.iGroupId == g.c.iGroupId)
                .where(m.c.iOperatorId == row.iOperatorId)).all()
        finally:
            if own:
                conn.close()
        rights = rights_from_xml(row.mData)
        for group in group_rows:
            rights |= rights_from_xml(group.mData)
        return Operator(id=row.iOperatorId, name=row.sName, label=row.sLabel or row.sName, type=row.iType,
                        rights=frozenset(rights), groups=[(gr.iGroupId, gr.sName) for gr in group_rows],
                        disabled=bool(row.iDisabled))

    def options(self) -> dict[str, int]:
        table = self.storage.table("xtk:option")
        names = list(LOCKOUT_DEFAULTS)
        with self.storage.engine_for("xtk:option").connect() as conn:
            rows = conn.execute(sa.select(table.c.sName, table.c.iLongValue, table.c.dDoubleValue, table.c.sStringValue)
                                .where(table.c.sName.in_(names))).all()
        values = dict(LOCKOUT_DEFAULTS)
        for row in rows:
            raw = row.iLongValue or row.dDoubleValue or (int(row.sStringValue) if (row.sStringValue or "").isdigit() else 0)
            if raw:
                values[row.sName] = int(raw)
        return values

    def authenticate(self, login: str, password: str, *, now: datetime | None = None) -> Operator:
        """Check a password logon; count failures and ban the account as Campaign's XtkSecurity_* options say."""
        now = now or _now()
        opts = self.options()
        t = self.operators
        refused = False
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            row = conn.execute(sa.select(t).where(t.c.sName == login, t.c.iOperatorId != 0)).first()
            if row is None or (row.tsBannedUntil is not None and row.tsBannedUntil > now):
                verify_password(_DUMMY_HASH, password)  # same cost whether or not the login exists
                refused = True
            elif not verify_password(row.sPassword, password) or row.iDisabled:
                # Recorded in this transaction, which must commit: raise only after it.
                self._record_failure(conn, row, now, opts)
                refused = True
            else:
                conn.execute(sa.update(t).where(t.c.iOperatorId == row.iOperatorId)
                             .values(iFailedLogonCount=0, tsLastLogon=now))
        if refused:
            raise LogonError()
        operator = self.load(login)
        assert operator is not None
        return operator

    def _record_failure(self, conn: sa.Connection, row: sa.Row, now: datetime, opts: dict[str, int]) -> None:
        t = self.operators
        window = timedelta(seconds=opts["XtkSecurity_Examine_Window"])
        # Failures older than the examination window do not count towards a ban.
        recent = row.tsLastFailure is not None and now - row.tsLastFailure <= window
        count = (row.iFailedLogonCount if recent else 0) + 1
        values: dict[str, object] = {"iFailedLogonCount": count, "tsLastFailure": now}
        allowed = opts["XtkSecurity_max_Unsuccessul_Attempts_Allowed"]
        if count >= allowed:
            # Each further failure doubles the ban, up to the maximum.
            bans = count - allowed
            seconds = min(opts["XtkSecurity_Initial_Ban_Duration"] * (2 ** bans), opts["XtkSecurity_Max_Ban_Duration"])
            values["tsBannedUntil"] = now + timedelta(seconds=seconds)
        conn.execute(sa.update(t).where(t.c.iOperatorId == row.iOperatorId).values(values))

    # -- administration (CLI) -------------------------------------------------------------------
    def create(self, login: str, password: str | None, *, label: str = "", rights: set[str] | None = None,
               groups: list[str] | None = None, operator_type: int = 0, auth_type: str = "native") -> Operator:
        t = self.operators
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            if conn.execute(sa.select(t.c.iOperatorId).where(t.c.sName == login)).first():
                raise ValueError(f"An operator with the login '{login}' already exists.")
        new_id = self.storage.sequences.next_id("XtkNewId")
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            now = _now()
            conn.execute(sa.insert(t).values(
                iOperatorId=new_id, sName=login, sLabel=label or login, iType=operator_type,
                sPassword=hash_password(password) if password else None, sAuthenticationType=auth_type,
                mData=rights_to_xml("operator", rights or set()), tsCreated=now, tsLastModified=now))
            for group in groups or []:
                self._add_to_group(conn, new_id, group)
        operator = self.load(login)
        assert operator is not None
        return operator

    def _group_id(self, conn: sa.Connection, name: str, *, create: bool) -> int:
        g = self.groups
        found = conn.execute(sa.select(g.c.iGroupId).where(g.c.sName == name)).scalar()
        if found:
            return int(found)
        if not create:
            raise ValueError(f"Unknown operator group '{name}'.")
        new_id = self.storage.sequences.next_id("XtkNewId")
        conn.execute(sa.insert(g).values(iGroupId=new_id, sName=name, sLabel=name, mData=rights_to_xml("group", set())))
        return new_id

    def ensure_default_groups(self) -> None:
        """Campaign's default operator groups (business-rest-auth.md §7.1), created once."""
        g = self.groups
        with self.storage.write(self.storage.home("xtk:group")) as conn:
            existing = set(conn.execute(sa.select(g.c.sName)).scalars())
        missing = [d for d in DEFAULT_GROUPS if d[0] not in existing]
        ids = self.storage.sequences.next_ids("XtkNewId", len(missing))
        with self.storage.write(self.storage.home("xtk:group")) as conn:
            for (name, label, rights), new_id in zip(missing, ids, strict=True):
                conn.execute(sa.insert(g).values(iGroupId=new_id, sName=name, sLabel=label,
                                                 mData=rights_to_xml("group", set(rights))))

    def _add_to_group(self, conn: sa.Connection, operator_id: int, group: str) -> None:
        group_id = self._group_id(conn, group, create=True)
        m = self.members
        exists = conn.execute(sa.select(m.c.iGroupId).where(m.c.iGroupId == group_id, m.c.iOperatorId == operator_id)).first()
        if not exists:
            conn.execute(sa.insert(m).values(iGroupId=group_id, iOperatorId=operator_id))

    def set_password(self, login: str, password: str) -> None:
        t = self.operators
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            done = conn.execute(sa.update(t).where(t.c.sName == login, t.c.iOperatorId != 0).values(
                sPassword=hash_password(password), iFailedLogonCount=0, tsBannedUntil=None, tsLastModified=_now()))
            if done.rowcount == 0:
                raise ValueError(f"Unknown operator '{login}'.")

    def grant(self, login: str, *, rights: list[str] = (), groups: list[str] = ()) -> Operator:  # type: ignore[assignment]
        t = self.operators
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            row = conn.execute(sa.select(t.c.iOperatorId, t.c.mData).where(t.c.sName == login, t.c.iOperatorId != 0)).first()
            if row is None:
                raise ValueError(f"Unknown operator '{login}'.")
            if rights:
                current = rights_from_xml(row.mData) | set(rights)
                conn.execute(sa.update(t).where(t.c.iOperatorId == row.iOperatorId)
                             .values(mData=rights_to_xml("operator", current, row.mData), tsLastModified=_now()))
            for group in groups:
                self._add_to_group(conn, row.iOperatorId, group)
        operator = self.load(login)
        assert operator is not None
        return operator

    def list(self) -> list[Operator]:
        t = self.operators
        with self._engine().connect() as conn:
            names = conn.execute(sa.select(t.c.sName).where(t.c.iOperatorId != 0).order_by(t.c.sName)).scalars().all()
            return [op for name in names if (op := self.load(name, conn)) is not None]


_DUMMY_HASH = hash_password("opencampaign-timing-equaliser")
