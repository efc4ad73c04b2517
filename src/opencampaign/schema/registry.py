"""The set of compiled schemas of an instance: built-in ones plus custom folders."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .compiler import compile_sources
from .errors import SchemaError, UnknownSchemaError
from .model import Method, Schema
from .source import SourceSchema, builtin_sources, read_folder


class SchemaRegistry:
    def __init__(self, schemas: dict[str, Schema], sources: list[SourceSchema]):
        self.schemas = dict(sorted(schemas.items()))
        self.sources = {s.id: s for s in sources}

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self.schemas

    def __iter__(self) -> Iterator[Schema]:
        return iter(self.schemas.values())

    def __len__(self) -> int:
        return len(self.schemas)

    def get(self, schema_id: str) -> Schema:
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise UnknownSchemaError(schema_id) from None

    def find(self, schema_id: str) -> Schema | None:
        return self.schemas.get(schema_id)

    def source(self, source_id: str) -> SourceSchema | None:
        """A source schema by its own id (extensions keep theirs: `cus:recipient`)."""
        return self.sources.get(source_id)

    def tables(self) -> list[Schema]:
        return [s for s in self.schemas.values() if s.has_table]

    def namespaces(self) -> dict[str, list[Schema]]:
        grouped: dict[str, list[Schema]] = {}
        for schema in self.schemas.values():
            grouped.setdefault(schema.namespace, []).append(schema)
        return grouped

    def method(self, schema_id: str, name: str) -> Method | None:
        schema = self.find(schema_id)
        return schema.method(name) if schema else None


def load_registry(schema_dirs: Iterable[Path | str] = ()) -> SchemaRegistry:
    """Built-in schemas, then every *.xml under each folder; raises SchemaError listing every problem."""
    sources, problems = builtin_sources()
    for folder in schema_dirs:
        found, folder_problems = read_folder(Path(folder))
        sources.extend(found)
        problems.extend(folder_problems)
    if problems:
        raise SchemaError(problems)
    return SchemaRegistry(compile_sources(sources), sources)
