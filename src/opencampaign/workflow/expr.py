"""XTK expressions of activities compiled to SQL through the queryDef compiler (query/compile_expr.py).

Expressions see the fields of the population's targeting schema (and links from it), and the
variables `$(vars/@x)` (event), `$(instance/vars/@x)` and `$(task/vars/@x)`.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..query.compile_expr import ExprCompiler, QueryScope, Statement
from ..query.errors import DataApiError
from ..query.querydef import QueryDef, _Query, parse_querydef
from ..storage.placement import CLOUD
from . import worktables as wt
from .model import DefinitionError


def context_with_vars(base: CallContext, instance_vars: dict[str, Any], event_vars: dict[str, Any],
                      task_vars: dict[str, Any] | None = None) -> CallContext:
    values: dict[str, Any] = dict(base.variables)
    for key, value in instance_vars.items():
        values[f"instance/vars/@{key}"] = value
    for key, value in (task_vars or {}).items():
        values[f"task/vars/@{key}"] = value
    for key, value in event_vars.items():
        values[f"vars/@{key}"] = value
    return replace(base, variables=values)


class SchemaScope:
    """One SELECT over a targeting schema in the cloud database."""

    def __init__(self, storage: Any, ctx: CallContext, schema_id: str):
        self.stmt = Statement(storage, storage.registry, ctx, CLOUD)
        try:
            self.schema = self.stmt.schema(schema_id)
            self.scope = QueryScope(self.stmt, self.schema)
        except DataApiError as exc:
            raise DefinitionError(str(exc).splitlines()[0]) from None
        self.compiler = ExprCompiler(self.stmt)
        pk = self.schema.primary_key
        fields = list(pk.fields) if pk is not None else []
        if len(fields) != 1:
            raise DefinitionError(f"schema '{schema_id}' needs a single-field primary key to be targeted")
        attr = self.schema.attribute(fields[0])
        if attr is None or attr.sqlname is None:
            raise DefinitionError(f"schema '{schema_id}': primary key is not a column")
        self.pk = self.scope.table.c[attr.sqlname]

    def value(self, text: str) -> Any:
        return self.compiler.value(text, self.scope).sql

    def condition(self, text: str) -> Any:
        return self.compiler.condition(text, self.scope)

    def where(self, elem: etree._Element | None) -> Any:
        """A queryDef `<where>` (boolOperator, nested groups, EXISTS / IN sub-queries)."""
        if elem is None or not len(elem):
            return None
        doc = etree.Element("queryDef", schema=self.schema.id, operation="select")
        doc.append(deepcopy(elem))
        try:
            qd = parse_querydef(doc)
            return self._querydef().conditions(qd.where, self.scope)
        except DataApiError as exc:
            raise DefinitionError(" ".join(str(exc).splitlines())) from None

    def _querydef(self) -> Any:
        # Adapter: the queryDef engine has no public "compile conditions into my scope" entry
        # point; its condition compiler is reused with this statement (cloud database).
        query = _Query(self.stmt.storage, self.stmt.registry, self.stmt.ctx, QueryDef(schema=self.schema.id),
                       default_line_count=0, max_expression_length=self.stmt.max_expression_length)
        query.statement, query.compiler, query.role = self.stmt, self.compiler, CLOUD
        return query

    def from_root(self) -> Any:
        """The FROM clause of a query on the schema itself (with the joins compiled so far)."""
        return self.scope.from_clause()

    def root_filter(self) -> list[Any]:
        """Campaign's implicit filters: no id-0 row, no logically deleted row."""
        result = []
        empty = self.scope.not_empty_row()
        if empty is not None:
            result.append(empty)
        if self._querydef().hides_deleted():
            deleted = self.schema.attribute("@deleteStatus")
            result.append(self.scope.table.c[deleted.sqlname] == 0)
        return result

    def from_work(self, work: sa.TableClause) -> Any:
        """The population joined to its targeting rows (and links), for filters on a work table."""
        return work.join(self.scope.from_clause(), work.c[wt.ID] == self.pk)


def column_name(alias: str, index: int) -> str:
    clean = "".join(ch for ch in alias.replace("@", "").split("/")[-1] if ch.isalnum() or ch == "_")
    return clean or f"col{index}"
