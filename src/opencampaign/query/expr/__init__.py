"""XTK expression language (data-model.md §3.5-3.7): parser, AST and SQL function translation.

Schema resolution (paths -> columns and joins) is not done here; the query compiler walks the AST.

Parsing
    parse_expression(text, *, max_length=65536, max_depth=64, max_tokens=16384,
                     check_functions=True) -> ast.Node
        Raises ExpressionError, and only that, for any bad input (including hostile input:
        over-long text, too many tokens, too deep nesting, control characters).
    format_expression(node) -> str      canonical XTK text; parsing it gives an equal tree.

AST (ast.py) - frozen dataclasses; `offset` (0-based source position) and `height` are
excluded from equality.
    Literals  String(value, raw)  Number(value: int | Decimal)  Date(value: date)
              DateTime(value: naive UTC datetime)  Boolean(value)  Null()
    Variable(name, type)            $(name), $(vars/@x), $long(../@owner-id)
    Path(steps, schema, alias, raw, bracketed) with Step(kind, name, index, predicate)
              kind: "attribute" | "element" | "parent"; Path.outer_levels > 0 for [../@x];
              schema/alias for the v7 join form [nms:recipient:alias:@email].
    Unary(op: "NOT" | "-", operand)
    Binary(op, left, right)         = <> < <= > >= + - * / AND OR  (== stored as =, != as <>)
    Like(operand, pattern, negated) In(operand, items, negated) IsNull(operand, negated)
    FunctionCall(name as written, args)
    walk(node) (pre-order, iterative), paths(node, include_predicates=False), calls(node)

Errors (errors.py)
    ExpressionError(detail, expression, offset): str() is Campaign's chain,
    "<detail>\\nXTK-170036 Unable to parse expression '<expr>'."; `.with_expression(text)`.

Functions (functions.py) - the whitelist as data
    FUNCTIONS, lookup(name) -> FunctionSpec | None (case-insensitive), check_call(name, n),
    result_type(spec, arg_types). FunctionSpec: name, category, min_args, max_args,
    arg_kinds, returns (XTK type or "$N" = type of argument N), aggregate, window,
    only_inside, sql (False: needs server context).

SQL (sql_functions.py; imported lazily because it pulls in SQLAlchemy)
    build_function_sql(name, args, dialect_name) -> ColumnElement
        dialect_name in ("sqlite", "duckdb", "postgresql"); args are SQLAlchemy expressions
        (plain values become bound parameters). Same results on the three engines.
    register_sqlite_functions(dbapi_connection)    Python helpers SQLite needs (oc_*).
    as_condition(expr)                              XTK truth (0, '' and null are false).
"""

from __future__ import annotations

from typing import Any

from .ast import (
    Binary,
    Boolean,
    Date,
    DateTime,
    FunctionCall,
    In,
    IsNull,
    Like,
    Node,
    Null,
    Number,
    Path,
    Step,
    String,
    Unary,
    Variable,
    calls,
    paths,
    walk,
)
from .errors import ExpressionError
from .format import format_expression
from .functions import FUNCTIONS, FunctionSpec, check_call, lookup, result_type
from .parser import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LENGTH, parse_expression

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_LENGTH",
    "FUNCTIONS",
    "Binary",
    "Boolean",
    "Date",
    "DateTime",
    "ExpressionError",
    "FunctionCall",
    "FunctionSpec",
    "In",
    "IsNull",
    "Like",
    "Node",
    "Null",
    "Number",
    "Path",
    "Step",
    "String",
    "Unary",
    "Variable",
    "as_condition",
    "build_function_sql",
    "calls",
    "check_call",
    "format_expression",
    "lookup",
    "parse_expression",
    "paths",
    "register_sqlite_functions",
    "result_type",
    "walk",
]

_LAZY = {
    "build_function_sql": "sql_functions",
    "register_sqlite_functions": "sqlite_udf",
    "as_condition": "sql_common",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
