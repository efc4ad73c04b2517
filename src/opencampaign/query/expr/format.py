"""Serialise an AST back to canonical XTK text (`parse_expression(format_expression(n)) == n`)."""

from __future__ import annotations

from . import ast

_PREC = {"OR": 1, "AND": 2, "=": 4, "<>": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}


def _prec(node: ast.Node) -> int:
    if isinstance(node, ast.Binary):
        return _PREC[node.op]
    if isinstance(node, ast.Unary):
        return 3 if node.op == "NOT" else 7
    if isinstance(node, (ast.Like, ast.In, ast.IsNull)):
        return 4
    if isinstance(node, ast.Number) and node.value < 0:
        return 7  # a negative literal reads like a unary minus
    return 8


def _wrap(node: ast.Node, minimum: int) -> str:
    text = format_expression(node)
    return f"({text})" if _prec(node) < minimum else text


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_step(step: ast.Step) -> str:
    if step.kind == "parent":
        return ".."
    if step.kind == "attribute":
        return "@" + step.name
    if step.index is not None:
        return f"{step.name}[{step.index}]"
    if step.predicate is not None:
        return f"{step.name}[{format_expression(step.predicate)}]"
    return step.name


def _format_path(node: ast.Path) -> str:
    if len(node.steps) == 1 and node.steps[0].kind == "attribute" and node.schema is None:
        name = node.steps[0].name
        if name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit():
            return "@" + name
    prefix = ""
    if node.schema is not None:
        prefix = node.schema + ":" + (node.alias + ":" if node.alias else "")
    return "[" + prefix + node.xpath + "]"


def format_expression(node: ast.Node) -> str:
    """Canonical text: keywords upper-case, single-quoted strings, ISO dates, minimal parentheses."""
    if isinstance(node, ast.String):
        return _quote(node.value)
    if isinstance(node, ast.Number):
        v = node.value
        return str(v)  # Decimal's str keeps the exponent form short ('1E+100')
    if isinstance(node, ast.Date):
        return "#" + node.value.isoformat() + "#"
    if isinstance(node, ast.DateTime):
        return "#" + node.value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z#"
    if isinstance(node, ast.Boolean):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, ast.Null):
        return "NULL"
    if isinstance(node, ast.Variable):
        return f"${node.type or ''}({node.name})"
    if isinstance(node, ast.Path):
        return _format_path(node)
    if isinstance(node, ast.Unary):
        if node.op == "NOT":
            return "NOT " + _wrap(node.operand, 3)
        inner = format_expression(node.operand)
        return f"-({inner})" if _prec(node.operand) < 8 or isinstance(node.operand, ast.Number) else "-" + inner
    if isinstance(node, ast.Binary):
        p = _PREC[node.op]
        if node.op in ("AND", "OR") or p == 4:
            # Logical chains are re-balanced and comparisons do not chain: keep sub-groups explicit.
            return f"{_wrap(node.left, p + 1)} {node.op} {_wrap(node.right, p + 1)}"
        return f"{_wrap(node.left, p)} {node.op} {_wrap(node.right, p + 1)}"
    if isinstance(node, ast.Like):
        op = "NOT LIKE" if node.negated else "LIKE"
        return f"{_wrap(node.operand, 5)} {op} {_wrap(node.pattern, 5)}"
    if isinstance(node, ast.In):
        op = "NOT IN" if node.negated else "IN"
        items = ", ".join(format_expression(i) for i in node.items)
        return f"{_wrap(node.operand, 5)} {op} ({items})"
    if isinstance(node, ast.IsNull):
        return f"{_wrap(node.operand, 5)} IS {'NOT ' if node.negated else ''}NULL"
    if isinstance(node, ast.FunctionCall):
        return f"{node.name}({', '.join(format_expression(a) for a in node.args)})"
    raise TypeError(f"not an expression node: {node!r}")
