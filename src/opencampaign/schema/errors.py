"""Errors raised while loading and compiling schemas."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchemaProblem:
    source: str  # file path or "builtin:ns/name.xml"
    xpath: str  # where in the schema, e.g. "/srcSchema/element[@name='recipient']/attribute[@name='x']"
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.xpath}: {self.message}"


class SchemaError(Exception):
    """One or more schemas are malformed or inconsistent; nothing was loaded."""

    def __init__(self, problems: list[SchemaProblem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} schema problem(s):\n{lines}")


class UnknownSchemaError(KeyError):
    def __init__(self, schema_id: str):
        super().__init__(schema_id)
        self.schema_id = schema_id

    def __str__(self) -> str:
        return f"XSV-350000 Schema '{self.schema_id}' is not defined"
