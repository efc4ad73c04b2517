"""Precedence-climbing parser for XTK expressions.

Precedence, loosest first: OR < AND < NOT < comparison / LIKE / IN / IS < + - < * / < unary minus.
Comparisons do not chain (`a = b = c` is an error). AND/OR chains are built as balanced trees so a
long `a OR b OR ...` stays shallow; every other operator is left-associative.

Hostile input is bounded three ways: text length, token count, and nesting depth (both the
syntactic nesting while parsing and the height of the resulting tree), so no input can exhaust
the Python stack here or in recursive consumers (SQL compilation) downstream.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from . import ast
from .errors import ExpressionError
from .lexer import DEFAULT_MAX_TOKENS, T, Token, tokenize

DEFAULT_MAX_LENGTH = 64 * 1024
DEFAULT_MAX_DEPTH = 64
_HARD_MAX_DEPTH = 256  # beyond this the parser itself could approach Python's recursion limit
_MAX_INT = 2**63 - 1

VARIABLE_TYPES = frozenset(
    {"string", "memo", "long", "int64", "short", "byte", "float", "double", "boolean", "date",
     "datetime", "datetimetz", "datetimenotz", "time", "timespan", "uuid"}
)

_DATE_RE = re.compile(
    r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-:]*")

_COMPARISONS = {"=": "=", "==": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_PREC_OR, _PREC_AND, _PREC_NOT, _PREC_CMP, _PREC_ADD, _PREC_MUL, _PREC_UNARY = 1, 2, 3, 4, 5, 6, 7


def parse_expression(
    text: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    check_functions: bool = True,
) -> ast.Node:
    """Parse an XTK expression into an AST.

    Raises ExpressionError (never anything else) for any invalid input. With `check_functions`
    every call must name a whitelisted function (functions.py) with a valid argument count.
    """
    if not isinstance(text, str):
        raise ExpressionError("Expression must be a string", "")
    if not 1 <= max_depth <= _HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be between 1 and {_HARD_MAX_DEPTH}")
    if len(text) > max_length:
        raise ExpressionError(f"Expression too long ({len(text)} characters, maximum {max_length})", text, 0)
    _check_characters(text)
    try:
        tokens = tokenize(text, max_tokens=max_tokens, max_depth=max_depth)
        return _Parser(text, tokens, max_depth, check_functions).parse()
    except RecursionError:  # defence in depth: the depth limits should make this unreachable
        raise ExpressionError(f"Expression nesting too deep (maximum {max_depth})", text, 0) from None


def _check_characters(text: str) -> None:
    for i, ch in enumerate(text):
        code = ord(ch)
        if (code < 0x20 and ch not in "\t\r\n") or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise ExpressionError(f"Invalid character U+{code:04X} at offset {i}", text, i)


class _Parser:
    def __init__(self, text: str, tokens: list[Token], max_depth: int, check_functions: bool) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.max_depth = max_depth
        self.check_functions = check_functions

    # -- helpers -------------------------------------------------------------------------

    @property
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not T.EOF:
            self.pos += 1
        return tok

    def error(self, detail: str, offset: int) -> ExpressionError:
        return ExpressionError(f"{detail} at offset {offset}", self.text, offset)

    def unexpected(self, tok: Token | None = None, expected: str | None = None) -> ExpressionError:
        tok = tok or self.peek
        suffix = f" (expected {expected})" if expected else ""
        if tok.kind is T.EOF:
            return self.error(f"Unexpected end of expression{suffix}", tok.start)
        shown = self.text[tok.start : tok.end]
        if len(shown) > 40:
            shown = shown[:40] + "..."
        return ExpressionError(f"Unexpected token '{shown}' at offset {tok.start}{suffix}", self.text, tok.start)

    def expect(self, kind: T, what: str) -> Token:
        if self.peek.kind is not kind:
            raise self.unexpected(expected=what)
        return self.advance()

    def is_op(self, *ops: str) -> bool:
        return self.peek.kind is T.OP and self.peek.text in ops

    def is_kw(self, *words: str) -> bool:
        return self.peek.kind is T.KEYWORD and self.peek.text in words

    def enter(self, at: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error(f"Expression nesting too deep (maximum {self.max_depth})", at)

    def leave(self) -> None:
        self.depth -= 1

    def make(self, node: ast.Node) -> ast.Node:
        if node.height > self.max_depth:
            raise self.error(f"Expression nesting too deep (maximum {self.max_depth})", node.offset)
        return node

    # -- grammar -------------------------------------------------------------------------

    def parse(self) -> ast.Node:
        if self.peek.kind is T.EOF:
            raise self.error("Empty expression", 0)
        node = self.expr(_PREC_OR)
        if self.peek.kind is not T.EOF:
            raise self.unexpected()
        return node

    def binary_level(self) -> tuple[int, str] | None:
        tok = self.peek
        if tok.kind is T.KEYWORD:
            if tok.text == "OR":
                return _PREC_OR, "OR"
            if tok.text == "AND":
                return _PREC_AND, "AND"
            if tok.text in ("LIKE", "IN", "IS"):
                return _PREC_CMP, tok.text
            if tok.text == "NOT":
                nxt = self.tokens[self.pos + 1]
                if nxt.kind is T.KEYWORD and nxt.text in ("LIKE", "IN"):
                    return _PREC_CMP, "NOT " + nxt.text
            return None
        if tok.kind is T.OP:
            if tok.text in _COMPARISONS:
                return _PREC_CMP, "cmp"
            return (_PREC_ADD, "arith") if tok.text in "+-" else (_PREC_MUL, "arith")
        return None

    def expr(self, min_prec: int) -> ast.Node:
        left = self.prefix()
        compared = False
        while True:
            level = self.binary_level()
            if level is None or level[0] < min_prec:
                return left
            prec, kind = level
            if prec == _PREC_CMP:
                if compared:
                    raise self.unexpected()
                compared = True
                left = self.comparison(left, kind)
            elif kind in ("OR", "AND"):
                compared = False
                left = self.logical_chain(left, kind, prec)
            else:
                compared = False
                op_tok = self.advance()
                right = self.expr(prec + 1)
                left = self.make(ast.Binary(op_tok.text, left, right, op_text=op_tok.text, offset=left.offset))  # type: ignore[arg-type]

    def logical_chain(self, first: ast.Node, op: str, prec: int) -> ast.Node:
        operands = [first]
        while self.is_kw(op):
            self.advance()
            operands.append(self.expr(prec + 1))
        return self.balanced(operands, op)

    def balanced(self, operands: list[ast.Node], op: str) -> ast.Node:
        if len(operands) == 1:
            return operands[0]
        mid = len(operands) // 2
        left = self.balanced(operands[:mid], op)
        right = self.balanced(operands[mid:], op)
        return self.make(ast.Binary(op, left, right, op_text=op, offset=left.offset))  # type: ignore[arg-type]

    def comparison(self, left: ast.Node, kind: str) -> ast.Node:
        op_tok = self.advance()
        if kind == "cmp":
            right = self.expr(_PREC_ADD)
            op = _COMPARISONS[op_tok.text]
            return self.make(ast.Binary(op, left, right, op_text=op_tok.text, offset=left.offset))  # type: ignore[arg-type]
        negated = kind.startswith("NOT ")
        if negated:
            self.advance()  # the LIKE / IN after NOT
            kind = kind[4:]
        if kind == "LIKE":
            pattern = self.expr(_PREC_ADD)
            return self.make(ast.Like(left, pattern, negated, offset=left.offset))
        if kind == "IN":
            items = self.in_list()
            return self.make(ast.In(left, items, negated, offset=left.offset))
        # IS [NOT] NULL
        is_not = False
        if self.is_kw("NOT"):
            self.advance()
            is_not = True
        if not self.is_kw("NULL"):
            raise self.unexpected(expected="NULL")
        self.advance()
        return self.make(ast.IsNull(left, is_not, offset=left.offset))

    def in_list(self) -> tuple[ast.Node, ...]:
        open_tok = self.expect(T.LPAREN, "'('")
        self.enter(open_tok.start)
        items = [self.expr(_PREC_OR)]
        while self.peek.kind is T.COMMA:
            self.advance()
            items.append(self.expr(_PREC_OR))
        self.expect(T.RPAREN, "')' or ','")
        self.leave()
        return tuple(items)

    def prefix(self) -> ast.Node:
        tok = self.peek
        if tok.kind is T.KEYWORD and tok.text == "NOT":
            self.advance()
            self.enter(tok.start)
            operand = self.expr(_PREC_NOT)
            self.leave()
            return self.make(ast.Unary("NOT", operand, offset=tok.start))
        if tok.kind is T.OP and tok.text == "-":
            self.advance()
            self.enter(tok.start)
            operand = self.expr(_PREC_UNARY)
            self.leave()
            if isinstance(operand, ast.Number):  # fold `-42.3` into a literal
                return ast.Number(-operand.value, "-" + operand.text, offset=tok.start)
            return self.make(ast.Unary("-", operand, offset=tok.start))
        return self.primary()

    def primary(self) -> ast.Node:
        tok = self.peek
        kind = tok.kind
        if kind is T.NUMBER:
            self.advance()
            return self.number(tok)
        if kind is T.STRING:
            self.advance()
            return ast.String(tok.text, tok.extra or "", offset=tok.start)
        if kind is T.DATE:
            self.advance()
            return self.date(tok)
        if kind is T.KEYWORD and tok.text in ("TRUE", "FALSE"):
            self.advance()
            return ast.Boolean(tok.text == "TRUE", offset=tok.start)
        if kind is T.KEYWORD and tok.text == "NULL":
            self.advance()
            return ast.Null(offset=tok.start)
        if kind is T.VARIABLE:
            self.advance()
            if tok.extra is not None and tok.extra not in VARIABLE_TYPES:
                raise self.error(f"Unknown variable type '{tok.extra}'", tok.start)
            return ast.Variable(tok.text, tok.extra, offset=tok.start)
        if kind is T.LPAREN:
            self.advance()
            self.enter(tok.start)
            node = self.expr(_PREC_OR)
            self.expect(T.RPAREN, "')'")
            self.leave()
            return node
        if kind is T.IDENT:
            if self.tokens[self.pos + 1].kind is T.LPAREN:
                return self.function_call()
            return self.bare_path()
        if kind is T.ATTR:
            self.advance()
            step = ast.Step("attribute", tok.text)
            return ast.Path((step,), raw=self.text[tok.start : tok.end], offset=tok.start)
        if kind is T.PATH_OPEN:
            return self.bracketed_path()
        raise self.unexpected()

    def number(self, tok: Token) -> ast.Number:
        text = tok.text
        if len(text) > 64:
            raise self.error("Number literal too long", tok.start)
        if "." in text or "e" in text or "E" in text:
            try:
                value: int | Decimal = Decimal(text)
            except InvalidOperation:
                raise self.error(f"Invalid number '{text}'", tok.start) from None
            if not value.is_finite() or abs(value.adjusted()) > 308:
                raise self.error(f"Number out of range '{text}'", tok.start)
        else:
            value = int(text)
            if value > _MAX_INT:
                raise self.error(f"Number out of range '{text}'", tok.start)
        return ast.Number(value, text, offset=tok.start)

    def date(self, tok: Token) -> ast.Node:
        body = tok.text.strip()
        m = _DATE_RE.fullmatch(body)
        shown = "#" + tok.text + "#"
        if not m:
            raise self.error(f"Invalid date literal '{shown}'", tok.start)
        year, _sep, month, day, hh, mi, ss, frac, tz = m.groups()
        try:
            if hh is None:
                if tz is not None:
                    raise ValueError("zone without time")
                return ast.Date(dt.date(int(year), int(month), int(day)), tok.text, offset=tok.start)
            micro = int((frac or "0").ljust(6, "0"))
            value = dt.datetime(int(year), int(month), int(day), int(hh), int(mi), int(ss or 0), micro)
            if tz and tz != "Z":
                sign = -1 if tz[0] == "-" else 1
                digits = tz[1:].replace(":", "")
                offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
                value = value - sign * offset
        except (ValueError, OverflowError):
            raise self.error(f"Invalid date literal '{shown}'", tok.start) from None
        return ast.DateTime(value, tok.text, offset=tok.start)

    def function_call(self) -> ast.Node:
        name_tok = self.advance()
        open_tok = self.advance()
        self.enter(open_tok.start)
        args: list[ast.Node] = []
        if self.peek.kind is not T.RPAREN:
            args.append(self.expr(_PREC_OR))
            while self.peek.kind is T.COMMA:
                self.advance()
                args.append(self.expr(_PREC_OR))
        self.expect(T.RPAREN, "')' or ','")
        self.leave()
        if self.check_functions:
            from .functions import check_call  # deferred: functions imports nothing from here

            problem = check_call(name_tok.text, len(args))
            if problem:
                raise self.error(problem, name_tok.start)
        return self.make(ast.FunctionCall(name_tok.text, tuple(args), offset=name_tok.start))

    # -- paths ---------------------------------------------------------------------------

    def bare_path(self) -> ast.Node:
        """`subscription`, `group[1]/@label`: unbracketed element paths; `/` must touch both sides."""
        start = self.peek.start
        steps = [self.element_step(self.advance())]
        while (
            self.is_op("/")
            and self.peek.start == self.tokens[self.pos - 1].end
            and self.tokens[self.pos + 1].start == self.peek.end
            and self.tokens[self.pos + 1].kind in (T.IDENT, T.ATTR)
        ):
            self.advance()
            tok = self.advance()
            if tok.kind is T.ATTR:
                steps.append(ast.Step("attribute", tok.text))
                break
            steps.append(self.element_step(tok))
        end = self.tokens[self.pos - 1].end
        return self.make(ast.Path(tuple(steps), raw=self.text[start:end], offset=start))

    def element_step(self, name_tok: Token) -> ast.Step:
        if not _NAME_RE.fullmatch(name_tok.text):
            raise self.error(f"Invalid element name '{name_tok.text}'", name_tok.start)
        if self.peek.kind is not T.PRED_OPEN:
            return ast.Step("element", name_tok.text)
        open_tok = self.advance()
        self.enter(open_tok.start)
        nxt = self.tokens[self.pos + 1]
        if self.peek.kind is T.NUMBER and nxt.kind is T.PRED_CLOSE and self.peek.text.isdigit():
            index = int(self.advance().text)
            if index < 1:
                raise self.error("Collection index must be 1 or more", open_tok.start)
            self.advance()
            self.leave()
            return ast.Step("element", name_tok.text, index=index)
        predicate = self.expr(_PREC_OR)
        self.expect(T.PRED_CLOSE, "']'")
        self.leave()
        return ast.Step("element", name_tok.text, predicate=predicate)

    def bracketed_path(self) -> ast.Node:
        open_tok = self.advance()
        self.enter(open_tok.start)
        schema = alias = None
        first = self.peek
        if first.kind is T.NAME and ":" in first.text:
            schema, alias, rest = self.join_prefix(first)
            if rest is None:
                self.advance()  # `[schema:alias:` then the path proper follows
            else:
                self.tokens[self.pos] = Token(T.NAME, rest, first.end - len(rest), first.end)
        steps: list[ast.Step] = []
        while True:
            tok = self.peek
            if tok.kind is T.DOTDOT:
                if any(s.kind != "parent" for s in steps):
                    raise self.error("'..' is only allowed at the start of a path", tok.start)
                self.advance()
                steps.append(ast.Step("parent"))
            elif tok.kind is T.ATTR:
                self.advance()
                if not _NAME_RE.fullmatch(tok.text):
                    raise self.error(f"Invalid attribute name '{tok.text}'", tok.start)
                steps.append(ast.Step("attribute", tok.text))
            elif tok.kind is T.NAME:
                self.advance()
                steps.append(self.element_step(tok))
            else:
                raise self.unexpected(expected="a path step")
            if self.peek.kind is T.PATH_CLOSE:
                break
            if steps[-1].kind == "attribute":
                raise self.unexpected(expected="']' after an attribute")
            self.expect(T.SLASH, "'/' or ']'")
        close = self.advance()
        self.leave()
        if steps[-1].kind == "parent":
            raise self.error("A path cannot end with '..'", close.start)
        raw = self.text[open_tok.start : close.end]
        return self.make(
            ast.Path(tuple(steps), schema, alias, raw=raw, bracketed=True, offset=open_tok.start)
        )

    def join_prefix(self, tok: Token) -> tuple[str | None, str | None, str | None]:
        """Split `nms:recipient:[alias:]first-step` (v7 ad-hoc join syntax)."""
        parts = tok.text.split(":")
        if tok.text.endswith(":"):
            head, rest = parts[:-1], None
        elif len(parts) >= 3:
            head, rest = parts[:-1], parts[-1]
        else:
            return None, None, tok.text  # `[ns:name]`: a plain element name containing ':'
        if len(head) not in (2, 3) or not all(head):
            raise self.error(f"Invalid join prefix '{tok.text}'", tok.start)
        schema = head[0] + ":" + head[1]
        alias = head[2] if len(head) == 3 else None
        return schema, alias, rest
