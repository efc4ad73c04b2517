"""Instance configuration: defaults, then `opencampaign.toml` in the data dir, then OPENCAMPAIGN_* variables.

Any setting `[section] key = value` can be overridden by `OPENCAMPAIGN_SECTION__KEY`; the
shortcuts below cover the ones scripts use most.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "opencampaign.toml"
ENV_PREFIX = "OPENCAMPAIGN_"
SHORTCUTS = {
    "OPENCAMPAIGN_LOCAL_DB": ("database", "local"),
    "OPENCAMPAIGN_CLOUD_DB": ("database", "cloud"),
    "OPENCAMPAIGN_SINGLE_DATABASE": ("database", "single"),
    "OPENCAMPAIGN_SCHEMAS": ("schemas", "dirs"),
    "OPENCAMPAIGN_TPS_DEFAULT": ("limits", "tps_default"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "database": {"local": "", "cloud": "", "single": False, "sqlite_synchronous": "FULL"},
    "schemas": {"dirs": []},
    "server": {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 4 * 1024 * 1024},
    "query": {"default_line_count": 10000, "max_expression_length": 65536},
    "session": {"ttl_seconds": 24 * 3600},
    "limits": {"tps_default": 0},
}


class ConfigError(ValueError):
    pass


@dataclass
class Settings:
    data_dir: Path
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.values.get(section, {}).get(key, default)

    @property
    def single_database(self) -> bool:
        return _as_bool(self.get("database", "single"))

    @property
    def local_url(self) -> str:
        return self.get("database", "local") or f"sqlite:///{self.data_dir / 'local.sqlite'}"

    @property
    def cloud_url(self) -> str:
        if self.single_database:
            return self.local_url
        return self.get("database", "cloud") or f"duckdb:///{self.data_dir / 'cloud.duckdb'}"

    @property
    def schema_dirs(self) -> list[Path]:
        dirs = self.get("schemas", "dirs") or []
        if isinstance(dirs, str):
            dirs = [d for d in dirs.split(os.pathsep) if d]
        return [Path(d) if Path(d).is_absolute() else self.data_dir / d for d in dirs]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _coerce(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        return _as_bool(text)
    if isinstance(like, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"expected an integer, got '{text}'") from None
    return text


def load_settings(data_dir: Path | str, *, schema_dirs: list[str] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    data_dir = Path(data_dir).resolve()
    env = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULTS.items()}
    path = data_dir / CONFIG_FILE
    if path.exists():
        try:
            loaded = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for section, entries in loaded.items():
            if not isinstance(entries, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            values.setdefault(section, {}).update(entries)
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name in SHORTCUTS:
            section, key = SHORTCUTS[name]
        elif "__" in name:
            section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        else:
            continue
        current = values.setdefault(section, {}).get(key)
        try:
            values[section][key] = _coerce(raw, current) if current is not None and not isinstance(current, list) else raw
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    settings = Settings(data_dir, values)
    if schema_dirs:
        settings.values["schemas"]["dirs"] = [str(Path(d).resolve()) for d in schema_dirs] + list(settings.schema_dirs)
    return settings
