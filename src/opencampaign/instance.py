"""An opencampaign instance: its settings, compiled schemas and databases."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from .config import Settings, load_settings
from .schema.registry import SchemaRegistry, load_registry
from .security.passwords import generate_password, hash_password
from .storage import migrate
from .storage.replication import replicate
from .storage.storage import Storage

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD_ENV = "OPENCAMPAIGN_ADMIN_PASSWORD"


@dataclass
class InitReport:
    statements: list[str] = field(default_factory=list)
    admin_created: bool = False
    generated_password: str | None = None
    replicated: dict[str, int] = field(default_factory=dict)


class Instance:
    def __init__(self, settings: Settings, registry: SchemaRegistry, storage: Storage):
        self.settings = settings
        self.registry = registry
        self.storage = storage

    @classmethod
    def open(cls, data_dir: Path | str, *, schema_dirs: list[str] | None = None,
             environ: dict[str, str] | None = None) -> Instance:
        settings = load_settings(data_dir, schema_dirs=schema_dirs, environ=environ)
        registry = load_registry(settings.schema_dirs)
        storage = Storage(settings, registry)
        return cls(settings, registry, storage)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def init(self, *, environ: dict[str, str] | None = None) -> InitReport:
        """Create or bring up to date the databases, and make sure the admin operator exists."""
        env = os.environ if environ is None else environ
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage.check()
        report = InitReport(statements=migrate.create_all(self.storage))
        from .security.ims import TokenService
        from .security.operators import Operators

        operators = Operators(self.storage)
        operators.ensure_default_groups()
        password = env.get(ADMIN_PASSWORD_ENV) or None
        report.admin_created, report.generated_password = self._ensure_admin(password)
        if report.admin_created:
            operators.grant(ADMIN_LOGIN, groups=["admin"])
        TokenService(self.settings, self.storage).keys.ensure()
        report.replicated = replicate(self.storage)
        return report

    def is_initialised(self) -> bool:
        try:
            return not [c for c in migrate.plan(self.storage) if not c.kind.startswith("drop")]
        except sa.exc.SQLAlchemyError:
            return False

    def _ensure_admin(self, password: str | None) -> tuple[bool, str | None]:
        table = self.storage.table("xtk:operator")
        with self.storage.write(self.storage.home("xtk:operator")) as conn:
            exists = conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.sName == ADMIN_LOGIN)).scalar()
            if exists:
                return False, None
            generated = None
            if not password:
                password = generated = generate_password()
            values = {"iOperatorId": self.storage.sequences.next_id("XtkNewId"), "sName": ADMIN_LOGIN,
                      "sLabel": "Administrator"}
            values.update(self._password_column(table, hash_password(password)))
            if "mData" in table.c:  # named rights are an XML collection of the operator
                values["mData"] = '<operator><rights><right name="admin"/></rights></operator>'
            conn.execute(sa.insert(table).values(values))
        return True, generated

    @staticmethod
    def _password_column(table: sa.Table, hashed: str) -> dict[str, str]:
        for key in ("sPassword", "sPasswordHash"):
            if key in table.c:
                return {key: hashed}
        raise RuntimeError("xtk:operator has no password column")

    def close(self) -> None:
        self.storage.dispose()
