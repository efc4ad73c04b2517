"""The plan-cache form of a queryDef document: its integer constants lifted out.

A client repeating a query with other ids (`@id = 1234`) sends documents that differ only in the
integer literals of their `expr` attributes. Lifting them out (each becomes the bound parameter
`$(__oc_lift_N)`) gives a key shared by all such documents, so the query is parsed and planned once
(querydef.PLANS) and each call only binds its values. The SOAP router uses the same analysis on
whole request bodies (soap/prepared.py).
"""

from __future__ import annotations

import bisect
import re
import threading

from lxml import etree

from ..xmlsafe import XMLInputError, parse_xml
from .compile_expr import LIFTED_PREFIX
from .expr.lexer import T, tokenize

MAX_CACHED_TEXT = 16_384
MAX_LIFTED_DIGITS = 18  # longer integers stay in the key (int64 planning, float fallback)
_EXPR_ATTR = re.compile(r'(\bexpr=")([^"]*)(")')
_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_RUNS = re.compile(r"([0-9]+)")
_DIGITS = re.compile(r"[0-9]+")
_MARK = "__oc_shape_"


def document_text(document: object) -> str | None:
    """The text the plan cache keys on: XML text as sent, an element serialised; None for
    SimpleJson documents and texts over MAX_CACHED_TEXT."""
    if isinstance(document, bytes):
        try:
            return document.decode("utf-8") if len(document) <= MAX_CACHED_TEXT else None
        except UnicodeDecodeError:
            return None
    if isinstance(document, str):
        return document if len(document) <= MAX_CACHED_TEXT else None
    if isinstance(document, etree._Element) and isinstance(document.tag, str):
        text = etree.tostring(document, encoding="unicode", with_tail=False)
        return text if len(text) <= MAX_CACHED_TEXT else None
    return None  # SimpleJson documents are not cached


class Shapes:
    """Bounded map: document skeleton (its text with every run of digits cut out) -> indexes of
    the runs that are integer literals of `expr` attributes. Reads take no lock."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._entries: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def get(self, skeleton: str) -> tuple[int, ...] | None:
        return self._entries.get(skeleton)

    def put(self, skeleton: str, lifted: tuple[int, ...]) -> None:
        with self._lock:
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]  # the oldest
            self._entries[skeleton] = lifted

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


SHAPES = Shapes()


class LiftedQuery:
    __slots__ = ("key", "values", "parts", "lifted")

    def __init__(self, key: tuple[str, tuple[str, ...]], values: list[int], parts: list[str], lifted: list[int]):
        self.key = key  # skeleton, and each run of digits (a lifted one: its class)
        self.values = values  # the lifted constants, in document order
        self.parts = parts  # the text split around its runs of digits
        self.lifted = lifted  # indexes of the lifted runs

    def with_values(self, values: list[int]) -> LiftedQuery:
        """The same document with other constants, of the same classes (`constant_class`)."""
        return LiftedQuery(self.key, values, self.parts, self.lifted)

    def text(self) -> str:
        """The document as sent (what errors quote, and what uncached paths parse)."""
        parts = list(self.parts)
        for value, index in zip(self.values, self.lifted, strict=True):
            parts[2 * index + 1] = str(value)
        return "".join(parts)

    def canonical(self) -> str:
        """The document with each lifted constant replaced by `$(__oc_lift_N)`."""
        parts = list(self.parts)
        for ordinal, index in enumerate(self.lifted):
            parts[2 * index + 1] = f"$({LIFTED_PREFIX}{ordinal})"
        return "".join(parts)


def constant_class(value: int) -> str:
    """What planning depends on in a lifted constant: zero, 32-bit or 64-bit."""
    return "z" if value == 0 else "l" if value < 2**31 else "b"


def lift_constants(text: str) -> LiftedQuery | None:
    """The plan-cache form of a document: the integer literals of its `expr` attributes lifted
    out, with their values and classes; None when it cannot be lifted safely (it then runs
    uncached). Which runs of digits are such literals depends only on the rest of the text (the
    expression lexer treats every digit alike), so it is worked out once per skeleton
    (`shape_of`); a repeated document costs one regex split and a dictionary lookup."""
    if LIFTED_PREFIX in text or "&#" in text or "\x00" in text or _MARK in text:
        return None
    parts = _RUNS.split(text)
    skeleton = "\x00".join(parts[::2])
    shape = SHAPES.get(skeleton)
    if shape is None:
        shape, reusable = shape_of(text, parts)
        if reusable:
            SHAPES.put(skeleton, shape)
    runs = parts[1::2]
    values: list[int] = []
    lifted: list[int] = []
    for index in shape:
        run = runs[index]
        if len(run) <= MAX_LIFTED_DIGITS:
            value = int(run)
            values.append(value)
            lifted.append(index)
            runs[index] = constant_class(value)
    return LiftedQuery((skeleton, tuple(runs)), values, parts, lifted)


def shape_of(text: str, parts: list[str]) -> tuple[tuple[int, ...], bool]:
    """Indexes of the runs of digits (`parts[2 * i + 1]`) that are integer literals of `expr`
    attributes, and whether the answer holds for every document of the same skeleton (not when
    the document is not well-formed: then nothing is lifted). Expressions are tokenised by the
    expression lexer, so numbers inside strings, dates or names are never lifted; an expression it
    refuses is left as it is. Each `expr="..."` found by the regex is checked to be a whole `expr`
    attribute of an element of the parsed document (not text inside a comment or another value)."""
    matches = [m for m in _EXPR_ATTR.finditer(text) if any(c.isdigit() for c in m.group(2))]
    if not matches:
        return (), True
    marked, last = [], 0
    for n, match in enumerate(matches):
        marked += [text[last:match.start(2)], f"{_MARK}{n}"]
        last = match.end(2)
    marked.append(text[last:])
    try:
        root = parse_xml("".join(marked), source="queryDef")
    except XMLInputError:
        return (), False
    whole = [value for elem in root.iter() if isinstance(elem.tag, str)
             for value in [elem.get("expr")] if value is not None and value.startswith(_MARK)]
    starts, position = [], 0  # offset in `text` of each run of digits
    for n, part in enumerate(parts):
        if n % 2:
            starts.append(position)
        position += len(part)
    lifted: list[int] = []
    for n, match in enumerate(matches):
        if whole.count(f"{_MARK}{n}") != 1:
            continue
        expr = _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], match.group(2))
        try:
            tokens = tokenize(expr)
        except Exception:  # noqa: BLE001 - invalid: compiled (and refused) as sent
            continue
        spans = [m.span() for m in _DIGITS.finditer(expr)]
        first = bisect.bisect_left(starts, match.start(2))
        indexes = [i for i in range(first, len(starts)) if starts[i] < match.end(2)]
        if len(indexes) != len(spans):  # entities hold no digits: cannot happen
            continue
        for tok in tokens:
            if tok.kind is T.NUMBER and tok.text.isdigit() and (tok.start, tok.end) in spans:
                lifted.append(indexes[spans.index((tok.start, tok.end))])
    return tuple(lifted), True
