"""Schema-aware compilation of XTK expressions into SQLAlchemy Core (data-model.md §3.4-3.7).

The parser (query/expr) gives an AST with no knowledge of schemas; here every path is resolved
through the compiled schema of its row, link hops become JOINs registered once per query level,
constants become bound parameters, and types are checked before anything reaches a database.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import BooleanClauseList, ColumnElement

from ..context import CallContext
from ..schema.model import XML_DATA_COLUMN, Attribute, Element, Enumeration, Schema
from ..schema.registry import SchemaRegistry
from ..storage.storage import Storage
from . import errors
from .expr import ast
from .expr.errors import ExpressionError, echo_expression
from .expr.functions import FunctionSpec, lookup, result_type
from .expr.parser import parse_expression
from .expr.sql_common import SqlTemplate, tpl
from .values import parse_value

STRING_TYPES = frozenset({"string", "memo", "html", "CDATA", "uuid", "blob"})
NUMBER_TYPES = frozenset({"boolean", "byte", "short", "long", "int64", "float", "double", "percent", "money",
                          "timespan"})
INTEGER_TYPES = frozenset({"boolean", "byte", "short", "long", "int64"})
DATE_TYPES = frozenset({"date", "datetime", "datetimetz", "datetimenotz"})
PREDICATE = "predicate"  # result of a comparison or a logical operator
NULL = "null"
MISSING_VARIABLE = "XTK-170006"  # Campaign's code for an expression whose parameter is missing
LIFTED_PREFIX = "__oc_lift_"  # $(__oc_lift_N): a constant lifted out of a cached queryDef (querydef.py)
MAX_SQL_NODES = 20_000  # elements of one expression's SQL, shared sub-trees counted each time
_CHAINS = (BooleanClauseList, SqlTemplate)

_SA_TYPES: dict[str, Callable[[], sa.types.TypeEngine]] = {
    "string": sa.String, "memo": sa.Text, "html": sa.Text, "CDATA": sa.Text, "uuid": sa.String, "blob": sa.Text,
    "boolean": sa.Integer, "byte": sa.Integer, "short": sa.Integer, "long": sa.Integer, "int64": sa.BigInteger,
    "float": sa.Float, "double": sa.Double, "percent": sa.Double, "money": sa.Double, "timespan": sa.Double,
    "date": sa.Date, "datetime": sa.DateTime, "datetimetz": sa.DateTime, "datetimenotz": sa.DateTime,
    "time": sa.Time,
}


def family(xtk_type: str) -> str:
    if xtk_type in STRING_TYPES:
        return "string"
    if xtk_type in NUMBER_TYPES:
        return "number"
    if xtk_type in DATE_TYPES:
        return "date"
    return xtk_type  # time, predicate, null


def sa_type(xtk_type: str) -> sa.types.TypeEngine:
    return _SA_TYPES.get(xtk_type, sa.String)()


class CompileError(Exception):
    """One problem in one expression; turned into XTK-170036 with the full expression text."""

    def __init__(self, detail: str, code: str = errors.PARSE_EXPRESSION):
        super().__init__(detail)
        self.detail = detail
        self.code = code


@dataclass
class XmlRef:
    """A field stored in the row's XML memo: selectable (read in Python), never filterable."""

    xpath: str  # within the memo document of its row


@dataclass
class Typed:
    sql: Any  # ColumnElement
    type: str  # XTK type name, PREDICATE or NULL
    enum: Enumeration | None = None
    const: bool = False
    value: Any = None
    aggregate: bool = False
    xml: XmlRef | None = None

    @property
    def family(self) -> str:
        return family(self.type)


@dataclass
class RowContext:
    """One table instance of a FROM clause: the query root or a row reached through links."""

    schema: Schema
    table: Any  # sa.Alias
    key: tuple[str, ...]  # link xpaths from the scope root: dedupes joins
    scope: QueryScope


@dataclass
class Resolved:
    context: RowContext
    node: Attribute | Element


class Statement:
    """State shared by every scope of one query: where it runs, who asks, alias numbering."""

    def __init__(self, storage: Storage, registry: SchemaRegistry, ctx: CallContext, role: str, *,
                 max_expression_length: int = 65536):
        self.storage = storage
        self.registry = registry
        self.ctx = ctx
        self.role = role
        self.dialect = storage.dialect(role)
        self.max_expression_length = max_expression_length
        self._aliases = 0

    def table(self, schema: Schema, *, via: str = "") -> Any:
        alias = _alias(self.require(schema, via=via), f"R{self._aliases}")
        self._aliases += 1
        return alias

    def require(self, schema: Schema, *, via: str = "") -> Any:
        """The table of `schema` in this query's database; refused when it lives elsewhere."""
        try:
            return self.storage.table(schema.id, self.role)
        except KeyError:
            where = f" (through '{via}')" if via else ""
            raise errors.DataApiError(
                errors.FOREIGN_DATABASE,
                f"Schema '{schema.full_label}' is not available in the {self.role} database{where}: "
                f"a query cannot join tables of different databases") from None

    def schema(self, schema_id: str) -> Schema:
        schema = self.registry.find(schema_id)
        if schema is None:
            raise errors.unknown_schema(schema_id)
        return schema


_ALIASES: dict[tuple[int, str], tuple[sa.Table, Any]] = {}
_MAX_ALIASES = 20_000


def _alias(table: sa.Table, name: str) -> Any:
    """A reusable alias: building one (and its column proxies) costs more than a whole get-by-key;
    Core constructs are immutable, so every statement can share it."""
    key = (id(table), name)
    cached = _ALIASES.get(key)
    if cached is not None and cached[0] is table:
        return cached[1]
    if len(_ALIASES) >= _MAX_ALIASES:
        _ALIASES.clear()
    alias = table.alias(name)
    _ALIASES[key] = (table, alias)
    return alias


class QueryScope:
    """One SELECT level: its root table, the joins its expressions needed, its outer level."""

    def __init__(self, statement: Statement, schema: Schema, outer: QueryScope | None = None):
        if not schema.has_table:
            raise errors.invalid_query(f"schema '{schema.id}' has no table and cannot be queried")
        self.statement = statement
        self.schema = schema
        self.outer = outer
        self.table = statement.table(schema)
        self.root = RowContext(schema, self.table, (), self)
        self._hops: dict[tuple[str, ...], RowContext] = {}
        self._joins: list[tuple[Any, ColumnElement, bool]] = []

    def hop(self, context: RowContext, link: Element) -> RowContext:
        key = (*context.key, link.xpath)
        found = self._hops.get(key)
        if found is not None:
            return found
        target = self.statement.schema(link.target or "")
        alias = self.statement.table(target, via=f"{context.schema.id}/{link.xpath}")
        conditions = [join_column(context, link, join.src) == _column(target, alias, join.dst) for join in link.joins]
        if not conditions:
            raise CompileError(f"Link '{link.xpath}' of schema '{context.schema.full_label}' has no join")
        # The id-0 row makes inner joins safe for declared links; a generated reverse 1-1 link
        # may have no row on the other side, and externalJoin asks for an outer join.
        outer = link.external_join or link.reverse
        self._joins.append((alias, sa.and_(*conditions), outer))
        found = RowContext(target, alias, key, self)
        self._hops[key] = found
        return found

    def from_clause(self) -> Any:
        clause = self.table
        for alias, onclause, outer in self._joins:
            clause = clause.join(alias, onclause, isouter=outer)
        return clause

    def not_empty_row(self) -> ColumnElement | None:
        """`R0.iXxxId <> 0`: Campaign's id-0 "empty" record is never a result."""
        return not_empty_row(self.schema, self.table)


_ACCESSIBLE: dict[int, tuple[Schema, dict[str, str]]] = {}


def accessible_if(schema: Schema) -> dict[str, str]:
    """`{xpath: accessibleIf expression}` of the attributes of a schema that declare one (v8)."""
    cached = _ACCESSIBLE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    found: dict[str, str] = {}
    xml = schema.compiled_xml
    main = None
    if xml is not None:
        main = next((e for e in xml.findall("element") if e.get("name") == xml.get("name")), None)

    def walk(element: Any, prefix: str) -> None:
        for child in element:
            if child.tag == "attribute" and child.get("accessibleIf") is not None:
                found[f"{prefix}@{child.get('name')}"] = child.get("accessibleIf")
            elif child.tag == "element" and child.get("type") != "link":
                walk(child, f"{prefix}{child.get('name')}/")

    if main is not None:
        walk(main, "")
    if len(_ACCESSIBLE) > 10_000:
        _ACCESSIBLE.clear()
    _ACCESSIBLE[id(schema)] = (schema, found)
    return found


def not_empty_row(schema: Schema, table: Any) -> ColumnElement | None:
    if not schema.autopk or schema.autouuid:
        return None
    pk = schema.attribute("@id")
    if pk is None or pk.sqlname is None:
        return None
    return table.c[pk.sqlname] != 0


def _column(schema: Schema, table: Any, xpath: str) -> Any:
    attr = schema.attribute(xpath)
    if attr is None or attr.sqlname is None:
        raise CompileError(f"Join field '{xpath}' of schema '{schema.full_label}' is not a column")
    return table.c[attr.sqlname]


def join_column(context: RowContext, link: Element, xpath: str) -> Any:
    """A join source: relative to the link's parent element, else to the schema root."""
    parent = link.parent.xpath if link.parent is not None else ""
    if parent:
        attr = context.schema.attribute(f"{parent}/{xpath.strip('[]')}")
        if attr is not None and attr.sqlname is not None:
            return context.table.c[attr.sqlname]
    return _column(context.schema, context.table, xpath)


_CACHED_LENGTH = 512  # only short texts are cached, so the cache stays small whatever callers send


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, max_length: int) -> ast.Node:
    return parse_expression(text, max_length=max_length)


def parse(text: str, max_length: int = 65536) -> ast.Node:
    """Parse (cached: ASTs are immutable); raises DataApiError."""
    if not isinstance(text, str):
        raise errors.expression_error("", "Expression must be a string")
    try:
        if len(text) <= _CACHED_LENGTH:
            return _parse_cached(text, max_length)
        return parse_expression(text, max_length=max_length)
    except ExpressionError as exc:
        raise _to_api_error(exc.detail, text, exc.code) from None


def _to_api_error(detail: str, text: str, code: str = errors.PARSE_EXPRESSION) -> errors.DataApiError:
    return errors.DataApiError(code, f"Unable to parse expression '{echo_expression(text)}'.", [detail])


def _literal(value: Any, xtk_type: str) -> Typed:
    return Typed(sa.literal(value, sa_type(xtk_type)), xtk_type, const=True, value=value)


def _python_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long" if -(2**31) <= value < 2**31 else "int64"
    if isinstance(value, float | Decimal):
        return "double"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    return "string"


def as_predicate(value: Typed) -> ColumnElement:
    if value.type == PREDICATE:
        return value.sql
    if value.family == "number":
        return value.sql != 0
    if value.type == NULL:
        return sa.false()
    raise CompileError(f"A condition is expected, not a value of type '{value.type}'")


def as_value(value: Typed) -> Typed:
    """A predicate used as a value becomes a 0/1 boolean (SQLite has no boolean type)."""
    if value.type != PREDICATE:
        return value
    return Typed(sa.case((value.sql, 1), else_=0), "boolean", aggregate=value.aggregate)


class ExprCompiler:
    """Compiles expression texts within scopes of one Statement."""

    def __init__(self, statement: Statement):
        self.statement = statement
        self._calculating: list[tuple[str, str]] = []  # calculated fields being inlined (cycle guard)

    # -- entry points ------------------------------------------------------------------------
    def value(self, text: str, scope: QueryScope, *, allow_xml: bool = False) -> Typed:
        return self.value_at(text, scope.root, allow_xml=allow_xml)

    def value_at(self, text: str, context: RowContext, *, allow_xml: bool = False) -> Typed:
        """A value relative to any row of a scope (e.g. a compute string of a joined row)."""
        return self._run(text, lambda node: self._checked_value(node, context, allow_xml))

    def condition(self, text: str, scope: QueryScope) -> ColumnElement:
        return self._run(text, lambda node: self._checked_condition(node, scope.root))

    def sortable(self, text: str, scope: QueryScope) -> Typed:
        return self._run(text, lambda node: self._checked_value(node, scope.root, False))

    def resolve(self, text: str, scope: QueryScope) -> Resolved:
        """A path naming a node (link, collection, element or field), for select nodes and EXISTS."""

        def run(node: ast.Node) -> Resolved:
            if not isinstance(node, ast.Path):
                raise CompileError("A path is expected (e.g. 'subscription' or '[folder]')")
            return self._resolve(node, scope.root, allow_collection=True)

        return self._run(text, run)

    def _checked_value(self, node: ast.Node, base: RowContext, allow_xml: bool) -> Typed:
        result = as_value(self._expr(node, base, allow_xml=allow_xml))
        check_size(result.sql)
        return result

    def _checked_condition(self, node: ast.Node, base: RowContext) -> ColumnElement:
        return check_size(as_predicate(self._expr(node, base)))

    def _run(self, text: str, body: Callable[[ast.Node], Any]) -> Any:
        node = parse(text, self.statement.max_expression_length)
        try:
            return body(node)
        except CompileError as exc:
            raise _to_api_error(exc.detail, text, exc.code) from None
        except errors.DataApiError as exc:
            if exc.code == errors.UNKNOWN_SCHEMA:
                raise _to_api_error(exc.message, text) from None
            raise

    # -- paths -------------------------------------------------------------------------------
    def _resolve(self, path: ast.Path, base: RowContext, *, allow_collection: bool = False,
                 element: Element | None = None) -> Resolved:
        if path.schema is not None:
            raise CompileError(f"Ad-hoc join syntax '[{path.schema}:...]' is not supported; use a link")
        context = base
        current = element or base.schema.root
        assert current is not None
        steps = list(path.steps)
        while steps and steps[0].kind == "parent":
            steps.pop(0)
            if current.parent is not None:
                current = current.parent
                continue
            outer = context.scope.outer
            if outer is None:
                raise CompileError("'..' refers to the outer query, but this expression has none")
            context, current = outer.root, outer.schema.root
            assert current is not None
        if not steps:
            return Resolved(context, current)
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            if step.kind == "parent":
                raise CompileError("'..' is only allowed at the start of a path")
            if step.kind == "attribute":
                if not last:
                    raise CompileError(f"'@{step.name}' must be the last step of a path")
                attr = current.attributes.get(step.name)
                if attr is None:
                    raise CompileError(f"Attribute '{step.name}' unknown (see definition of schema "
                                       f"'{context.schema.full_label}')")
                return Resolved(context, attr)
            if step.index is not None or step.predicate is not None:
                raise CompileError(f"Collection predicates ('{step.name}[...]') are not supported in queries")
            child = current.elements.get(step.name)
            if child is None:
                raise CompileError(f"Element '{step.name}' unknown (see definition of schema "
                                   f"'{context.schema.full_label}')")
            if last:
                if child.unbound and not allow_collection:
                    raise CompileError(f"'{child.name}' is a collection: use a sub-select or a condition "
                                       f"with setOperator=\"EXISTS\"")
                return Resolved(context, child)
            if child.is_link:
                if child.unbound:
                    raise CompileError(f"'{child.name}' is a collection and cannot be traversed in an "
                                       f"expression: use setOperator=\"EXISTS\" or a sub-select")
                context = context.scope.hop(context, child)
                current = context.schema.root
                assert current is not None
            elif child.unbound:
                raise CompileError(f"'{child.name}' is an XML collection and cannot be queried")
            else:
                current = child
        raise AssertionError("unreachable")

    def _path_value(self, path: ast.Path, base: RowContext, allow_xml: bool, element: Element | None) -> Typed:
        resolved = self._resolve(path, base, element=element)
        node, context = resolved.node, resolved.context
        if isinstance(node, Attribute):
            if not self._accessible(context.schema, node):
                if allow_xml:  # selected: blanked, as v8 does for a field the caller may not see
                    return Typed(sa.null(), node.type)
                raise CompileError(f"Field '{node.xpath}' of schema '{context.schema.full_label}' is not accessible "
                                   f"(accessibleIf): it cannot be used in a condition, a sort, a grouping or a "
                                   f"calculation")
            if node.expr is not None:
                return self._calculated(node, context)
            enum = self._enumeration(node.enum)
            if node.sqlname is not None:
                return Typed(context.table.c[node.sqlname], node.type, enum=enum)
            return self._xml_value(node.xpath, node.type, context, allow_xml, enum)
        if node.is_link:
            raise CompileError(f"'{node.name}' is a link: use one of its fields, e.g. [{node.name}/@id]")
        if node.is_text:
            text_type = node.type if node.type in _SA_TYPES else "memo"
            if node.sqlname is not None:
                return Typed(context.table.c[node.sqlname], text_type)
            return self._xml_value(node.xpath, text_type, context, allow_xml, None)
        raise CompileError(f"'{node.name}' is an element, not a value: use one of its fields")

    def _accessible(self, schema: Schema, attr: Attribute) -> bool:
        condition = accessible_if(schema).get(attr.xpath)
        if condition is None:
            return True
        from ..security.conditions import is_true  # noqa: PLC0415 - security imports the expression package

        try:
            return is_true(condition, self.statement.ctx)
        except Exception:  # noqa: BLE001 - an unevaluable condition hides the field
            return False

    def _xml_value(self, xpath: str, xtk_type: str, context: RowContext, allow_xml: bool,
                   enum: Enumeration | None) -> Typed:
        if not allow_xml:
            raise CompileError(f"Field '{xpath}' is stored in XML (mData) and cannot be used in a condition, "
                               f"a sort, a grouping or a calculation; it can only be selected")
        return Typed(context.table.c[XML_DATA_COLUMN], xtk_type, enum=enum, xml=XmlRef(xpath))

    def _calculated(self, attr: Attribute, context: RowContext) -> Typed:
        key = (context.schema.id, attr.xpath)
        if key in self._calculating:
            chain = " -> ".join(x for _, x in [*self._calculating, key])
            raise CompileError(f"Calculated field '{attr.xpath}' of schema '{context.schema.full_label}' "
                               f"refers to itself ({chain})")
        self._calculating.append(key)
        try:
            node = parse(attr.expr or "", self.statement.max_expression_length)
            inner = as_value(self._expr(node, context, element=attr.parent))
        except errors.DataApiError as exc:
            detail = exc.detail_chain[0] if exc.detail_chain else exc.message
            raise CompileError(f"In calculated field '{attr.xpath}' of schema '{context.schema.full_label}': "
                               f"{detail}") from None
        finally:
            self._calculating.pop()
        enum = self._enumeration(attr.enum) or inner.enum
        declared = attr.type if family(attr.type) == inner.family else inner.type
        return Typed(inner.sql, declared, enum=enum, aggregate=inner.aggregate)

    def _enumeration(self, qualified: str | None) -> Enumeration | None:
        if not qualified:
            return None
        schema_id, _, _ = qualified.rpartition(":")
        schema = self.statement.registry.find(schema_id)
        return schema.enumeration(qualified) if schema is not None else None

    # -- expressions -------------------------------------------------------------------------
    def _expr(self, node: ast.Node, base: RowContext, *, allow_xml: bool = False,
              element: Element | None = None) -> Typed:
        if isinstance(node, ast.Path):
            return self._path_value(node, base, allow_xml, element)
        sub = functools.partial(self._expr, base=base, element=element)
        if isinstance(node, ast.String):
            return _literal(node.value, "string")
        if isinstance(node, ast.Number):
            if node.is_integer:
                return _literal(node.value, "long" if -(2**31) <= int(node.value) < 2**31 else "int64")
            return _literal(float(node.value), "double")
        if isinstance(node, ast.Date):
            return _literal(node.value, "date")
        if isinstance(node, ast.DateTime):
            return _literal(node.value, "datetime")
        if isinstance(node, ast.Boolean):
            return Typed(sa.true() if node.value else sa.false(), PREDICATE, const=True, value=node.value)
        if isinstance(node, ast.Null):
            return Typed(sa.null(), NULL, const=True)
        if isinstance(node, ast.Variable):
            return self._variable(node)
        if isinstance(node, ast.Unary):
            return self._unary(node, sub(node.operand))
        if isinstance(node, ast.Binary):
            return self._binary(node.op, sub(node.left), sub(node.right))
        if isinstance(node, ast.Like):
            return self._like(node, sub(node.operand), sub(node.pattern))
        if isinstance(node, ast.In):
            return self._in(node, sub(node.operand), [sub(i) for i in node.items])
        if isinstance(node, ast.IsNull):
            return self._is_null(node, sub(node.operand))
        if isinstance(node, ast.FunctionCall):
            return self._function(node, base, element, None)
        raise CompileError(f"Unsupported expression element '{type(node).__name__}'")

    def _variable(self, node: ast.Variable) -> Typed:
        ctx = self.statement.ctx
        builtin = {"loginId": ctx.login_id, "login": ctx.login}
        if node.name in builtin:
            value: Any = builtin[node.name]
        elif node.name in ctx.variables:
            value = ctx.variables[node.name]
        else:
            raise CompileError(f"Variable '$({node.name})' is not defined in the context of the call", MISSING_VARIABLE)
        if value is not None and not isinstance(value, str | int | float | Decimal | dt.date | dt.time):
            raise CompileError(f"Variable '$({node.name})' holds a {type(value).__name__}, not a value")
        xtk_type = node.type or _python_type(value)
        if family(xtk_type) == "string" and value is not None and not isinstance(value, str):
            value = str(value)
        elif node.type is not None and isinstance(value, str):
            try:
                value = parse_value(node.type, value)
            except ValueError as exc:
                raise CompileError(f"Variable '{node.name}': {exc}") from None
        if value is None:
            return Typed(sa.null(), NULL, const=True)
        if node.name.startswith(LIFTED_PREFIX):  # named: the plan cache rebinds it on every call
            key = "oc_lift_" + node.name[len(LIFTED_PREFIX):]
            return Typed(sa.bindparam(key, value, type_=sa_type(xtk_type)), xtk_type, const=True, value=value)
        return _literal(value, xtk_type)

    def _unary(self, node: ast.Unary, operand: Typed) -> Typed:
        if node.op == "NOT":
            return Typed(sa.not_(as_predicate(operand)), PREDICATE, aggregate=operand.aggregate)
        if operand.family != "number":
            raise CompileError(f"Unary minus needs a number, not '{operand.type}'")
        return Typed(-operand.sql, operand.type, aggregate=operand.aggregate)

    def _binary(self, op: str, left: Typed, right: Typed) -> Typed:
        aggregate = left.aggregate or right.aggregate
        if op in ("AND", "OR"):
            a, b = as_predicate(left), as_predicate(right)
            if isinstance(a, _CHAINS) or isinstance(b, _CHAINS):
                # Explicit parentheses keep the parser's balanced tree: SQLAlchemy would flatten a
                # long OR chain into one list, deeper than SQLite's expression depth limit (1000).
                return Typed(tpl(f"{{0}} {op} {{1}}", a, b, type_=sa.Boolean), PREDICATE, aggregate=aggregate)
            combine = sa.and_ if op == "AND" else sa.or_
            return Typed(combine(a, b), PREDICATE, aggregate=aggregate)
        if op in ast.COMPARISON_OPS:
            return self._compare(op, left, right)
        left, right = as_value(left), as_value(right)
        if op == "+" and left.family == "string" and right.family == "string":
            # "" and null are the same string in Campaign: concatenation never yields null
            joined = sa.func.coalesce(left.sql, "").concat(sa.func.coalesce(right.sql, ""))
            return Typed(joined, "string", aggregate=aggregate)
        if left.family != "number" or right.family != "number":
            raise CompileError(f"Operator '{op}' needs numbers, not '{left.type}' and '{right.type}'")
        if op == "/":
            # float division on every engine (DuckDB's `/` already is); x/0 is null, not an error
            numerator = sa.cast(left.sql, sa.Double)
            return Typed(numerator / sa.func.nullif(right.sql, 0), "double", aggregate=aggregate)
        result_type_ = _wider(left.type, right.type)
        operators = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
        return Typed(operators[op](left.sql, right.sql), result_type_, aggregate=aggregate)

    def coerce(self, target: Typed, value: Typed) -> Typed:
        """`value` made comparable to `target`: enum names, typed string and boolean constants."""
        if value.type == NULL or target.type == NULL:
            return value
        if target.enum is not None and value.const and isinstance(value.value, str):
            found = target.enum.by_name(value.value) or target.enum.by_value(value.value)
            if found is None:
                raise CompileError(f"The value '{value.value}' is not valid for the '{target.enum.qualified_name}' "
                                   f"enumeration")
            value = Typed(sa.literal(found.value), "string", const=True, value=found.value)
        if target.family == value.family or (target.type == PREDICATE and value.type == PREDICATE):
            if target.family == "string" or target.family == "number":
                return value
            if value.const and target.type == "date" and isinstance(value.value, dt.datetime) \
                    and value.value.time() == dt.time(0):
                return _literal(value.value.date(), "date")  # SQLite compares dates as text
            if value.const and target.type != "date" and type(value.value) is dt.date:
                return _literal(dt.datetime.combine(value.value, dt.time(0)), "datetime")
            return value
        if value.const and value.type == PREDICATE and target.family == "number":
            return _literal(1 if value.value else 0, "boolean")
        if value.const and value.family == "string" and target.family in ("number", "date", "time"):
            parse_as = target.type if target.type in _SA_TYPES else "string"
            try:
                parsed = parse_value(parse_as, value.value)
            except ValueError as exc:
                raise CompileError(f"Cannot compare '{target.type}' with the string '{value.value}': {exc}") from None
            return _literal(parsed, parse_as)
        raise CompileError(f"Cannot compare a value of type '{target.type}' with a value of type '{value.type}'")

    def _pair(self, left: Typed, right: Typed) -> tuple[Typed, Typed]:
        left, right = as_value(left) if left.type != PREDICATE or not left.const else left, right
        right = as_value(right) if right.type != PREDICATE or not right.const else right
        if left.const and not right.const:
            return self.coerce(right, left), right
        return left, self.coerce(left, right)

    def _compare(self, op: str, left: Typed, right: Typed) -> Typed:
        aggregate = left.aggregate or right.aggregate
        if right.type == NULL or left.type == NULL:
            other = left if right.type == NULL else right
            if op not in ("=", "<>"):
                raise CompileError(f"Only '=' and '<>' can compare with null, not '{op}'")
            return self._null_test(other, negated=op == "<>")
        left, right = self._pair(left, right)
        if left.type == PREDICATE or right.type == PREDICATE:
            left, right = as_value(left), as_value(right)
        if family(left.type) == "string" and right.const and right.value == "" and op in ("=", "<>"):
            return self._null_test(left, negated=op == "<>")  # '' and null are the same string
        if left.const and left.value == "" and family(right.type) == "string" and op in ("=", "<>"):
            return self._null_test(right, negated=op == "<>")
        operators = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
                     "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        return Typed(operators[op](left.sql, right.sql), PREDICATE, aggregate=aggregate)

    def _null_test(self, value: Typed, *, negated: bool) -> Typed:
        value = as_value(value)
        if value.family == "string":
            empty = sa.or_(value.sql.is_(None), value.sql == "")
            return Typed(sa.not_(empty) if negated else empty, PREDICATE, aggregate=value.aggregate)
        test = value.sql.is_not(None) if negated else value.sql.is_(None)
        return Typed(test, PREDICATE, aggregate=value.aggregate)

    def _is_null(self, node: ast.IsNull, operand: Typed) -> Typed:
        return self._null_test(operand, negated=node.negated)

    def _like(self, node: ast.Like, operand: Typed, pattern: Typed) -> Typed:
        operand, pattern = as_value(operand), as_value(pattern)
        if operand.family != "string" or pattern.family != "string":
            raise CompileError(f"LIKE compares strings, not '{operand.type}' and '{pattern.type}'")
        if pattern.const and "\\" not in str(pattern.value):
            test = operand.sql.like(pattern.sql)  # nothing to escape: plain LIKE, which engines optimise best
        else:
            # Campaign escapes wildcards with a backslash; spelled out in the SQL text because
            # SQLAlchemy's escape= literal is doubled by the PostgreSQL-derived DuckDB dialect.
            test = tpl("{0} LIKE {1} ESCAPE '\\'", operand.sql, pattern.sql, type_=sa.Boolean)
        return Typed(sa.not_(test) if node.negated else test, PREDICATE, aggregate=operand.aggregate)

    def _in(self, node: ast.In, operand: Typed, items: list[Typed]) -> Typed:
        operand = as_value(operand)
        coerced = [self.coerce(operand, as_value(i)) for i in items]
        if any(i.type == NULL for i in coerced):
            raise CompileError("IN lists cannot contain null; use IS NULL")
        test = operand.sql.in_([i.sql for i in coerced])
        aggregate = operand.aggregate or any(i.aggregate for i in coerced)
        return Typed(sa.not_(test) if node.negated else test, PREDICATE, aggregate=aggregate)


    # -- functions ---------------------------------------------------------------------------
    def _function(self, node: ast.FunctionCall, base: RowContext, element: Element | None,
                  parent: str | None, *, in_aggregate: bool = False) -> Typed:
        spec = lookup(node.name)
        if spec is None:
            raise CompileError(f"Function '{node.name}' unknown")
        if spec.only_inside and parent != spec.only_inside:
            raise CompileError(f"Function '{spec.name}' can only be used inside {spec.only_inside}()")
        if spec.category == "context":
            return self._context_function(spec, node)
        if not spec.sql:
            raise CompileError(f"Function '{spec.name}' is not available in queries")
        if spec.aggregate and in_aggregate:
            raise CompileError(f"Aggregate '{spec.name}' cannot be nested in another aggregate")
        inside = in_aggregate or spec.aggregate
        args: list[Typed] = []
        for index, arg in enumerate(node.args):
            kind = spec.arg_kind(index)
            if isinstance(arg, ast.FunctionCall):
                value = self._function(arg, base, element, spec.name, in_aggregate=inside)
            else:
                value = self._expr(arg, base, element=element)
            args.append(self._argument(spec, index, kind, value))
        from .expr.sql_functions import build_function_sql  # noqa: PLC0415 - heavy, built on first use

        try:
            sql = build_function_sql(spec.name, [a.sql for a in args], self.statement.dialect)
        except ExpressionError as exc:
            raise CompileError(exc.detail) from None
        xtk_type = result_type(spec, [a.type for a in args])
        if xtk_type is None:  # Case: the type of its first branch
            xtk_type = next((a.type for a in args if a.type not in (NULL, PREDICATE)), "string")
        aggregate = spec.aggregate or (any(a.aggregate for a in args) and not spec.window)
        return Typed(sql, xtk_type, aggregate=aggregate, enum=args[0].enum if spec.returns == "$0" and args else None)

    def _argument(self, spec: FunctionSpec, index: int, kind: str, value: Typed) -> Typed:
        where = f"argument {index + 1} of {spec.name}()"
        if kind == "condition":
            return Typed(as_predicate(value), PREDICATE, aggregate=value.aggregate)
        if kind in ("branch", "clause", "sort"):
            return value
        value = as_value(value)
        if value.type == NULL or kind == "any":
            return value
        wanted = {"string": "string", "memo": "string", "number": "number", "integer": "number", "date": "date"}[kind]
        if value.family == wanted:
            return value
        if value.const and value.family == "string" and wanted == "date":
            try:
                return _literal(parse_value("datetime", value.value), "datetime")
            except ValueError as exc:
                raise CompileError(f"{where}: {exc}") from None
        raise CompileError(f"{where} must be a {kind}, not a value of type '{value.type}'")

    def _context_function(self, spec: FunctionSpec, node: ast.FunctionCall) -> Typed:
        if spec.name not in ("HasNamedRight", "HasPackage"):
            raise CompileError(f"Function '{spec.name}' is only available in schema defaults")
        arg = node.args[0] if node.args else None
        if not isinstance(arg, ast.String):
            raise CompileError(f"{spec.name}() takes a string constant")
        # Evaluated now, from the caller's rights: no package registry exists, so HasPackage is false.
        granted = self.statement.ctx.has_right(arg.value) if spec.name == "HasNamedRight" else False
        return Typed(sa.true() if granted else sa.false(), PREDICATE, const=True, value=granted)


def check_size(sql: Any, limit: int = MAX_SQL_NODES) -> Any:
    """Refuse SQL whose rendered tree is too large. Function translations may repeat an argument
    (Round(x) uses x several times), so nesting them grows the SQL exponentially: the size is
    counted with shared sub-trees expanded, in time linear in the number of distinct nodes."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(sql, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = list(node.get_children())
        if children_done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    if sizes[id(sql)] > limit:
        raise CompileError(f"Expression too complex: its SQL would have {sizes[id(sql)]} elements "
                           f"(maximum {limit})")
    return sql


def _wider(a: str, b: str) -> str:
    order = ["boolean", "byte", "short", "long", "int64", "float", "double", "percent", "money", "timespan"]
    if a not in INTEGER_TYPES or b not in INTEGER_TYPES:
        return "double"
    return max(a, b, key=order.index) if a != "boolean" or b != "boolean" else "long"
