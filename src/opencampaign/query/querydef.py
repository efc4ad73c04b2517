"""xtk:queryDef: the query document parsed, compiled to SQL and run (data-model.md §3).

A queryDef is an XML syntax tree, never SQL: every `expr` goes through the schema-aware
expression compiler, constants are bound parameters, and raw SQL (`sql=`, `aliasSqlTable`) is
refused unless the caller holds the allowSQLInjection privilege (`CallContext.allow_sql`).
One statement runs per query level: the main page, then one per selected collection for the
whole page (never one per row). Decisions are documented in docs/querydef.md.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from ..context import CallContext
from ..schema.model import Element, Schema
from ..schema.registry import SchemaRegistry
from ..security.conditions import access_denied
from ..security.folders import folder_column, folder_rights
from ..storage.engines import ReadConnections, read_connection, read_connections
from ..storage.pgraw import PreparedRead
from ..storage.placement import CLOUD, LOCAL
from ..storage.storage import Storage
from ..xmlsafe import XMLInputError, parse_xml
from . import errors
from .compile_expr import (
    LIFTED_PREFIX,
    ExprCompiler,
    QueryScope,
    RowContext,
    Statement,
    Typed,
    join_column,
    parse,
)
from .expr import ast
from .expr.errors import ExpressionError
from .lifting import SHAPES, LiftedQuery, document_text, lift_constants
from .output import OutSpec, RowShaper, count_document, spec_from_xpath, target_element
from .simplejson import RepresentationError, json_document_to_xml

OPERATIONS = ("select", "get", "getIfExists", "count")
SET_OPERATORS = ("EXISTS", "NOT EXISTS", "IN", "NOT IN")
UNSUPPORTED_SET_OPERATORS = ("COUNT", "SUM", "AVG", "MIN", "MAX")
MAX_NESTING = 64  # nested conditions / sub-selects / sub-queries
KEY_CHUNK = 5000  # parent keys per sub-select statement (SQLite binds at most 32766 parameters)

Document = etree._Element | str | bytes | dict[str, Any]


# -- the document ------------------------------------------------------------------------------


@dataclass
class OrderNode:
    expr: str
    desc: bool = False


@dataclass
class Condition:
    expr: str | None = None
    bool_or: bool = False  # joins this condition to the *next* sibling with OR
    set_operator: str | None = None
    children: list[Condition] = field(default_factory=list)
    sub_query: SubQuery | None = None
    sql: str | None = None
    alias_sql_table: str | None = None
    ignore: bool = False
    enabled_if: str | None = None


@dataclass
class SelectNode:
    expr: str | None
    alias: str | None = None
    analyze: bool = False
    group_by: bool = False
    ordered: bool = False
    no_compute_string: bool = False
    sql: str | None = None
    children: list[SelectNode] = field(default_factory=list)  # sub-select of a collection
    where: list[Condition] = field(default_factory=list)
    order_by: list[OrderNode] = field(default_factory=list)


@dataclass
class SubQuery:
    schema: str
    select: list[SelectNode] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    having: list[Condition] = field(default_factory=list)


@dataclass
class QueryDef:
    schema: str
    operation: str = "select"
    line_count: int | None = None
    start_line: int = 0
    distinct: bool = False
    ignore_delete_status: bool = False
    select: list[SelectNode] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    order_by: list[OrderNode] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    having: list[Condition] = field(default_factory=list)


def _flag(elem: etree._Element, name: str) -> bool:
    return (elem.get(name) or "").strip().lower() in ("true", "1")


def _count(elem: etree._Element, name: str) -> int | None:
    text = (elem.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 12:
        raise errors.invalid_query(f"{name}='{errors.echo(text)}' is not a non-negative integer")
    return int(text)


def _kids(elem: etree._Element | None, tag: str) -> list[etree._Element]:
    if elem is None:
        return []
    return [c for c in elem if isinstance(c.tag, str) and etree.QName(c).localname == tag]


def _kid(elem: etree._Element, tag: str) -> etree._Element | None:
    found = _kids(elem, tag)
    return found[0] if found else None


def _conditions(parent: etree._Element | None, depth: int) -> list[Condition]:
    if depth > MAX_NESTING:
        raise errors.invalid_query(f"conditions are nested deeper than {MAX_NESTING} levels")
    return [_condition(c, depth) for c in _kids(parent, "condition")]


def _condition(elem: etree._Element, depth: int) -> Condition:
    operator = (elem.get("boolOperator") or elem.get("bool-operator") or "AND").strip().upper()
    if operator not in ("AND", "OR"):
        raise errors.invalid_query(f"boolOperator='{errors.echo(operator)}' (expected AND or OR)")
    set_operator = elem.get("setOperator")
    if set_operator is not None:
        set_operator = " ".join(set_operator.upper().split())
        if set_operator in UNSUPPORTED_SET_OPERATORS:
            raise errors.invalid_query(f"setOperator='{set_operator}' is not supported; "
                                       f"use an aggregate function in a sub-query")
        if set_operator not in SET_OPERATORS:
            raise errors.invalid_query(f"setOperator='{errors.echo(set_operator)}' "
                                       f"(expected one of {', '.join(SET_OPERATORS)})")
    sub = _kid(elem, "subQuery")
    return Condition(
        expr=elem.get("expr"), bool_or=operator == "OR", set_operator=set_operator,
        children=_conditions(elem, depth + 1), sub_query=_sub_query(sub, depth + 1) if sub is not None else None,
        sql=elem.get("sql"), alias_sql_table=elem.get("aliasSqlTable"), ignore=_flag(elem, "ignore"),
        enabled_if=elem.get("enabledIf"),
    )


def _sub_query(elem: etree._Element, depth: int) -> SubQuery:
    schema = elem.get("schema")
    if not schema:
        raise errors.invalid_query("<subQuery> needs a schema attribute")
    return SubQuery(schema, select=_nodes(_kid(elem, "select"), depth + 1),
                    where=_conditions(_kid(elem, "where"), depth + 1),
                    group_by=[n.get("expr") or "" for n in _kids(_kid(elem, "groupBy"), "node")],
                    having=_conditions(_kid(elem, "having"), depth + 1))


def _order(elem: etree._Element | None) -> list[OrderNode]:
    return [OrderNode(n.get("expr") or "", _flag(n, "sortDesc")) for n in _kids(elem, "node")]


def _nodes(parent: etree._Element | None, depth: int) -> list[SelectNode]:
    if depth > MAX_NESTING:
        raise errors.invalid_query(f"select nodes are nested deeper than {MAX_NESTING} levels")
    return [
        SelectNode(
            expr=n.get("expr"), alias=n.get("alias"), analyze=_flag(n, "analyze"), group_by=_flag(n, "groupBy"),
            ordered=_flag(n, "ordered"), no_compute_string=_flag(n, "noComputeString"), sql=n.get("sql"),
            children=_nodes(n, depth + 1), where=_conditions(_kid(n, "where"), depth + 1),
            order_by=_order(_kid(n, "orderBy")),
        )
        for n in _kids(parent, "node")
    ]


def read_document(document: Document) -> etree._Element:
    """The <queryDef> element of an XML element, XML text or SimpleJson `{"queryDef": {...}}`."""
    try:
        if isinstance(document, dict):
            elem = json_document_to_xml(document, None if "queryDef" in document else "queryDef")
        elif isinstance(document, str | bytes):
            elem = parse_xml(document, source="queryDef")
        else:
            elem = document
    except (XMLInputError, RepresentationError) as exc:
        raise errors.invalid_query(str(exc)) from None
    if not isinstance(elem, etree._Element) or not isinstance(elem.tag, str):
        raise errors.invalid_query("expected a <queryDef> element")
    if etree.QName(elem).localname != "queryDef":
        inner = _kid(elem, "queryDef")
        if inner is None:
            raise errors.invalid_query(f"expected a <queryDef> element, got <{errors.echo(str(elem.tag))}>")
        elem = inner
    return elem


def parse_querydef(document: Document) -> QueryDef:
    elem = read_document(document)
    schema = (elem.get("schema") or "").strip()
    if not schema:
        raise errors.invalid_query("the schema attribute is missing")
    operation = (elem.get("operation") or "select").strip()
    if operation not in OPERATIONS:
        raise errors.invalid_query(f"operation='{errors.echo(operation)}' (expected {', '.join(OPERATIONS)})")
    group_nodes = _kids(_kid(elem, "groupBy"), "node")
    return QueryDef(
        schema=schema, operation=operation, line_count=_count(elem, "lineCount"),
        start_line=_count(elem, "startLine") or 0, distinct=_flag(elem, "distinct"),
        ignore_delete_status=_flag(elem, "ignoreDeleteStatus"),
        select=_nodes(_kid(elem, "select"), 1), where=_conditions(_kid(elem, "where"), 1),
        order_by=_order(_kid(elem, "orderBy")), group_by=[n.get("expr") or "" for n in group_nodes],
        having=_conditions(_kid(elem, "having"), 1),
    )


# -- planning ----------------------------------------------------------------------------------


@dataclass
class _Collection:
    """A selected 1-N collection, filled by one extra statement for the whole page."""

    node: SelectNode
    link: Element
    target: Schema
    key_indexes: list[int]  # hidden columns of the parent level holding the join source values
    steps: tuple[str, ...]  # where the member elements go below the parent row


class _Level:
    """One SELECT: the main query, a sub-select of a collection, or a sub-query."""

    def __init__(self, query: _Query, schema: Schema, row_name: str, outer: QueryScope | None = None):
        self.q = query
        self.schema = schema
        self.row_name = row_name
        self.scope = QueryScope(query.statement, schema, outer)
        self.columns: list[Any] = []
        self.outputs: list[tuple[int, OutSpec]] = []
        self.values: list[Typed] = []
        self.collections: list[_Collection] = []
        self.filters: list[Any] = []
        self.group_by: list[Any] = []
        self.having: list[Any] = []
        self.order_by: list[Any] = []
        self.distinct = False
        self.shaper: RowShaper | None = None
        if query.read_denied(schema):  # readAccess sysFilter: Campaign appends FALSE to the where
            self.filters.append(sa.false())
        hidden = query.hidden_folders(schema)
        if hidden:  # folder rights: records of folders the caller may not read are left out
            self.filters.append(sa.not_(query.compiler.sortable("[@folder-id]", self.scope).sql.in_(sorted(hidden))))

    # -- columns
    def add_column(self, sql: Any, prefix: str = "c") -> int:
        self.columns.append(sql.label(f"{prefix}{len(self.columns)}"))
        return len(self.columns) - 1

    def add_value(self, typed: Typed, spec: OutSpec) -> None:
        self.values.append(typed)
        self.outputs.append((self.add_column(typed.sql), spec))

    def add_nodes(self, nodes: list[SelectNode]) -> None:
        for index, node in enumerate(nodes or self.default_nodes()):
            self.add_node(node, index)
            if node.ordered and node.expr:
                self.order_by.append(self.sort_key(node.expr, False))
            if node.group_by and node.expr:
                self.group_by.append(self.q.compiler.sortable(node.expr, self.scope).sql)

    def default_nodes(self) -> list[SelectNode]:
        """No <select>: every field stored in a column of the main element (links not followed)."""
        assert self.schema.root is not None
        nodes = [SelectNode(f"[{a.xpath}]") for a in self.schema.root.walk_attributes() if a.sqlname is not None]
        nodes += [SelectNode(f"[{e.xpath}]") for e in self.schema.text_columns()]
        return nodes

    def add_node(self, node: SelectNode, index: int) -> None:
        compiler = self.q.compiler
        if node.sql is not None:
            self.q.require_sql("sql on a select node")
            self.add_value(Typed(sa.literal_column(f"({node.sql})"), "string"),
                           self.out_spec(node.alias or f"@expr{index}", "string"))
            return
        if not node.expr:
            raise errors.invalid_query("a select node has no expr")
        tree = parse(node.expr, self.q.max_expression_length)
        if isinstance(tree, ast.Path) and not tree.is_attribute:  # may name a link, collection or element
            resolved = compiler.resolve(node.expr, self.scope)
            target = resolved.node
            if isinstance(target, Element) and not (target.is_text and not target.is_link):
                self.add_element_node(node, tree, resolved.context, target)
                return
        if node.children or node.where or node.order_by:
            raise errors.invalid_query(f"'{errors.echo(node.expr)}' is not a collection: it cannot have "
                                       f"sub-nodes, where or orderBy")
        typed = compiler.value(node.expr, self.scope, allow_xml=True)
        default = tree.xpath if isinstance(tree, ast.Path) and tree.outer_levels == 0 else f"@expr{index}"
        xtk_type = typed.type if typed.type not in ("null", "predicate") else "string"
        spec = self.out_spec(node.alias or default, xtk_type, enum=typed.enum, analyze=node.analyze,
                             xml=typed.xml.xpath if typed.xml else None)
        self.add_value(typed, spec)

    def out_spec(self, path: str, xtk_type: str, **kw: Any) -> OutSpec:
        try:
            return spec_from_xpath(path, xtk_type, **kw)
        except ValueError as exc:
            raise errors.invalid_query(str(exc)) from None

    def add_element_node(self, node: SelectNode, tree: ast.Path, context: RowContext, element: Element) -> None:
        path = tree.xpath
        steps = tuple(path.split("/")[:-1])
        if element.is_link and element.unbound:
            target = self.q.statement.schema(element.target or "")
            self.q.statement.require(target, via=f"{context.schema.id}/{element.xpath}")
            self.collections.append(_Collection(
                node, element, target,
                [self.add_column(join_column(context, element, j.src), "k") for j in element.joins], steps))
            return
        if node.children or node.where or node.order_by:
            raise errors.invalid_query(f"'{errors.echo(path)}' is not a collection: it cannot have sub-nodes")
        compiler = self.q.compiler
        if element.is_link:
            hop = context.scope.hop(context, element)
            base = (node.alias or path).lstrip("@")
            pk = hop.schema.primary_key
            for xpath in pk.fields if pk else []:
                typed = compiler.value_at(f"[{xpath}]", hop)
                self.add_value(typed, self.out_spec(f"{base}/{xpath}", typed.type))
            if not node.no_compute_string:
                expr = hop.schema.compute_string or (f"[{pk.fields[0]}]" if pk and pk.fields else None)
                if expr:
                    typed = compiler.value_at(expr, hop)
                    self.add_value(typed, self.out_spec(f"{base}/@_cs", "string"))
            return
        # a structure element (e.g. location): every field it holds
        for attr in element.attributes.values():
            if attr.expr is None:
                self.add_node(SelectNode(f"[{path}/@{attr.name}]", analyze=node.analyze), 0)

    def sort_key(self, expr: str, desc: bool) -> Any:
        column = self.q.compiler.sortable(expr, self.scope).sql
        # PostgreSQL's null ordering (Campaign's reference engine) on every engine
        return column.desc().nulls_first() if desc else column.asc().nulls_last()

    # -- clauses
    def add_where(self, conditions: list[Condition]) -> None:
        compiled = self.q.conditions(conditions, self.scope)
        if compiled is not None:
            self.filters.append(compiled)

    def add_having(self, conditions: list[Condition]) -> None:
        compiled = self.q.conditions(conditions, self.scope)
        if compiled is not None:
            self.having.append(compiled)

    def add_group_by(self, exprs: Iterable[str]) -> None:
        for expr in exprs:
            if not expr:
                raise errors.invalid_query("a groupBy node has no expr")
            self.group_by.append(self.q.compiler.sortable(expr, self.scope).sql)

    def add_order_by(self, nodes: list[OrderNode]) -> None:
        for node in nodes:
            if not node.expr:
                raise errors.invalid_query("an orderBy node has no expr")
            self.order_by.append(self.sort_key(node.expr, node.desc))

    def finish_grouping(self, keys: list[Any] | None = None) -> None:
        """`keys`: the parent keys of a sub-select, always grouped so aggregates are per parent."""
        aggregated = any(v.aggregate for v in self.values)
        if aggregated and self.collections:
            raise errors.invalid_query("a collection sub-select cannot be combined with aggregates")
        if aggregated and not self.group_by:
            # Campaign groups by the non-aggregated selected values; doing it here keeps the
            # result identical on engines that would otherwise accept or refuse the query.
            self.group_by = [v.sql for v in self.values if not v.aggregate and not v.const]
        if keys and (aggregated or self.group_by):
            self.group_by = [*self.group_by, *keys]

    def where_clause(self) -> list[Any]:
        empty = self.scope.not_empty_row()
        if empty is None or self.pins_key():
            return list(self.filters)
        return [empty, *self.filters]

    def pins_key(self) -> bool:
        """True when a top-level condition is `id = <non-zero constant>`: the id-0 exclusion is
        then redundant, and DuckDB answers a bare key lookup faster without it."""
        pk = self.schema.attribute("@id")
        if pk is None or pk.sqlname is None:
            return False
        column = self.scope.table.c[pk.sqlname]
        pending = list(self.filters)
        while pending:
            clause = pending.pop()
            if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
                pending.extend(clause.clauses)
            elif isinstance(clause, BinaryExpression) and clause.operator is operators.eq:
                for side, other in ((clause.left, clause.right), (clause.right, clause.left)):
                    if side is column and isinstance(other, BindParameter) and other.value not in (0, None):
                        return True
        return False

    def select(self, *, limit: int | None = None, offset: int = 0, extra: Iterable[Any] = ()) -> sa.Select:
        statement = sa.select(*self.columns).select_from(self.scope.from_clause())
        filters = [*self.where_clause(), *extra]
        if filters:
            statement = statement.where(*filters)
        if self.group_by:
            statement = statement.group_by(*self.group_by)
        if self.having:
            statement = statement.having(*self.having)
        if self.distinct:
            statement = statement.distinct()
        order = list(self.order_by)
        if order and not self.group_by and not self.distinct:
            order += self.tie_breaker()
        if order:
            statement = statement.order_by(*order)
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        return statement

    def tie_breaker(self) -> list[Any]:
        """The primary key after the requested sort, so pages never overlap or skip rows."""
        pk = self.schema.primary_key
        columns = []
        for xpath in pk.fields if pk else []:
            attr = self.schema.attribute(xpath)
            if attr is not None and attr.sqlname is not None:
                columns.append(self.scope.table.c[attr.sqlname].asc())
        return columns

    def count(self) -> sa.Select:
        """count(*) of the rows (or of the groups, or of the distinct selected values), nothing else."""
        filters = self.where_clause()
        if not self.distinct and not self.group_by:
            return sa.select(sa.func.count()).select_from(self.scope.from_clause()).where(*filters)
        columns = [g.label(f"g{i}") for i, g in enumerate(self.group_by)] if self.group_by else self.columns
        base = sa.select(*columns).select_from(self.scope.from_clause()).where(*filters)
        if self.group_by:
            base = base.group_by(*self.group_by)
            if self.having:
                base = base.having(*self.having)
        if self.distinct:
            base = base.distinct()
        return sa.select(sa.func.count()).select_from(base.subquery("Q0"))

    # -- rows to elements
    def element(self, parent: etree._Element, row: Any) -> etree._Element:
        return self.row_shaper().element(parent, row)

    def collection(self, root_tag: str, rows: list[Any]) -> etree._Element:
        return self.row_shaper().collection(root_tag, rows)

    def row_shaper(self) -> RowShaper:
        if self.shaper is None:
            self.shaper = RowShaper(self.row_name, self.outputs)
        return self.shaper


class _Query:
    def __init__(self, storage: Storage, registry: SchemaRegistry, ctx: CallContext, qd: QueryDef, *,
                 default_line_count: int, max_expression_length: int):
        schema = registry.find(qd.schema)
        if schema is None:
            raise errors.unknown_schema(qd.schema)
        if not schema.has_table:
            raise errors.invalid_query(f"schema '{schema.id}' has no table and cannot be queried")
        self.qd = qd
        self.schema = schema
        self.storage = storage
        self.ctx = ctx
        self.registry = registry
        self.default_line_count = default_line_count
        self.max_expression_length = max_expression_length
        self._denied: dict[str, bool] = {}
        self.use_role(storage.home(schema.id))

    def hidden_folders(self, schema: Schema) -> frozenset[int]:
        """Folders whose records this caller may not read, when `schema` files records in folders."""
        if folder_column(schema) is None:
            return frozenset()
        rights = folder_rights(self.storage)
        return rights.denied(self.ctx, "read") if rights is not None else frozenset()

    def read_denied(self, schema: Schema) -> bool:
        """The schema's `<sysFilter name="readAccess">` hides every row from this caller."""
        denied = self._denied.get(schema.id)
        if denied is None:
            try:
                denied = access_denied(schema.compiled_xml, "readAccess", self.ctx)
            except Exception:  # noqa: BLE001 - an unevaluable filter denies access
                denied = True
            self._denied[schema.id] = denied
        return denied

    def use_role(self, role: str) -> None:
        self.role = role
        self.statement = Statement(self.storage, self.registry, self.ctx, role,
                                   max_expression_length=self.max_expression_length)
        self.compiler = ExprCompiler(self.statement)

    def plan(self) -> tuple[_Level, sa.Select]:
        """The main level and its statement. A local schema replicated to the cloud that needs
        cloud-only tables (e.g. folders filtered on their recipients) runs on its cloud replica."""
        try:
            level = self.main_level()
        except errors.DataApiError as exc:
            if exc.code != errors.FOREIGN_DATABASE or not self.can_use_replica():
                raise
            self.use_role(CLOUD)
            level = self.main_level()
        return level, self.statement_for(level)

    def can_use_replica(self) -> bool:
        return self.role == LOCAL and not self.storage.single and \
            CLOUD in self.storage.placement.roles_of(self.schema.id)

    def require_sql(self, what: str) -> None:
        if not self.ctx.allow_sql:
            raise errors.sql_not_allowed(what)

    # -- conditions
    def conditions(self, conditions: list[Condition], scope: QueryScope) -> Any:
        """Siblings: boolOperator joins a condition to the next one; AND binds tighter than OR."""
        groups: list[list[Any]] = [[]]
        for condition in conditions:
            if condition.ignore:
                continue
            compiled = self.condition(condition, scope)
            if compiled is not None:
                groups[-1].append(compiled)
            if condition.bool_or and groups[-1]:
                groups.append([])
        terms = [sa.and_(*g) if len(g) > 1 else g[0] for g in groups if g]
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else sa.or_(*terms)

    def condition(self, condition: Condition, scope: QueryScope) -> Any:
        if condition.alias_sql_table is not None:
            self.require_sql("aliasSqlTable")
            raise errors.invalid_query("aliasSqlTable is not supported; reference tables through links")
        if condition.sql is not None:
            self.require_sql("sql on a condition")
            # literal_column, not text(): a ':name' inside the SQL must not become a bind parameter
            result: Any = sa.literal_column(f"({condition.sql})", sa.Boolean)
        elif condition.set_operator is not None:
            result = self.set_condition(condition, scope)
        else:
            parts = []
            if condition.expr is not None and condition.expr.strip():
                parts.append(self.compiler.condition(condition.expr, scope))
            nested = self.conditions(condition.children, scope)
            if nested is not None:
                parts.append(nested)
            if not parts:
                return None
            result = parts[0] if len(parts) == 1 else sa.and_(*parts)
        if condition.enabled_if:
            enabled = self.compiler.condition(condition.enabled_if, scope)
            result = sa.or_(sa.not_(enabled), result)
        return result

    def set_condition(self, condition: Condition, scope: QueryScope) -> Any:
        expr = condition.expr or ""
        if not expr.strip():
            raise errors.invalid_query(f"setOperator='{condition.set_operator}' needs an expr")
        if condition.set_operator in ("EXISTS", "NOT EXISTS"):
            return self.exists(condition, scope, expr)
        sub = condition.sub_query
        if sub is None:
            raise errors.invalid_query(f"setOperator='{condition.set_operator}' needs a <subQuery>")
        left = self.compiler.value(expr, scope)
        level = _Level(self, self.statement.schema(sub.schema), "subQuery", outer=scope)
        if len(sub.select) != 1 or not sub.select[0].expr:
            raise errors.invalid_query("a <subQuery> selects exactly one node with an expr")
        right = self.compiler.value(sub.select[0].expr, level.scope)
        try:
            self.compiler.coerce(left, right)
        except Exception as exc:  # CompileError: mismatched types
            raise errors.expression_error(expr, getattr(exc, "detail", str(exc))) from None
        level.add_where(sub.where)
        level.add_group_by(sub.group_by)
        level.add_having(sub.having)
        level.columns = [right.sql.label("c0")]
        inner = level.select()
        test = left.sql.in_(inner)
        return sa.not_(test) if condition.set_operator == "NOT IN" else test

    def exists(self, condition: Condition, scope: QueryScope, expr: str) -> Any:
        resolved = self.compiler.resolve(expr, scope)
        link = resolved.node
        if not isinstance(link, Element) or not link.is_link:
            raise errors.expression_error(expr, f"'{expr}' is not a link or a collection: "
                                                f"setOperator='{condition.set_operator}' needs one")
        level = _Level(self, self.statement.schema(link.target or ""), "exists", outer=scope)
        correlation = [_target_column(level, link, j.dst) == join_column(resolved.context, link, j.src)
                       for j in link.joins]
        level.filters.extend(correlation)
        level.add_where(condition.children)
        inner = sa.select(sa.literal(1)).select_from(level.scope.from_clause()).where(*level.where_clause())
        test = sa.exists(inner)
        return sa.not_(test) if condition.set_operator == "NOT EXISTS" else test

    # -- the main level
    def main_level(self) -> _Level:
        qd = self.qd
        level = _Level(self, self.schema, self.schema.name)
        level.distinct = qd.distinct
        if qd.operation != "count" or (qd.distinct and not qd.group_by):
            level.add_nodes(qd.select)
        level.add_where(qd.where)
        if self.hides_deleted():
            status = self.schema.attribute("@deleteStatus")
            assert status is not None and status.sqlname is not None
            level.filters.append(level.scope.table.c[status.sqlname] == 0)
        level.add_group_by(qd.group_by)
        level.add_having(qd.having)
        if qd.operation != "count":
            level.add_order_by(qd.order_by)
        level.finish_grouping()
        return level

    def hides_deleted(self) -> bool:
        """Recycle-bin schemas hide their deleted rows unless ignoreDeleteStatus is set."""
        if self.qd.ignore_delete_status or self.schema.compiled_xml is None:
            return False
        if (self.schema.compiled_xml.get("useRecycleBin") or "").lower() not in ("true", "1"):
            return False
        status = self.schema.attribute("@deleteStatus")
        return status is not None and status.sqlname is not None

    def statement_for(self, level: _Level) -> sa.Select:
        qd = self.qd
        if qd.operation == "count":
            return level.count()
        if qd.operation in ("get", "getIfExists"):
            return level.select(limit=1)
        limit = qd.line_count if qd.line_count else self.default_line_count
        return level.select(limit=limit, offset=qd.start_line)

    # -- running
    def run(self, params: dict[str, Any] | None = None) -> etree._Element:
        level, statement = self.plan()
        return self.run_planned(level, statement, params)

    def run_planned(self, level: _Level, statement: sa.Select, params: dict[str, Any] | None = None,
                    compiled: dict[int, Any] | None = None) -> etree._Element:
        """Run a planned statement through SQLAlchemy; `params` rebinds lifted constants,
        `compiled` caches the statement compiled for its engine (plan cache)."""
        engine = self.storage.engine(self.role)
        try:
            # One statement (no sub-select): no transaction round trip, the statement is atomic.
            with read_connection(engine, autocommit=not level.collections) as conn:
                result = _execute(conn, statement, params or {}, compiled)
                if self.qd.operation == "count":
                    return count_document(self.schema.name, int(result.scalar() or 0))
                rows = result.all()
                root, elements = self.document(level.row_shaper(), rows, bool(level.collections))
                if level.collections:
                    self.fill_collections(conn, level, rows, elements, 1)
                return root
        except sa.exc.SQLAlchemyError as exc:
            raise errors.database_error(exc, self.statement.dialect) from None
        except ExpressionError as exc:  # raised while rendering SQL (misplaced When/Else...)
            raise errors.expression_error(exc.expression or "", exc.detail) from None

    def document(self, shaper: RowShaper, rows: list[Any], with_elements: bool = False
                 ) -> tuple[etree._Element, list[etree._Element]]:
        """The output document of a select / get / getIfExists, and (`with_elements`) the row
        elements in row order, for the sub-selects to fill."""
        if self.qd.operation == "select":
            root = shaper.collection(f"{self.schema.name}-collection", rows)
            return root, list(root) if with_elements else []
        if not rows:
            if self.qd.operation == "get":
                raise errors.DataApiError(errors.NO_RESULT, f"The query on '{self.schema.full_label}' "
                                                            f"returned no result (operation 'get').")
            return etree.Element(self.schema.name), []
        root = shaper.single(rows[0])
        return root, [root]

    def fill_collections(self, conn: sa.Connection, level: _Level, rows: list[Any],
                         elements: list[etree._Element], depth: int) -> None:
        for collection in level.collections:
            parents: dict[tuple[Any, ...], list[etree._Element]] = {}
            for row, elem in zip(rows, elements, strict=True):
                key = tuple(row[i] for i in collection.key_indexes)
                if all(k is not None for k in key):
                    parents.setdefault(key, []).append(target_element(elem, collection.steps))
            if parents:
                self.fill_collection(conn, collection, parents, depth)

    def fill_collection(self, conn: sa.Connection, collection: _Collection,
                        parents: dict[tuple[Any, ...], list[etree._Element]], depth: int) -> None:
        if depth > MAX_NESTING:
            raise errors.invalid_query(f"sub-selects are nested deeper than {MAX_NESTING} levels")
        link = collection.link
        child = _Level(self, collection.target, link.name)
        child.add_nodes(collection.node.children)
        key_columns = [_target_column(child, link, j.dst) for j in link.joins]
        key_indexes = [child.add_column(c, "k") for c in key_columns]
        child.add_where(collection.node.where)
        child.add_order_by(collection.node.order_by)
        child.finish_grouping(key_columns)
        if not child.order_by and not child.group_by:
            child.order_by = child.tie_breaker()
        # Members whose every value goes to the parent (alias="../@n", e.g. a count) add no element.
        detached = bool(child.outputs) and all(spec.steps[:1] == ("..",) for _, spec in child.outputs)
        keys = list(parents)
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = keys[start:start + KEY_CHUNK]
            if len(key_columns) == 1:
                restriction = key_columns[0].in_([k[0] for k in chunk])
            else:
                restriction = sa.tuple_(*key_columns).in_(chunk)
            rows = conn.execute(child.select(extra=[restriction])).all()
            child_rows, child_elements = [], []
            for row in rows:
                for parent in parents.get(tuple(row[i] for i in key_indexes), []):
                    member = child.element(parent, row)
                    if detached:
                        parent.remove(member)
                        continue
                    child_rows.append(row)
                    child_elements.append(member)
            self.fill_collections(conn, child, child_rows, child_elements, depth + 1)


def _execute(conn: sa.Connection, statement: sa.Select, params: dict[str, Any],
             compiled: dict[int, Any] | None) -> Any:
    """Execute, reusing the statement compiled for this engine when the plan is cached (DuckDB's
    dialect turns SQLAlchemy's compiled cache off, so every execute would compile again)."""
    if compiled is None:
        return conn.execute(statement, params) if params else conn.execute(statement)
    dialect = conn.dialect
    entry = compiled.get(id(dialect))
    if entry is None or entry[0] is not dialect:
        entry = (dialect, statement.compile(dialect=dialect))
        compiled[id(dialect)] = entry
    try:
        return conn._execute_compiled(entry[1], [params] if params else [], sa.util.immutabledict())  # noqa: SLF001
    except AttributeError:  # a SQLAlchemy without the private entry point
        return conn.execute(statement, params) if params else conn.execute(statement)


def _target_column(level: _Level, link: Element, xpath: str) -> Any:
    attr = level.schema.attribute(xpath)
    if attr is None or attr.sqlname is None:
        raise errors.invalid_query(f"join field '{xpath}' of '{level.schema.id}' is not a column")
    return level.scope.table.c[attr.sqlname]


# -- public API --------------------------------------------------------------------------------


def _query(storage: Storage, registry: SchemaRegistry, document: Document, ctx: CallContext,
           default_line_count: int, max_expression_length: int) -> _Query:
    return _Query(storage, registry, ctx, parse_querydef(document), default_line_count=default_line_count,
                  max_expression_length=max_expression_length)


@dataclass
class CompiledWhere:
    """The filter of a queryDef `<where>` on one schema, for statements other than a select
    (DeleteCollection, mass updates): FROM clause with the joins it needs, and its clauses
    (id-0 row and recycle-bin rule included)."""

    table: Any  # alias of the schema's table (R0)
    from_clause: Any
    clauses: list[Any]
    role: str  # database it runs on: the schema's home


def compile_where(storage: Storage, registry: SchemaRegistry, schema_id: str, where: etree._Element | None,
                  ctx: CallContext, *, ignore_delete_status: bool = False,
                  max_expression_length: int = 65536) -> CompiledWhere:
    query = etree.Element("queryDef", schema=schema_id, operation="count",
                          ignoreDeleteStatus="true" if ignore_delete_status else "false")
    if where is not None:
        query.append(copy.deepcopy(where))
    compiled = _query(storage, registry, query, ctx, 0, max_expression_length)
    level = compiled.main_level()
    return CompiledWhere(level.scope.table, level.scope.from_clause(), level.where_clause(), compiled.role)


def execute_query(storage: Storage, registry: SchemaRegistry, document: Document | LiftedQuery,
                  ctx: CallContext, *, default_line_count: int = 10000, max_expression_length: int = 65536,
                  as_text: bool = False) -> etree._Element | str:
    """Run a queryDef (`xtk:queryDef#ExecuteQuery`); returns the output document element.

    Raises DataApiError (Campaign code and message chain) for every refused or failed query.
    `default_line_count` caps a select without lineCount ([query] default_line_count).
    Plans are cached (see PlanCache): a repeated document, whatever its integer constants,
    skips parsing and planning, and runs its SQL directly on the driver. `as_text`: a get /
    getIfExists row may come back as its serialised XML (str) instead of an element, for callers
    that only serialise it.
    """
    if isinstance(document, LiftedQuery):  # lifted by the caller (the SOAP router's prepared requests)
        lifted: LiftedQuery | None = document
    else:
        text = document_text(document)
        lifted = lift_constants(text) if text is not None else None
    if lifted is None:
        return _query(storage, registry, _as_sent(document), ctx, default_line_count, max_expression_length).run()
    try:
        variables = frozenset(ctx.variables.items()) if ctx.variables else None
    except TypeError:  # unhashable variable values: not cached
        return _query(storage, registry, _as_sent(document), ctx, default_line_count, max_expression_length).run()
    rights = folder_rights(storage)
    hidden = rights.denied(ctx, "read") if rights is not None else None
    key = (lifted.key, default_line_count, max_expression_length, ctx.login_id, ctx.login, ctx.rights,
           ctx.allow_sql, variables, hidden, id(storage), id(registry))
    plan = PLANS.get(key)
    if plan is not None and plan.storage is storage and plan.registry is registry:
        return plan.run(lifted.values, as_text)
    values = lifted.values
    try:
        lifted_ctx = dataclasses.replace(ctx, variables={
            **ctx.variables, **{f"{LIFTED_PREFIX}{i}": v for i, v in enumerate(values)}})
        query = _query(storage, registry, lifted.canonical(), lifted_ctx, default_line_count, max_expression_length)
        level, statement = query.plan()
    except errors.DataApiError:
        # errors are reported on the document as sent (the lifted form would name $(variables))
        return _query(storage, registry, _as_sent(document), ctx, default_line_count, max_expression_length).run()
    if level.collections:  # sub-selects are planned while running, from the call's values: not cached
        return _query(storage, registry, _as_sent(document), ctx, default_line_count, max_expression_length).run()
    plan = _Plan(storage, registry, query, level, statement)
    PLANS.put(key, plan)
    return plan.run(values, as_text)


def _as_sent(document: Document | LiftedQuery) -> Document:
    return document.text() if isinstance(document, LiftedQuery) else document


class _Plan:
    """A planned single-statement query, shared by every thread that sends the same document
    (modulo its integer constants). Its SQL runs on a raw driver connection (`_Runner`); when the
    engine's driver is not one we run raw, or the statement needs what only SQLAlchemy does, it
    runs through SQLAlchemy with the statement compiled once."""

    def __init__(self, storage: Storage, registry: SchemaRegistry, query: _Query, level: _Level,
                 statement: sa.Select):
        self.storage = storage
        self.registry = registry
        self.query = query
        self.level = level
        self.statement = statement
        self.compiled: dict[int, Any] = {}  # the statement compiled per dialect (SQLAlchemy path)
        self.runner: _Runner | None = None
        self.raw = True  # False once the raw path was found unusable for this plan
        self.lock = threading.Lock()

    def run(self, values: list[int], as_text: bool = False) -> etree._Element | str:
        runner = self.runner
        if runner is None and self.raw:
            runner = self._runner()
        if runner is not None:
            try:
                rows, shaper = runner.fetch(values)
            except _UseSqlAlchemy as exc:
                if exc.permanent:
                    self.raw, self.runner = False, None
            else:
                query = self.query
                operation = query.qd.operation
                if operation == "count":
                    return count_document(query.schema.name, int((rows[0][0] if rows else 0) or 0))
                if as_text and rows and operation != "select":
                    text = shaper.single_text(rows[0])
                    if text is not None:
                        return text
                return query.document(shaper, rows)[0]
        params = {f"oc_lift_{i}": v for i, v in enumerate(values)}
        return self.query.run_planned(self.level, self.statement, params, self.compiled)

    def _runner(self) -> _Runner | None:
        with self.lock:  # built once, whichever thread comes first
            if self.runner is None and self.raw:
                query = self.query
                engine = query.storage.engine(query.role)
                reads = read_connections(engine)
                try:
                    single = query.qd.operation in ("get", "getIfExists")
                    self.runner = _Runner(reads, self.statement, self.level, single) if reads is not None else None
                except (_UseSqlAlchemy, ExpressionError, sa.exc.SQLAlchemyError):
                    self.runner = None  # SQLAlchemy reports compile errors, as for uncached queries
                self.raw = self.runner is not None
            return self.runner


class _UseSqlAlchemy(Exception):
    """The raw path cannot run this statement (`permanent`), or lost its connection: run it
    through SQLAlchemy."""

    def __init__(self, *, permanent: bool = False):
        super().__init__()
        self.permanent = permanent


_LOG = logging.getLogger(__name__)


class _Runner:
    """A cached plan's statement for one engine, run on the driver itself: its SQL text compiled
    once, where each parameter comes from (a constant of the plan, already through its bind
    processor, or the Nth lifted constant of the call), and per-column result converters (the
    result processors SQLAlchemy would apply, e.g. SQLite's datetime text). What SQLAlchemy
    would do per call — compiled-cache lookup, execution context, events, result metadata, Row
    objects, pool checkout with its reset — is done once here or not needed for a single read."""

    def __init__(self, reads: ReadConnections, statement: sa.Select, level: _Level, single_row: bool = False):
        dialect = reads.dialect
        compiled = statement.compile(dialect=dialect)
        processors = getattr(compiled, "_bind_processors", None)
        if processors is None or compiled.schema_translate_map or compiled.escaped_bind_names:
            raise _UseSqlAlchemy
        state = compiled.construct_expanded_state(escape_names=False)  # IN lists expanded (folder rights)
        processors = {**processors, **state.processors}
        names = list(state.positiontup) if compiled.positional else list(state.parameters)
        slots: list[tuple[int, Any, Any]] = []
        for name in names:
            processor = processors.get(name)
            if name.startswith("oc_lift_") and name[8:].isdigit():
                slots.append((int(name[8:]), None, processor))
            else:
                value = state.parameters[name]
                slots.append((-1, processor(value) if processor is not None else value, None))
        self.reads = reads
        self.sql = state.statement
        self.names = None if compiled.positional else names
        self.sequence = dialect.execute_sequence_format
        self.slots = slots
        self.plain = all(processor is None for _, _, processor in slots)
        self.types = [column.type for column in statement.selected_columns]
        self.level = level
        self.shaper: RowShaper | None = None  # built on the first fetch, from the driver's column types
        # One-row reads on PostgreSQL skip psycopg's cursor machinery (storage/pgraw.py).
        self.libpq = PreparedRead(self.sql) if single_row and reads.name == "postgresql" and not compiled.positional \
            else None

    def parameters(self, values: list[int]) -> Any:
        if self.plain:
            row = [values[i] if i >= 0 else const for i, const, _ in self.slots]
        else:
            row = [(proc(values[i]) if proc is not None else values[i]) if i >= 0 else const
                   for i, const, proc in self.slots]
        if self.names is not None:
            return dict(zip(self.names, row, strict=True))
        return self.sequence(row)

    def fetch(self, values: list[int]) -> tuple[list[Any], RowShaper]:
        """The rows, read without a transaction (one statement is atomic by itself)."""
        reads = self.reads
        params = self.parameters(values)
        raw = reads.acquire()
        cursor = None
        try:
            if self.libpq is not None:
                found = self.libpq.run(raw.dbapi, params)
                if found is not None:
                    rows, description = found
                    shaper = self.shaper or self._shaper(description)
                    reads.release(raw)
                    return rows, shaper
            cursor = raw.dbapi.cursor()
            cursor.execute(self.sql, params)
            shaper = self.shaper or self._shaper(cursor.description)
            rows = cursor.fetchall()
            cursor.close()
        except Exception as exc:
            lost = reads.discard(raw, exc, cursor)
            if lost:  # SQLAlchemy's pool pre-pings (reconnects), then runs it
                raise _UseSqlAlchemy from exc
            if isinstance(exc, reads.dialect.loaded_dbapi.Error):  # the database refused the statement
                raise errors.database_error(exc, reads.name) from None
            _LOG.warning("queryDef plan falls back to SQLAlchemy: raw execution failed", exc_info=True)
            raise _UseSqlAlchemy(permanent=True) from exc
        except BaseException:  # interrupted: the connection's state is unknown
            reads.discard(raw, RuntimeError("interrupted"))
            raise
        reads.release(raw)
        return rows, shaper

    def _shaper(self, description: Any) -> RowShaper:
        dialect = self.reads.dialect
        converters: dict[int, Any] = {}
        for index, type_ in enumerate(self.types):
            coltype = description[index][1] if description and index < len(description) else None
            processor = type_.dialect_impl(dialect).result_processor(dialect, coltype)
            if processor is not None:
                converters[index] = processor
        self.shaper = RowShaper(self.level.row_name, self.level.outputs, converters)
        return self.shaper


class PlanCache:
    """Bounded LRU of planned queries. The key is the document with its integer constants lifted
    out (`_lift_constants`: each becomes a named bind parameter, rebound on every call) plus what
    planning read from the caller: login, rights (readAccess sysFilters, accessibleIf,
    HasNamedRight), allow_sql, variables and the folders hidden from it. A constant's class (zero,
    32-bit, 64-bit) is part of the key, as planning depends on it (e.g. `@id = 0` keeps the id-0
    exclusion)."""

    def __init__(self, size: int = 512):
        self.size = size
        self._entries: OrderedDict[Any, _Plan] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any) -> _Plan | None:
        # No lock: each OrderedDict operation is atomic (GIL); an entry evicted between the read
        # and the move is simply not refreshed. The counters are statistics, not exact under races.
        entries = self._entries
        plan = entries.get(key)
        if plan is None:
            self.misses += 1
            return None
        try:  # noqa: SIM105 - cheaper than contextlib.suppress on this path
            entries.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return plan

    def put(self, key: Any, plan: _Plan) -> None:
        with self._lock:
            self._entries[key] = plan
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0
        SHAPES.clear()

    def __len__(self) -> int:
        return len(self._entries)


PLANS = PlanCache()
def build_query(storage: Storage, registry: SchemaRegistry, document: Document, ctx: CallContext, *,
                default_line_count: int = 10000, max_expression_length: int = 65536) -> str:
    """The SQL of the main statement (`xtk:queryDef#BuildQuery`), constants inlined for display
    only: execution always binds them. Sub-selects of collections run as separate statements."""
    query = _query(storage, registry, document, ctx, default_line_count, max_expression_length)
    _, statement = query.plan()
    dialect = query.storage.engine(query.role).dialect
    try:
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    except ExpressionError as exc:
        raise errors.expression_error(exc.expression or "", exc.detail) from None
    except Exception:  # noqa: BLE001 - a type without a literal renderer: show the parameters instead
        compiled = statement.compile(dialect=dialect)
        return f"{compiled}\n-- parameters: {compiled.params!r}"


__all__ = ["PLANS", "CompiledWhere", "PlanCache", "Condition", "OrderNode", "QueryDef", "SelectNode", "SubQuery", "build_query",
           "compile_where", "execute_query", "parse_querydef", "read_document"]
