"""Evaluating the access conditions schemas declare, for one caller.

`<sysFilter name="readAccess|writeAccess"><condition enabledIf="..." expr="FALSE"/></sysFilter>`
and `accessibleIf` (v8: a field the caller may not see is blanked) use a small part of the XTK
language: HasNamedRight('x'), $(loginId), $(login), comparisons, AND/OR/NOT and constants. They are
evaluated in Python, once per caller and schema, never sent to the database.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from lxml import etree

from ..context import CallContext
from ..query.expr import parse_expression
from ..query.expr.ast import Binary, Boolean, FunctionCall, Node, Null, Number, String, Unary, Variable


class ConditionError(ValueError):
    pass


@lru_cache(maxsize=1024)
def _parse(text: str) -> Node:
    return parse_expression(text, check_functions=False)


def evaluate(text: str | None, ctx: CallContext) -> Any:
    if text is None or not text.strip():
        return True
    return _eval(_parse(text), ctx)


def is_true(text: str | None, ctx: CallContext) -> bool:
    value = evaluate(text, ctx)
    return bool(value) and value not in ("0", "false")


def _eval(node: Node, ctx: CallContext) -> Any:
    if isinstance(node, Boolean):
        return node.value
    if isinstance(node, Number):
        return node.value
    if isinstance(node, String):
        return node.value
    if isinstance(node, Null):
        return None
    if isinstance(node, Variable):
        values = {"loginId": ctx.login_id, "login": ctx.login}
        return values.get(node.name, ctx.variables.get(node.name))
    if isinstance(node, FunctionCall):
        name = node.name.lower()
        args = [_eval(a, ctx) for a in node.args]
        if name == "hasnamedright":
            return ctx.has_right(str(args[0])) if args else False
        if name == "haspackage":
            return True  # every feature of this server is installed
        if name in ("true", "false"):
            return name == "true"
        raise ConditionError(f"function '{node.name}' is not allowed in an access condition")
    if isinstance(node, Unary):
        value = _eval(node.operand, ctx)
        return (not value) if node.op == "NOT" else -value
    if isinstance(node, Binary):
        if node.op == "AND":
            return bool(_eval(node.left, ctx)) and bool(_eval(node.right, ctx))
        if node.op == "OR":
            return bool(_eval(node.left, ctx)) or bool(_eval(node.right, ctx))
        left, right = _norm(_eval(node.left, ctx)), _norm(_eval(node.right, ctx))
        ops = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        if node.op in ops:
            return ops[node.op](left, right)
    raise ConditionError(f"unsupported access condition near offset {node.offset}")


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def access_denied(schema_xml: etree._Element | None, filter_name: str, ctx: CallContext) -> bool:
    """True when a `<sysFilter name=filter_name>` condition applies to `ctx` and is FALSE (no access)."""
    if schema_xml is None:
        return False
    main = next((e for e in schema_xml.findall("element") if e.get("name") == schema_xml.get("name")), None)
    if main is None:
        return False
    for sys_filter in main.findall("sysFilter"):
        if sys_filter.get("name") != filter_name:
            continue
        for condition in sys_filter.findall("condition"):
            if is_true(condition.get("enabledIf"), ctx) and not is_true(condition.get("expr"), ctx):
                return True
    return False
