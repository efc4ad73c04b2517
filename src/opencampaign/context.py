"""Who is calling, with which rights: passed by every transport down to the data API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CallContext:
    login: str = ""
    login_id: int = 0  # 0 is Campaign's internal account
    rights: frozenset[str] = frozenset()
    # Raw SQL in queries (`sql=`, `aliasSqlTable`) is refused unless the caller is trusted with it
    # (Campaign's allowSQLInjection security-zone flag).
    allow_sql: bool = False
    variables: dict[str, Any] = field(default_factory=dict)  # $(name) values in expressions

    def has_right(self, name: str) -> bool:
        return "admin" in self.rights or name in self.rights

    @property
    def is_admin(self) -> bool:
        return "admin" in self.rights


# The identity of internal jobs (init, demo loader, replication): the internal account.
INTERNAL = CallContext(login="internal", login_id=0, rights=frozenset({"admin"}), allow_sql=True)
