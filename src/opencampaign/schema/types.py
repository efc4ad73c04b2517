"""XTK data types: SQL column prefix, storage family and null semantics (data-model.md §1.5-1.6)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XtkType:
    name: str
    prefix: str  # Campaign's column-name prefix: sEmail, iGender, dTotal, tsCreated, mData
    family: str  # string | integer | float | date | datetime | time | text | binary
    not_null: bool  # numbers and booleans are NOT NULL DEFAULT 0 in Campaign's DDL


_TYPES = [
    XtkType("string", "s", "string", False),
    XtkType("uuid", "s", "string", False),
    XtkType("boolean", "i", "integer", True),
    XtkType("byte", "i", "integer", True),
    XtkType("short", "i", "integer", True),
    XtkType("long", "i", "integer", True),
    XtkType("int64", "i", "integer", True),
    XtkType("float", "d", "float", True),
    XtkType("double", "d", "float", True),
    XtkType("percent", "d", "float", True),
    XtkType("money", "d", "float", True),
    XtkType("timespan", "d", "float", True),
    XtkType("date", "ts", "date", False),
    XtkType("datetime", "ts", "datetime", False),
    XtkType("datetimetz", "ts", "datetime", False),
    XtkType("datetimenotz", "ts", "datetime", False),
    XtkType("time", "ts", "time", False),
    XtkType("memo", "m", "text", False),
    XtkType("html", "m", "text", False),
    XtkType("CDATA", "m", "text", False),
    XtkType("blob", "b", "binary", False),
]
XTK_TYPES: dict[str, XtkType] = {t.name: t for t in _TYPES}
# Spellings seen in real schemas for the same storage.
TYPE_ALIASES = {"int": "long", "cdata": "CDATA", "bool": "boolean"}
# Types that only appear on method parameters.
PARAM_ONLY_TYPES = {"DOMDocument", "DOMElement", "primarykey", "ANY", "MNTOKEN", "int", "enum", "link"}
TEXT_ELEMENT_TYPES = {"memo", "html", "CDATA", "string", "blob"}
DEFAULT_STRING_LENGTH = 255


def normalize_type(name: str | None) -> str:
    if not name:
        return "string"  # an untyped attribute is a string (data-model.md §1.5)
    return TYPE_ALIASES.get(name, TYPE_ALIASES.get(name.lower(), name))


def xtk_type(name: str) -> XtkType:
    return XTK_TYPES[normalize_type(name)]
