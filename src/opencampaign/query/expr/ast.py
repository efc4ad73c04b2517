"""Immutable AST of XTK expressions.

Every node carries `offset` (0-based position of its first character in the source) and a
computed `height`; both are excluded from equality so trees can be compared structurally.
`walk()` and `paths()` are iterative, so they are safe on any tree the parser can build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

StepKind = Literal["attribute", "element", "parent"]
BinaryOp = Literal["=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "AND", "OR"]
UnaryOp = Literal["NOT", "-"]

COMPARISON_OPS: frozenset[str] = frozenset({"=", "<>", "<", "<=", ">", ">="})
ARITHMETIC_OPS: frozenset[str] = frozenset({"+", "-", "*", "/"})
LOGICAL_OPS: frozenset[str] = frozenset({"AND", "OR"})


@dataclass(frozen=True, slots=True)
class Node:
    offset: int = field(default=0, compare=False, kw_only=True)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        kids = self.children()
        if kids:
            object.__setattr__(self, "height", 1 + max(k.height for k in kids))

    def children(self) -> tuple[Node, ...]:
        return ()


# -- literals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class String(Node):
    value: str
    raw: str = field(default="", compare=False)  # text between the quotes, escapes untouched


@dataclass(frozen=True, slots=True)
class Number(Node):
    """`int` for integer literals, `Decimal` for literals with a fraction or exponent."""

    value: int | Decimal
    text: str = field(default="", compare=False)

    @property
    def is_integer(self) -> bool:
        return isinstance(self.value, int)


@dataclass(frozen=True, slots=True)
class Date(Node):
    """`#2024-01-01#` or `#2002/02/01#`."""

    value: dt.date
    text: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DateTime(Node):
    """`#2021-07-07T10:03:33.332Z#`; always naive UTC (offsets are applied at parse time)."""

    value: dt.datetime
    text: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Null(Node):
    pass


@dataclass(frozen=True, slots=True)
class Variable(Node):
    """`$(name)`, `$(vars/@x)`, `$long(../@owner-id)`: `type` is the lower-case cast or None."""

    name: str
    type: str | None = None


# -- paths ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One xpath step: `@attr`, `elem`, `elem[1]` (index), `elem[@label='x']` (predicate), `..`."""

    kind: StepKind
    name: str = ""
    index: int | None = None
    predicate: Node | None = None


@dataclass(frozen=True, slots=True)
class Path(Node):
    """An xpath: `@email`, `[folder/@name]`, `[../@x]`, `group[1]/@label`, `[nms:recipient:@email]`.

    `schema`/`alias` are set by the v7 ad-hoc join form `[schema:alias:xpath]` (alias optional).
    """

    steps: tuple[Step, ...]
    schema: str | None = None
    alias: str | None = None
    raw: str = field(default="", compare=False)
    bracketed: bool = field(default=False, compare=False)

    def children(self) -> tuple[Node, ...]:
        return tuple(s.predicate for s in self.steps if s.predicate is not None)

    @property
    def outer_levels(self) -> int:
        """Number of leading `..` steps: > 0 means the path reads the outer query's row."""
        n = 0
        for s in self.steps:
            if s.kind != "parent":
                break
            n += 1
        return n

    @property
    def is_attribute(self) -> bool:
        return bool(self.steps) and self.steps[-1].kind == "attribute"

    @property
    def xpath(self) -> str:
        """Canonical xpath text without brackets or join prefix (predicates re-serialised)."""
        from .format import format_step  # local import: format depends on this module

        return "/".join(format_step(s) for s in self.steps)


# -- operators -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: UnaryOp
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic, comparison and logical operators; `==` is stored as `=`, `!=` as `<>`."""

    op: BinaryOp
    left: Node
    right: Node
    op_text: str = field(default="", compare=False)

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class Like(Node):
    """`x LIKE p`; `negated` for `NOT LIKE`."""

    operand: Node
    pattern: Node
    negated: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.operand, self.pattern)


@dataclass(frozen=True, slots=True)
class In(Node):
    """`x IN (a, b)`; `negated` for `NOT IN`."""

    operand: Node
    items: tuple[Node, ...]
    negated: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.operand, *self.items)


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    """`x IS NULL`; `negated` for `IS NOT NULL`."""

    operand: Node
    negated: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class FunctionCall(Node):
    """`name(args)`; `name` as written (look it up case-insensitively)."""

    name: str
    args: tuple[Node, ...] = ()

    def children(self) -> tuple[Node, ...]:
        return self.args


# Aliases matching the names used in design notes.
NotLike = Like
NotIn = In
IsNotNull = IsNull


def walk(node: Node) -> Iterator[Node]:
    """All nodes in pre-order (left to right), including path predicates."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))


def paths(node: Node, *, include_predicates: bool = False) -> list[Path]:
    """Path nodes in source order; paths inside step predicates only if asked (they are relative
    to the collection element, not to the query's row)."""
    found: list[Path] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Path):
            found.append(current)
            if not include_predicates:
                continue
        stack.extend(reversed(current.children()))
    return found


def calls(node: Node) -> list[FunctionCall]:
    """Function calls in pre-order."""
    return [n for n in walk(node) if isinstance(n, FunctionCall)]
