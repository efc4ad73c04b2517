"""Prepared requests: a body that repeats a known shape skips XML parsing.

Integration clients send the same envelope again and again with only an id changed (a get by
key, a GetServerTime to keep a session alive). Once such a body has been parsed and answered,
the router keeps a *template* of it: its bytes cut around the integer literals of its queryDef
`expr` attributes, the constants the plan cache lifts out anyway (query/lifting.py). A later body
that matches a template byte for byte outside those literals, each of them a run of digits of the
same class (zero, 32-bit, 64-bit), is the same XML with other numbers in the same places: it is
well-formed and within every limit, routes to the same method with the same tokens, and its
queryDef has the same plan. It is answered from the template's parsed request and the new
constants; matching costs a few `startswith` calls instead of a parse and a lift.

Only calls that read their request and never change it get templates: `xtk:queryDef#ExecuteQuery`
(its implementation takes the lifted document) and GetServerTime. Everything else about the call
— session, security token, rights, rate limit, the query itself — is checked on every request.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..query.lifting import (
    MAX_LIFTED_DIGITS,
    LiftedQuery,
    constant_class,
    document_text,
    lift_constants,
    shape_of,
)
from . import codec
from .dispatch import Action, BodyTokens, Target, body_tokens
from .envelope import SoapRequest

QUERY_API = "xtk:queryDef#ExecuteQuery"
PLAIN_APIS = frozenset({"xtk:session#GetServerTime"})  # static, no inputs: the body carries only tokens
MAX_TEMPLATE_BYTES = 16_384
TEMPLATES_PER_GROUP = 16  # shapes kept per SOAPAction; matching tries each (newest first)
MAX_GROUPS = 16  # (SOAPAction, charset) pairs; with the above, at most 256 templates of <= 16 KiB
NEW_TEMPLATES_PER_SECOND = 32  # per group: a client sending ever new shapes pays for a few analyses only
_RUNS = re.compile(r"([0-9]+)")


@dataclass(frozen=True)
class Template:
    segments: tuple[bytes, ...]  # the body around its constants
    classes: tuple[str, ...]  # each constant's class
    request: SoapRequest  # parsed from the body the template was made of; read, never changed
    action: Action
    target: Target
    query: LiftedQuery | None  # ExecuteQuery: its document, with that body's constants
    inline_key: str | None  # the router's name for this kind of call when it may run on the event loop
    tokens: BodyTokens  # the session and security tokens the body carries

    def match(self, body: bytes) -> LiftedQuery | None | bool:
        """False when `body` does not have this shape; else the queryDef with the body's
        constants (None for methods without a document)."""
        segments = self.segments
        head = segments[0]
        if not body.startswith(head):
            return False
        if len(segments) == 1:
            return (self.query if self.query is not None else True) if len(body) == len(head) else False
        if not body.endswith(segments[-1]):
            return False
        if len(segments) == 2:  # one constant (a get by key): the digits are what lies between
            digits = body[len(head):len(body) - len(segments[1])]
            if not 0 < len(digits) <= MAX_LIFTED_DIGITS or not digits.isdigit():
                return False
            value = int(digits)
            if self.classes[0] != ("z" if value == 0 else "l" if value < 2**31 else "b"):
                return False
            assert self.query is not None
            return self.query.with_values([value])
        position = len(head)
        values: list[int] = []
        for segment, kind in zip(segments[1:], self.classes, strict=True):
            window = body[position:position + MAX_LIFTED_DIGITS + 1]
            length = len(window) - len(window.lstrip(b"0123456789"))
            if not 0 < length <= MAX_LIFTED_DIGITS:
                return False
            value = int(window[:length])
            end = position + length
            # The segment after a constant starts with a non-digit: the run is whole.
            if kind != ("z" if value == 0 else "l" if value < 2**31 else "b") or not body.startswith(segment, end):
                return False
            values.append(value)
            position = end + len(segment)
        if position != len(body):
            return False
        assert self.query is not None
        return self.query.with_values(values)


class Templates:
    """The templates of one router, by (SOAPAction as sent, charset). Reads take no lock."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str | None], tuple[Template, ...]] = {}
        self._budget: dict[tuple[str, str | None], tuple[int, int]] = {}  # group -> (second, created)
        self._lock = threading.Lock()

    def match(self, action_header: str, charset: str | None, body: bytes) -> tuple[Template, Any] | None:
        group = self._groups.get((action_header, charset))
        if group is None or len(body) > MAX_TEMPLATE_BYTES:
            return None
        for template in group:
            found = template.match(body)
            if found is not False:
                return template, (None if found is True else found)
        return None

    def learn(self, action_header: str, charset: str | None, body: bytes, request: SoapRequest, action: Action,
              target: Target, inline_key: str | None, accepts_lifted: bool) -> None:
        """Keeps a template of a body that was just answered without a fault, when it qualifies."""
        key = (action_header, charset)
        if len(body) > MAX_TEMPLATE_BYTES or not self._spend(key):
            return
        template = make_template(body, request, action, target, inline_key, accepts_lifted)
        if template is None:
            return
        with self._lock:
            kept = [t for t in self._groups.get(key, ()) if t.segments != template.segments]
            self._groups[key] = (template, *kept[:TEMPLATES_PER_GROUP - 1])
            if len(self._groups) > MAX_GROUPS:  # variants of a routed SOAPAction, or of the charset
                self._groups.pop(next(iter(self._groups)))

    def _spend(self, key: tuple[str, str | None]) -> bool:
        second = int(time.monotonic())
        with self._lock:
            last, created = self._budget.get(key, (second, 0))
            if last != second:
                created = 0
            if created >= NEW_TEMPLATES_PER_SECOND:
                return False
            self._budget[key] = (second, created + 1)
            if len(self._budget) > 1024:
                self._budget.pop(next(iter(self._budget)))
            return True

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())


def make_template(body: bytes, request: SoapRequest, action: Action, target: Target, inline_key: str | None,
                  accepts_lifted: bool) -> Template | None:
    """The template of `body`, or None when it does not qualify. For a queryDef, the integer
    literals found in the body (by the same analysis the plan cache runs on the document) must be
    exactly the document's lifted constants, in order; anything else is not templated."""
    api = target.api
    if api in PLAIN_APIS:
        return Template((body,), (), request, action, target, None, inline_key, body_tokens(request))
    if api != QUERY_API or not accepts_lifted or b"&#" in body or len(request.params) != 2:
        return None
    document = codec.first_child(request.params[1])
    text = document_text(document) if document is not None else None
    query = lift_constants(text) if text is not None else None
    if query is None:
        return None
    try:
        body_text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = _RUNS.split(body_text)
    shape, reusable = shape_of(body_text, parts)
    if not reusable:
        return None
    runs = parts[1::2]
    lifted = [index for index in shape if len(runs[index]) <= MAX_LIFTED_DIGITS]
    if [int(runs[index]) for index in lifted] != query.values:
        return None
    segments: list[bytes] = []
    start = 0
    for index in lifted:
        segments.append("".join(parts[start:2 * index + 1]).encode("utf-8"))
        start = 2 * index + 2
    segments.append("".join(parts[start:]).encode("utf-8"))
    # Each constant sits between non-digits (the runs are whole), which is what `match` relies on.
    if any(not s for s in segments) or any(s[:1].isdigit() for s in segments[1:]) \
            or any(s[-1:].isdigit() for s in segments[:-1]):
        return None
    classes = tuple(constant_class(value) for value in query.values)
    return Template(tuple(segments), classes, request, action, target, query, inline_key, body_tokens(request))
