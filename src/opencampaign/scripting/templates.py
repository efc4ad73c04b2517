"""Personalization templates: `<%= expr %>`, `<% code %>`, `<%@ include view='name' %>`,
`<%@ include option='Name' %>`, `<%@ value object='delivery' xpath='@label' %>`,
`<%@ foreach object='delivery' xpath='items' item='it' %>...<%@ end %>`.

A template is compiled once: to Python when it only inserts fields (`<%= recipient.a.b %>`), otherwise to
one JS function rendering a whole batch per engine call. Both follow JavaScript's rules: a missing field
renders as "", reading a field of a missing object fails that recipient only, with the template line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, overload

import sqlalchemy as sa

from . import e4x
from .engine import ENGINE, Limits, LogEntry, ScriptError

TEMPLATE_LIMITS = Limits(cpu_seconds=5.0)  # Campaign's default personalization time-out
OBJECTS = ("recipient", "delivery", "targetData", "message")
_TAG = re.compile(r"<%(@|=)?(.*?)%>", re.S)
_DIRECTIVE = re.compile(r"\s*(include|value|foreach|end)\b\s*(.*)", re.S)
_ARG = re.compile(r"""(\w+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")
_FIELD = re.compile(r"\s*(recipient|delivery|targetData|message)((?:\.[A-Za-z_$][\w$]*)+)\s*")
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
BATCH = 1000


@dataclass(slots=True)
class Rendered:
    text: str | None
    error: ScriptError | None = None


class RenderedBatch(Sequence[Rendered]):
    """`render`'s answer: a sequence of Rendered made on access (100k retained objects would cost more
    in garbage-collector passes than the rendering itself)."""

    __slots__ = ("items",)

    def __init__(self, items: list[str | ScriptError]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> Rendered: ...
    @overload
    def __getitem__(self, i: slice) -> list[Rendered]: ...

    def __getitem__(self, i: int | slice) -> Rendered | list[Rendered]:
        if isinstance(i, slice):
            return [_rendered(x) for x in self.items[i]]
        return _rendered(self.items[i])

    def __iter__(self) -> Iterator[Rendered]:
        return map(_rendered, self.items)


def _rendered(x: str | ScriptError) -> Rendered:
    return Rendered(x) if x.__class__ is str else Rendered(None, x)  # type: ignore[arg-type]


class TemplateError(ValueError):
    pass


class _NullHost:
    def __init__(self) -> None:
        self.logs: list[LogEntry] = []

    def handle(self, op: str, args: Any) -> Any:
        raise TemplateError(f"'{op}' is not available in this template")


def _xpath_path(xpath: str) -> str:
    return "".join("." + p.lstrip("@") for p in xpath.split("/") if p and p != ".")


def _expand(text: str, include: Callable[[str, str], str | None], depth: int = 0) -> tuple[str, list[int]]:
    """Expand the `<%@ %>` instructions; returns the text and, per line, its line in `text`."""
    out: list[str] = []
    origin: list[int] = []
    line = 1
    pos = 0
    loops: list[int] = []

    def emit(chunk: str, at: int | None = None) -> None:
        nonlocal line
        for k, piece in enumerate(chunk.split("\n")):
            if k:
                origin.append(at if at is not None else line + k)
            out.append(("\n" if k else "") + piece)
        if at is None:
            line += chunk.count("\n")

    origin.append(1)
    for m in _TAG.finditer(text):
        if m.group(1) != "@":
            continue
        emit(text[pos:m.start()])
        d = _DIRECTIVE.match(m.group(2))
        if not d:
            raise TemplateError(f"line {line}: unknown directive <%@{m.group(2)}%>")
        args = {a.group(1): a.group(2) if a.group(2) is not None else a.group(3) for a in _ARG.finditer(d.group(2))}
        if d.group(1) == "value":
            emit(f"<%= {args.get('object', 'delivery')}{_xpath_path(args.get('xpath', ''))} %>", at=line)
        elif d.group(1) == "foreach":
            obj, xpath = args.get("object", ""), args.get("xpath", "")
            item = args.get("item") or (xpath.split("/")[-1].lstrip("@") if xpath.strip(". ") else "item")
            if not _IDENT.fullmatch(obj.split(".")[0] or "-") or not _IDENT.fullmatch(item):
                raise TemplateError(f"line {line}: <%@ foreach %> needs object='name' and a valid item name")
            n = len(loops)
            loops.append(line)
            emit(f"<% for (var __i{n} = 0, __a{n} = Array.from(__each({obj}{_xpath_path(xpath)})); "
                 f"__i{n} < __a{n}.length; __i{n}++) {{ var {item} = __a{n}[__i{n}]; %>", at=line)
        elif d.group(1) == "end":
            if not loops:
                raise TemplateError(f"line {line}: <%@ end %> without <%@ foreach %>")
            loops.pop()
            emit("<% } %>", at=line)
        elif "view" in args or "option" in args:
            kind, name = ("view", args["view"]) if "view" in args else ("option", args["option"])
            body = include(kind, name)
            if body is None:
                raise TemplateError(f"line {line}: personalization block '{name}' not found")
            if kind == "view" and depth < 10:
                body, _ = _expand(body, include, depth + 1)
            emit(body, at=line)
        else:
            raise TemplateError(f"line {line}: unsupported include {m.group(2).strip()!r}")
        line += m.group(0).count("\n")
        pos = m.end()
    if loops:
        raise TemplateError(f"line {loops[-1]}: <%@ foreach %> is not closed by <%@ end %>")
    emit(text[pos:])
    return "".join(out), origin


def _segments(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, line) with kind text, expr or code; line is the line of the segment's start."""
    segs: list[tuple[str, str, int]] = []
    pos = 0
    for m in _TAG.finditer(text):
        if m.start() > pos:
            segs.append(("text", text[pos:m.start()], text.count("\n", 0, pos) + 1))
        segs.append(("expr" if m.group(1) == "=" else "code", m.group(2), text.count("\n", 0, m.start()) + 1))
        pos = m.end()
    if pos < len(text):
        segs.append(("text", text[pos:], text.count("\n", 0, pos) + 1))
    return segs


# The batch loop is ours: appended after translation, so only the per-recipient function entry and the
# template's own loops carry CPU checks. One string crosses the boundary: the texts joined by U+0001, errors
# as U+0002 + JSON, then the error count; `b.json` asks for a JSON array, errors as [info] (for texts holding
# U+0001/U+0002).
_JS_BATCH = (" return function (b) { var r = b.r, t = b.t, d = b.d, m = b.m, n = r.length, ne = 0, out = new Array(n + 1);"
             " for (var i = 0; i < n; i++) { try { out[i] = __t(r[i], d, t ? t[i] || {} : {}, m); }"
             " catch (e) { out[i] = b.json ? [__errInfo(e)] : '\\u0002' + __errInfo(e); ne++; } }"
             " out[n] = ne; return b.json ? JSON.stringify(out) : out.join('\\u0001'); }; })()")


def _js_source(segs: list[tuple[str, str, int]]) -> str:
    body = []
    for kind, s, _ in segs:
        if kind == "text":
            body.append(f"__o += {json.dumps(s)};" + "\n" * s.count("\n"))
        elif kind == "expr":  # String(v), null/undefined as "", inlined (no call per field)
            body.append(f"__o += ((__v = ({s})) == null ? '' : typeof __v === 'string' ? __v : String(__v));")
        else:
            body.append(s + "\n;" if "//" in s.split("\n")[-1] else s + ";")
    head = "(function () { var __t = function (recipient, delivery, targetData, message) { var __o = '', __v;"
    return e4x.translate(head + "".join(body) + "\nreturn __o; };") + _JS_BATCH


# ---- Python fast path (field-only templates), with JavaScript's conversions and failures
def _js_number(v: float) -> str:
    if not math.isfinite(v):
        return ""  # cannot cross JSON: null on the JS path too
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    r = repr(v)
    if "e" not in r:
        return r
    mant, exp = r.split("e")
    if -7 < int(exp) < 0:
        return f"{Decimal(r):f}"
    return f"{mant}e{'+' if int(exp) > 0 else '-'}{abs(int(exp))}"


def js_string(v: Any) -> str:
    """What `__str(v)` gives in a template (String(v), with null/undefined as "")."""
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, float):
        return _js_number(v)
    if isinstance(v, (list, tuple)):
        return ",".join(js_string(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)


_MISSING = object()


def _js_get(obj: Any, name: str) -> Any:
    if obj is None or obj is _MISSING:
        raise TypeError(f"cannot read property '{name}' of {'null' if obj is None else 'undefined'}")
    if isinstance(obj, dict):
        return obj.get(name, _MISSING)
    if name == "length" and isinstance(obj, (str, list, tuple)):
        return len(obj)
    return _MISSING


class _PyTemplate:
    """Field-only template: one generated list comprehension per batch; a recipient it cannot render is
    redone by the exact (slow) evaluator, which gives JavaScript's result or error."""

    def __init__(self, fields: list[tuple[str, list[str], int] | str]):
        self.fields = fields
        fast, tolerant = [], []  # subscripts only (a missing key raises), and .get() for the last step
        for f in fields:
            if isinstance(f, str):
                fast.append(f.replace("{", "{{").replace("}", "}}"))
                tolerant.append(fast[-1])
                continue
            obj, path, _ = f
            head = obj + "".join(f"[{p!r}]" for p in path[:-1])
            for out, expr in ((fast, f"{head}[{path[-1]!r}]"), (tolerant, f"{head}.get({path[-1]!r})")):
                out.append(f"{{(_v if (_v := {expr}).__class__ is str else _conv(_v))}}")
        fs, ts = "f" + json.dumps("".join(fast)), "f" + json.dumps("".join(tolerant))
        code = (f"def one(recipient, delivery, targetData, message):\n    return {ts}\n"
                f"def many(rs, delivery, message, targetData={{}}):\n    return [{fs} for recipient in rs]\n"
                f"def pairs(rs, ts, delivery, message):\n    return [{fs} for recipient, targetData in zip(rs, ts)]\n")
        scope: dict[str, Any] = {"_conv": js_string}
        exec(compile(code, "<template>", "exec"), scope)  # noqa: S102 - generated from field paths only
        self.one, self.many, self.pairs = scope["one"], scope["many"], scope["pairs"]

    def texts(self, recipients: list[dict[str, Any]], targets: list[dict[str, Any]] | None,
              delivery: dict[str, Any], message: dict[str, Any]) -> list[str | ScriptError]:
        try:
            if targets is None:
                return self.many(recipients, delivery, message)  # type: ignore[no-any-return]
            return self.pairs(recipients, targets, delivery, message)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - some recipient needs the exact evaluator
            pass
        out: list[str | ScriptError] = []
        for k, r in enumerate(recipients):
            t = targets[k] if targets is not None and k < len(targets) else {}
            try:
                out.append(self.one(r, delivery, t, message))
            except Exception:  # noqa: BLE001
                out.append(self.exact({"recipient": r, "delivery": delivery, "targetData": t, "message": message}))
        return out

    def exact(self, objs: dict[str, Any]) -> str | ScriptError:
        pieces = []
        for f in self.fields:
            if isinstance(f, str):
                pieces.append(f)
                continue
            obj, path, line = f
            v = objs[obj]
            try:
                for p in path:
                    v = _js_get(v, p)
            except TypeError as exc:
                return ScriptError("runtime", f"TypeError: {exc}", line)
            pieces.append("" if v is _MISSING else js_string(v))
        return "".join(pieces)


def _py_template(segs: list[tuple[str, str, int]]) -> _PyTemplate | None:
    fields: list[tuple[str, list[str], int] | str] = []
    for kind, s, line in segs:
        if kind == "code":
            return None
        if kind == "text":
            fields.append(s)
            continue
        m = _FIELD.fullmatch(s)
        if not m:
            return None
        fields.append((m.group(1), m.group(2).split(".")[1:], line))
    return _PyTemplate(fields)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


class Template:
    """A compiled template. `render` takes recipients (dicts) and gives one `Rendered` per recipient;
    `render_texts` gives the texts (None for a failed recipient)."""

    def __init__(self, text: str, *, include: Callable[[str, str], str | None] | None = None,
                 limits: Limits = TEMPLATE_LIMITS, python: bool = True):
        expanded, self.origin = _expand(text, include or (lambda kind, name: None))
        segs = _segments(expanded)
        self.limits = limits
        self.python = _py_template(segs) if python else None
        self.js = None if self.python else _js_source(segs)
        self.key = "tpl\x00" + hashlib.sha1((self.js or "").encode()).hexdigest()

    @property
    def uses_js(self) -> bool:
        return self.python is None

    def render(self, recipients: list[dict[str, Any]], *, delivery: dict[str, Any] | None = None,
               target_data: list[dict[str, Any]] | None = None, message: dict[str, Any] | None = None,
               host: Any = None) -> RenderedBatch:
        return RenderedBatch(self._render(recipients, delivery, target_data, message, host))

    def render_texts(self, recipients: list[dict[str, Any]], *, delivery: dict[str, Any] | None = None,
                     target_data: list[dict[str, Any]] | None = None, message: dict[str, Any] | None = None,
                     host: Any = None) -> list[str | None]:
        return [r if r.__class__ is str else None  # type: ignore[misc]
                for r in self._render(recipients, delivery, target_data, message, host)]

    def _render(self, recipients: list[dict[str, Any]], delivery: dict[str, Any] | None,
                target_data: list[dict[str, Any]] | None, message: dict[str, Any] | None,
                host: Any) -> list[str | ScriptError]:
        delivery, message = delivery or {}, message or {}
        if self.python is not None:
            out = self.python.texts(recipients, target_data, delivery, message)
            for r in out:
                if isinstance(r, ScriptError):
                    self._locate(r)
            return out
        out = []
        for start in range(0, len(recipients), BATCH):
            chunk = recipients[start:start + BATCH]
            tds = target_data[start:start + BATCH] if target_data else None
            out.extend(self._render_js(chunk, tds, delivery, message, host or _NullHost()))
        return out

    def _render_js(self, chunk: list[dict[str, Any]], tds: list[dict[str, Any]] | None, delivery: dict[str, Any],
                   message: dict[str, Any], host: Any, as_json: bool = False) -> list[str | ScriptError]:
        assert self.js is not None
        if not chunk:
            return []
        batch = {"r": chunk, "t": tds, "d": delivery, "m": message, "json": as_json}
        try:
            arg = json.dumps(batch, default=str, allow_nan=False)
        except ValueError:  # NaN / Infinity are not JSON: null, as on the Python path
            arg = json.dumps(_finite(batch), default=str)
        try:
            results = ENGINE.invoke(self.key, self.js, arg, host, limits=self.limits, raw_arg=True)
        except ScriptError as exc:
            self._locate(exc)
            return [exc for _ in chunk]
        parts = json.loads(results) if as_json else results.split("\x01")
        errors = int(parts.pop()) if len(parts) == len(chunk) + 1 else -1
        if not as_json and errors != sum(1 for p in parts if p.startswith("\x02")):
            return self._render_js(chunk, tds, delivery, message, host, as_json=True)  # texts hold U+0001/2
        out: list[str | ScriptError] = []
        for res in parts:
            if as_json and isinstance(res, list):
                res = "\x02" + res[0]
            elif as_json or not res.startswith("\x02"):
                out.append(res)
                continue
            out.append(self._locate(ENGINE.error_from(json.loads(res[1:]), "", False, self.limits)))
        return out

    def _locate(self, err: ScriptError) -> ScriptError:
        """Map the error's line back to the template (before include expansion)."""
        err.line = self.origin[err.line - 1] if 0 < err.line <= len(self.origin) else err.line
        err.args = (f"{err.message} (template line {err.line})" if err.line else err.message,)
        return err


def instance_includes(instance: Any) -> Callable[[str, str], str | None]:
    """Personalization blocks are `xtk:entity` rows with entitySchema 'nms:includeView' (data = the block);
    options come from xtk:option."""
    storage = instance.storage

    def include(kind: str, name: str) -> str | None:
        if kind == "option":
            table = storage.table("xtk:option")
            with storage.engine_for("xtk:option").connect() as conn:
                row = conn.execute(sa.select(table.c.sStringValue, table.c.mMemoValue).where(table.c.sName == name)).first()
            return None if row is None else str(row[0] or row[1] or "")
        table = storage.table("xtk:entity")
        with storage.engine_for("xtk:entity").connect() as conn:
            code = conn.execute(sa.select(table.c.mData).where(table.c.sEntitySchema == "nms:includeView",
                                                              table.c.sName == name)).scalar()
        return None if code is None else str(code)

    return include


def compile_template(text: str, *, instance: Any = None, include: Callable[[str, str], str | None] | None = None,
                     limits: Limits = TEMPLATE_LIMITS, python: bool = True) -> Template:
    """`python=False` forces the JS path (the Python one gives the same results, faster)."""
    if include is None and instance is not None:
        include = instance_includes(instance)
    return Template(text, include=include, limits=limits, python=python)
