"""Reading source schemas (xtk:srcSchema XML) from files and strings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from ..xmlsafe import XMLInputError, parse_xml
from .errors import SchemaProblem

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Namespaces that only the product itself may define (data-model.md §1.1).
RESERVED_NAMESPACES = {"xtk", "nl", "nms", "ncm", "temp", "crm", "xxl", "ncl"}
BUILTIN_DIR = Path(__file__).parent / "builtin"


@dataclass
class SourceSchema:
    namespace: str
    name: str
    root: etree._Element
    source: str
    builtin: bool

    @property
    def id(self) -> str:
        return f"{self.namespace}:{self.name}"

    @property
    def extended_schema(self) -> str | None:
        return self.root.get("extendedSchema") or None


def read_source(text: bytes | str, source: str, *, builtin: bool = False) -> tuple[SourceSchema | None, list[SchemaProblem]]:
    try:
        root = parse_xml(text, source=source)
    except XMLInputError as exc:
        return None, [SchemaProblem(source, "/", str(exc).split(": ", 1)[-1])]
    problems: list[SchemaProblem] = []
    if root.tag != "srcSchema":
        return None, [SchemaProblem(source, f"/{root.tag}", "root element must be <srcSchema>")]
    namespace, name = root.get("namespace", ""), root.get("name", "")
    for label, value in (("namespace", namespace), ("name", name)):
        if not NAME_RE.match(value):
            problems.append(SchemaProblem(source, "/srcSchema", f"missing or invalid @{label} '{value}'"))
    if problems:
        return None, problems
    if not builtin and namespace in RESERVED_NAMESPACES and not root.get("extendedSchema"):
        problems.append(
            SchemaProblem(source, "/srcSchema", f"namespace '{namespace}' is reserved; use your own (e.g. 'cus')")
        )
    etree.strip_tags(root, etree.Comment)  # comments are documentation for humans, not part of the model
    return SourceSchema(namespace, name, root, source, builtin), problems


def read_file(path: Path, *, builtin: bool = False) -> tuple[SourceSchema | None, list[SchemaProblem]]:
    label = f"builtin:{path.relative_to(BUILTIN_DIR)}" if path.is_relative_to(BUILTIN_DIR) else str(path)
    return read_source(path.read_bytes(), label, builtin=builtin)


def read_folder(folder: Path, *, builtin: bool = False) -> tuple[list[SourceSchema], list[SchemaProblem]]:
    """Every *.xml under `folder`, recursively, in a stable (sorted) order."""
    sources: list[SourceSchema] = []
    problems: list[SchemaProblem] = []
    if not folder.is_dir():
        return [], [SchemaProblem(str(folder), "/", "schema folder does not exist")]
    for path in sorted(folder.rglob("*.xml")):
        schema, found = read_file(path, builtin=builtin)
        problems.extend(found)
        if schema is not None:
            sources.append(schema)
    return sources, problems


def builtin_sources() -> tuple[list[SourceSchema], list[SchemaProblem]]:
    return read_folder(BUILTIN_DIR, builtin=True)
