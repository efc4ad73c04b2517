"""Tokenizer for XTK expressions.

Brackets switch lexical modes because xpath names may contain `-` and `:` (`[@folder-id]`,
`[nms:recipient:@email]`) while the same characters are operators outside brackets:

- normal mode: literals, operators, identifiers, `@attr`, `$var(...)`;
- path mode (after a `[` that opens a path): names, `@names`, `/`, `..`, `]`;
- predicate mode (after a `[` that follows a path step): normal rules until the matching `]`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import ExpressionError


class T(enum.Enum):
    NUMBER = "number"
    STRING = "string"
    DATE = "date"
    IDENT = "identifier"
    KEYWORD = "keyword"
    ATTR = "attribute"  # @name (normal mode: letters, digits, _; path mode: also - and :)
    VARIABLE = "variable"
    OP = "operator"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    PATH_OPEN = "[ (path)"
    PATH_CLOSE = "] (path)"
    PRED_OPEN = "[ (predicate)"
    PRED_CLOSE = "] (predicate)"
    NAME = "name"  # element name inside a bracketed path
    SLASH = "/"
    DOTDOT = ".."
    EOF = "end of expression"


KEYWORDS = frozenset({"AND", "OR", "NOT", "LIKE", "IN", "IS", "NULL", "TRUE", "FALSE"})
_OPERATORS = ("==", "<>", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/")
_VARIABLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@/.:-")

DEFAULT_MAX_TOKENS = 16_384


@dataclass(frozen=True, slots=True)
class Token:
    kind: T
    text: str  # source text (for STRING: the unescaped value; for VARIABLE: the name)
    start: int
    end: int
    extra: str | None = None  # STRING: raw text between quotes; VARIABLE: cast type


def _is_ident_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


def _is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _is_name_char(ch: str) -> bool:
    return _is_ident_char(ch) or ch in "-:"


class Lexer:
    def __init__(self, text: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, max_depth: int = 64) -> None:
        self.text = text
        self.pos = 0
        self.max_tokens = max_tokens
        self.max_depth = max_depth
        self.modes: list[str] = ["normal"]
        self.parens = 0
        self.tokens: list[Token] = []

    def error(self, detail: str, offset: int) -> ExpressionError:
        return ExpressionError(f"{detail} at offset {offset}", self.text, offset)

    def tokenize(self) -> list[Token]:
        text = self.text
        n = len(text)
        while True:
            mode = self.modes[-1]
            while self.pos < n and text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos >= n:
                break
            if len(self.tokens) >= self.max_tokens:
                raise self.error(f"Too many tokens (maximum {self.max_tokens})", self.pos)
            if mode == "path":
                self._path_token()
            else:
                self._normal_token()
        if len(self.modes) > 1:
            opener = "path" if self.modes[-1] == "path" else "predicate"
            raise self.error(f"Missing ']' to close {opener}", n)
        self.tokens.append(Token(T.EOF, "", n, n))
        return self.tokens

    def _emit(self, kind: T, value: str, start: int, end: int, extra: str | None = None) -> None:
        self.tokens.append(Token(kind, value, start, end, extra))
        self.pos = end

    def _push(self, mode: str, at: int) -> None:
        if len(self.modes) + self.parens > self.max_depth:
            raise self.error(f"Expression nesting too deep (maximum {self.max_depth})", at)
        self.modes.append(mode)

    # -- normal / predicate mode ---------------------------------------------------------

    def _normal_token(self) -> None:
        text, start = self.text, self.pos
        ch = text[start]
        if ch.isascii() and ch.isdigit():
            self._number(start)
        elif ch == "'":
            self._string(start)
        elif ch == "#":
            end = text.find("#", start + 1)
            if end < 0:
                raise self.error("Unterminated date literal starting", start)
            self._emit(T.DATE, text[start + 1 : end], start, end + 1)
        elif ch == "$":
            self._variable(start)
        elif ch == "@":
            end = start + 1
            if end >= len(text) or not _is_ident_start(text[end]):
                raise self.error("Expected an attribute name after '@'", start)
            while end < len(text) and _is_ident_char(text[end]):
                end += 1
            self._emit(T.ATTR, text[start + 1 : end], start, end)
        elif _is_ident_start(ch):
            end = start + 1
            while end < len(text) and _is_ident_char(text[end]):
                end += 1
            word = text[start:end]
            kind = T.KEYWORD if word.upper() in KEYWORDS else T.IDENT
            self._emit(kind, word.upper() if kind is T.KEYWORD else word, start, end)
        elif ch == "(":
            self.parens += 1  # checked here too so deep input fails before the token limit
            if self.parens + len(self.modes) > self.max_depth + 1:
                raise self.error(f"Expression nesting too deep (maximum {self.max_depth})", start)
            self._emit(T.LPAREN, ch, start, start + 1)
        elif ch == ")":
            self.parens = max(self.parens - 1, 0)
            self._emit(T.RPAREN, ch, start, start + 1)
        elif ch == ",":
            self._emit(T.COMMA, ch, start, start + 1)
        elif ch == "[":
            prev = self.tokens[-1] if self.tokens else None
            # `group[1]` (no space): a predicate on the bare element just read; otherwise a path.
            if prev is not None and prev.end == start and prev.kind in (T.IDENT, T.PRED_CLOSE):
                self._push("predicate", start)
                self._emit(T.PRED_OPEN, ch, start, start + 1)
            else:
                self._push("path", start)
                self._emit(T.PATH_OPEN, ch, start, start + 1)
        elif ch == "]":
            if self.modes[-1] != "predicate":
                raise self.error("Unexpected character ']'", start)
            self.modes.pop()
            self._emit(T.PRED_CLOSE, ch, start, start + 1)
        else:
            for op in _OPERATORS:
                if text.startswith(op, start):
                    self._emit(T.OP, op, start, start + len(op))
                    return
            raise self.error(f"Unexpected character {_show(ch)}", start)

    def _number(self, start: int) -> None:
        text, end = self.text, start
        n = len(text)
        while end < n and text[end].isascii() and text[end].isdigit():
            end += 1
        if end + 1 < n and text[end] == "." and text[end + 1].isascii() and text[end + 1].isdigit():
            end += 1
            while end < n and text[end].isascii() and text[end].isdigit():
                end += 1
        if end < n and text[end] in "eE":
            exp = end + 1
            if exp < n and text[exp] in "+-":
                exp += 1
            if exp < n and text[exp].isascii() and text[exp].isdigit():
                end = exp
                while end < n and text[end].isascii() and text[end].isdigit():
                    end += 1
        if end < n and _is_ident_char(text[end]):
            raise self.error(f"Invalid number {_show(text[start : end + 1])}", start)
        self._emit(T.NUMBER, text[start:end], start, end)

    def _string(self, start: int) -> None:
        text, i, n = self.text, start + 1, len(self.text)
        out: list[str] = []
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                # \' and \\ are the documented escapes; other pairs (\% \_ for LIKE) stay verbatim.
                out.append(nxt if nxt in "'\\" else ch + nxt)
                i += 2
            elif ch == "'":
                self._emit(T.STRING, "".join(out), start, i + 1, text[start + 1 : i])
                return
            else:
                out.append(ch)
                i += 1
        raise self.error("Unterminated string starting", start)

    def _variable(self, start: int) -> None:
        text, n = self.text, len(self.text)
        i = start + 1
        while i < n and _is_ident_char(text[i]):
            i += 1
        cast = text[start + 1 : i].lower() or None
        if i >= n or text[i] != "(":
            raise self.error("Invalid variable reference, expected '$(name)' or '$type(name)'", start)
        close = text.find(")", i + 1)
        if close < 0:
            raise self.error("Unterminated variable reference starting", start)
        name = text[i + 1 : close]
        bad = next((j for j, c in enumerate(name) if c not in _VARIABLE_CHARS), None)
        if not name or bad is not None:
            where = start if bad is None else i + 1 + bad
            raise self.error("Invalid variable name", where)
        self._emit(T.VARIABLE, name, start, close + 1, cast)

    # -- path mode -----------------------------------------------------------------------

    def _path_token(self) -> None:
        text, start = self.text, self.pos
        ch = text[start]
        if ch == "]":
            self.modes.pop()
            self._emit(T.PATH_CLOSE, ch, start, start + 1)
        elif ch == "[":
            self._push("predicate", start)
            self._emit(T.PRED_OPEN, ch, start, start + 1)
        elif ch == "/":
            self._emit(T.SLASH, ch, start, start + 1)
        elif text.startswith("..", start):
            self._emit(T.DOTDOT, "..", start, start + 2)
        elif ch == "@" or _is_name_char(ch):
            name_start = start + 1 if ch == "@" else start
            end = name_start
            while end < len(text) and _is_name_char(text[end]):
                end += 1
            if end == name_start:
                raise self.error("Expected an attribute name after '@'", start)
            kind = T.ATTR if ch == "@" else T.NAME
            self._emit(kind, text[name_start:end], start, end)
        else:
            raise self.error(f"Unexpected character {_show(ch)} in path", start)


def _show(s: str) -> str:
    """Quote a source fragment for an error detail (control characters escaped by the error)."""
    return "'" + s + "'"


def tokenize(text: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, max_depth: int = 64) -> list[Token]:
    return Lexer(text, max_tokens=max_tokens, max_depth=max_depth).tokenize()
