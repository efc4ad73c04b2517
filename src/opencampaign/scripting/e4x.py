"""E4X to plain JavaScript, for QuickJS (which has no E4X).

Translations (the XML object model they rely on is in `prelude.py`):
  <a b={x}>{y}</a>         -> __xml("<a b=\"" + __xmlAttr((x)) + "\">" + __xmlText((y)) + "</a>")
  x.@name, x..name, x.*    -> x["@name"], x["..name"], x["*"]   (Proxy traps read and write them)
  for each (var v in e)    -> for (var v of __each(e))
  x.(@id == 1)             -> x.__filter(function(){ ... })     (predicate filters)
The time limit is enforced by `__chk()` calls inserted in loop conditions and function bodies, because
QuickJS's own time limit forbids host callbacks; `throw x` becomes `throw __ln(line), x` so that thrown
strings keep their line. Insertions never add or remove lines, so line numbers
of errors are those of the source; `same_length()` also keeps columns, to locate syntax errors exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

PUNCT = sorted([">>>=", "...", "===", "!==", "**=", "<<=", ">>=", ">>>", "??", "?.", "=>", "==", "!=", "<=", ">=", "&&", "||", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>", "**", "{", "}", "(", ")", "[", "]", ";", ",", "<", ">", "+", "-", "*", "/", "%", "&", "|", "^", "!", "~", "?", ":", "=", ".", "@", "#"],
               key=len, reverse=True)
EXPR_KEYWORDS = {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do",
                 "else", "yield", "await"}
IDENT_RE = re.compile(r"[A-Za-z_$\u0080-\uffff][\w$\u0080-\uffff]*")
NUM_RE = re.compile(r"0[xX][0-9a-fA-F_]+n?|0[bBoO][0-9_]+n?|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?n?")
XML_START_RE = re.compile(r"<(?:[A-Za-z_{]|>|!--|!\[CDATA\[)")
PUNCT_RE = re.compile("|".join(re.escape(p) for p in PUNCT))
CACHE_SIZE = 512


class E4XSyntaxError(SyntaxError):
    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"{message} (line {line}, column {column})")
        self.message, self.line, self.column = message, line, column


@dataclass
class Tok:
    kind: str  # ws comment str tmpl regex num ident punct xml
    text: str
    pos: int


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


def _expr_start(prev: Tok | None) -> bool:
    if prev is None:
        return True
    if prev.kind == "punct":
        return prev.text not in (")", "]")
    if prev.kind == "ident":
        return prev.text in EXPR_KEYWORDS
    return False


def _skip_string(src: str, i: int) -> int:
    q = src[i]
    i += 1
    while i < len(src) and src[i] != q:
        if src[i] == "\\":
            i += 1
        elif src[i] == "\n":
            break
        i += 1
    return i + 1


def _skip_template(src: str, i: int) -> int:
    i += 1
    while i < len(src) and src[i] != "`":
        if src[i] == "\\":
            i += 2
            continue
        if src.startswith("${", i):
            i = _match_brace(src, i + 1) + 1
            continue
        i += 1
    return i + 1


def _match_brace(src: str, i: int) -> int:
    """Index of the `}` closing the `{` at i (skipping strings, comments, templates)."""
    depth = 0
    while i < len(src):
        c = src[i]
        if c in "'\"":
            i = _skip_string(src, i)
            continue
        if c == "`":
            i = _skip_template(src, i)
            continue
        if src.startswith("//", i):
            i = src.find("\n", i) if "\n" in src[i:] else len(src)
            continue
        if src.startswith("/*", i):
            i = src.find("*/", i + 2) + 2 if "*/" in src[i + 2:] else len(src)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise E4XSyntaxError("unbalanced '{'", *_line_col(src, i - 1))


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    prev: Tok | None = None
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        start = i
        if c.isspace():
            while i < n and src[i].isspace():
                i += 1
            toks.append(Tok("ws", src[start:i], start))
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            kind = "comment"
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise E4XSyntaxError("unterminated comment", *_line_col(src, i))
            i = j + 2
            kind = "comment"
        elif c in "'\"":
            i = _skip_string(src, i)
            kind = "str"
        elif c == "`":
            i = _skip_template(src, i)
            kind = "tmpl"
        elif c == "/" and _expr_start(prev):
            i = _skip_regex(src, i)
            kind = "regex"
        elif c == "<" and _expr_start(prev) and XML_START_RE.match(src, i):
            i = XmlScanner(src, i).scan_literal()
            kind = "xml"
        elif m := IDENT_RE.match(src, i):
            i = m.end()
            kind = "ident"
        elif (m := NUM_RE.match(src, i)) and m.end() > i and (c.isdigit() or (c == "." and src[i + 1:i + 2].isdigit())):
            i = m.end()
            kind = "num"
        elif m := PUNCT_RE.match(src, i):
            i = m.end()
            kind = "punct"
        else:
            raise E4XSyntaxError(f"unexpected character {c!r}", *_line_col(src, i))
        tok = Tok(kind, src[start:i], start)
        toks.append(tok)
        if kind != "comment":
            prev = tok
    return toks


def _skip_regex(src: str, i: int) -> int:
    i += 1
    in_class = False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "\n":
            raise E4XSyntaxError("unterminated regular expression", *_line_col(src, i))
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            i += 1
            while i < len(src) and (src[i].isalnum() or src[i] in "_$"):
                i += 1
            return i
        i += 1
    raise E4XSyntaxError("unterminated regular expression", *_line_col(src, i))


class XmlScanner:
    """Scans one XML literal; `parts` are ("lit", text), ("attr", js) and ("text", js) pieces."""

    NAME = re.compile(r"[A-Za-z_][\w.:-]*")

    def __init__(self, src: str, pos: int):
        self.src, self.i = src, pos
        self.parts: list[tuple[str, str]] = []

    def fail(self, msg: str) -> E4XSyntaxError:
        return E4XSyntaxError(f"XML literal: {msg}", *_line_col(self.src, self.i))

    def lit(self, text: str) -> None:
        if self.parts and self.parts[-1][0] == "lit":
            self.parts[-1] = ("lit", self.parts[-1][1] + text)
        else:
            self.parts.append(("lit", text))

    def expr(self) -> str:
        end = _match_brace(self.src, self.i)
        js = self.src[self.i + 1:end]
        self.i = end + 1
        return js

    def scan_literal(self) -> int:
        if self.src.startswith("<>", self.i):  # XMLList literal
            self.i += 2
            self.content("")
            return self.i
        self.element()
        return self.i

    def element(self) -> None:
        src = self.src
        self.i += 1
        m = self.NAME.match(src, self.i)
        if not m:
            raise self.fail("element name expected")
        name = m.group()
        self.lit("<" + name)
        self.i = m.end()
        while True:
            ws = re.compile(r"\s*").match(src, self.i)
            assert ws is not None
            self.i = ws.end()
            if src.startswith("/>", self.i):
                self.lit("/>")
                self.i += 2
                return
            if src.startswith(">", self.i):
                self.lit(">")
                self.i += 1
                self.content(name)
                return
            m = self.NAME.match(src, self.i)
            if not m:
                raise self.fail(f"attribute or '>' expected in <{name}>")
            self.i = m.end()
            eq = re.compile(r"\s*=\s*").match(src, self.i)
            if not eq or eq.end() == self.i:
                raise self.fail(f"'=' expected after attribute {m.group()}")
            self.i = eq.end()
            self.lit(f' {m.group()}="')
            q = src[self.i:self.i + 1]
            if q in ("'", '"'):
                end = src.find(q, self.i + 1)
                if end < 0:
                    raise self.fail("unterminated attribute value")
                self.lit(src[self.i + 1:end].replace('"', "&quot;"))
                self.i = end + 1
            elif q == "{":
                self.parts.append(("attr", self.expr()))
            else:
                raise self.fail("attribute value expected")
            self.lit('"')

    def content(self, name: str) -> None:
        src = self.src
        while self.i < len(src):
            if src.startswith("</", self.i):
                end = src.find(">", self.i)
                closing = src[self.i + 2:end].strip()
                if closing != name:
                    raise self.fail(f"</{closing}> does not close <{name}>")
                self.lit(f"</{name}>" if name else "")
                self.i = end + 1
                return
            if src.startswith("<!--", self.i):
                end = src.find("-->", self.i)
                self.i = end + 3  # comments are dropped
                continue
            if src.startswith("<![CDATA[", self.i):
                end = src.find("]]>", self.i)
                self.lit(src[self.i:end + 3])
                self.i = end + 3
                continue
            c = src[self.i]
            if c == "<":
                self.element()
            elif c == "{":
                self.parts.append(("text", self.expr()))
            else:
                j = self.i
                while j < len(src) and src[j] not in "<{":
                    j += 1
                self.lit(src[self.i:j])
                self.i = j
        raise self.fail(f"<{name}> is not closed")


def _xml_js(src: str, start: int) -> str:
    scanner = XmlScanner(src, start)
    scanner.scan_literal()
    pieces: list[str] = []
    for kind, text in scanner.parts:
        if kind == "lit":
            lines = text.split("\n")
            pieces.append(" +\n".join(json.dumps(ln + ("\n" if k < len(lines) - 1 else "")) for k, ln in enumerate(lines)))
        else:
            helper = "__xmlAttr" if kind == "attr" else "__xmlText"
            pieces.append(f"{helper}(({translate(text, instrument=False)}))")
    return "__xml(" + " + ".join(pieces or ['""']) + ")"


class _Translator:
    def __init__(self, src: str, instrument: bool, check_only: bool):
        self.src = src
        self.toks = tokenize(src)
        self.instrument = instrument and not check_only
        self.check_only = check_only
        self.out: list[str] = [t.text for t in self.toks]

    def next_sig(self, k: int) -> int:
        k += 1
        while k < len(self.toks) and self.toks[k].kind in ("ws", "comment"):
            k += 1
        return k

    def tok(self, k: int) -> Tok | None:
        return self.toks[k] if k < len(self.toks) else None

    def match(self, k: int) -> int:
        """Index of the bracket closing the one at k."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        open_, close = self.toks[k].text, pairs[self.toks[k].text]
        depth = 0
        for j in range(k, len(self.toks)):
            t = self.toks[j]
            if t.kind == "punct" and t.text == open_:
                depth += 1
            elif t.kind == "punct" and t.text == close:
                depth -= 1
                if depth == 0:
                    return j
        raise E4XSyntaxError(f"unbalanced '{open_}'", *_line_col(self.src, self.toks[k].pos))

    def run(self) -> str:
        toks = self.toks
        for k, t in enumerate(toks):
            if t.kind == "xml":
                self.out[k] = self._blank_xml(t.text) if self.check_only else _xml_js(self.src, t.pos)
            elif t.kind == "punct" and t.text == ".":
                self._member(k)
            elif t.kind == "ident" and t.text == "for":
                self._for(k)
            elif t.kind == "ident" and t.text == "throw" and self.instrument and not self._after_dot(k) \
                    and (n := self.tok(self.next_sig(k))) is not None and n.text not in (":", "(", ",", ")", "="):
                self.out[k] = f"throw __ln({self.src.count(chr(10), 0, t.pos) + 1}),"
            elif t.kind == "ident" and t.text == "while" and self.instrument:
                j = self.next_sig(k)
                if (p := self.tok(j)) and p.text == "(":
                    self.out[j] = "(__chk() && ("
                    self.out[self.match(j)] = "))"
            elif self.instrument and ((t.kind == "ident" and t.text == "function") or (t.kind == "punct" and t.text == "=>")):
                self._function_body(k)
        return "".join(self.out)

    def _after_dot(self, k: int) -> bool:
        j = k - 1
        while j >= 0 and self.toks[j].kind in ("ws", "comment"):
            j -= 1
        return j >= 0 and self.toks[j].text in (".", "?.")

    @staticmethod
    def _blank_xml(text: str) -> str:
        return "0" + "".join("\n" if c == "\n" else " " for c in text[1:])

    def _member(self, k: int) -> None:
        toks = self.toks
        nxt = self.tok(k + 1)
        if nxt is None:
            return
        if nxt.text == "@" and (name := self.tok(k + 2)) is not None and (name.kind == "ident" or name.text == "*"):
            self.out[k], self.out[k + 1], self.out[k + 2] = ("", "", f'["@{name.text}"]') if not self.check_only else (".", "$", name.text)
        elif nxt.text == "." and (name := self.tok(k + 2)) is not None and name.kind == "ident" and toks[k - 1].text != ".":
            self.out[k], self.out[k + 1], self.out[k + 2] = ("", "", f'["..{name.text}"]') if not self.check_only else (".", "$", name.text)
        elif nxt.text == "*" and not self.check_only:
            self.out[k], self.out[k + 1] = "", '["*"]'
        elif nxt.text == "(" and not self.check_only and toks[k - 1].kind != "ws":
            self._filter(k)

    def _filter(self, k: int) -> None:
        """x.(pred) -> x.__filter(function(){ with(this) return (pred); }) with bare @a as this["@a"]."""
        end = self.match(k + 1)
        inner = "".join(self.out[k + 2:end])
        inner = re.sub(r"(?<![\w$.\]])@([A-Za-z_][\w]*)", r'this["@\1"]', inner)
        for j in range(k + 1, end + 1):
            self.out[j] = ""
        self.out[k] = f'["__filter"](function(){{ with (this) return ({inner}); }})'

    def _for(self, k: int) -> None:
        j = self.next_sig(k)
        t = self.tok(j)
        is_each = t is not None and t.text == "each"
        if is_each:
            self.out[j] = " " * 4 if self.check_only else ""
            j = self.next_sig(j)
            t = self.tok(j)
        if t is None or t.text != "(":
            return
        end = self.match(j)
        depth, semis, in_at = 0, [], None
        for m in range(j + 1, end):
            tm = self.toks[m]
            if tm.kind == "punct" and tm.text in "([{":
                depth += 1
            elif tm.kind == "punct" and tm.text in ")]}":
                depth -= 1
            elif depth == 0 and tm.text == ";":
                semis.append(m)
            elif depth == 0 and tm.kind == "ident" and tm.text == "in" and in_at is None:
                in_at = m
        if is_each and in_at is not None and not self.check_only:
            self.out[in_at] = "of __each("
            self.out[end] = "))"
        elif self.instrument and len(semis) == 2:
            a, b = semis
            if self.next_sig(a) == b:
                self.out[a] = "; __chk()"
            else:
                self.out[a] = "; __chk() && ("
                self.out[b] = ");"

    def _function_body(self, k: int) -> None:
        j = self.next_sig(k)
        if self.toks[k].text == "function":
            while (t := self.tok(j)) is not None and t.text != "(":
                j = self.next_sig(j)
            if self.tok(j) is None:
                return
            j = self.next_sig(self.match(j))
        t = self.tok(j)
        if t is not None and t.text == "{":
            self.out[j] = "{__chk();"


def translate(src: str, *, instrument: bool = True) -> str:
    """E4X source to plain JavaScript, with `__chk()` time checks and `throw` lines when `instrument`."""
    return _Translator(src, instrument, False).run()


_CACHE: OrderedDict[tuple[bytes, bool], str] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def translate_cached(src: str, *, instrument: bool = True) -> str:
    """`translate` through a bounded LRU keyed by a digest of the source (errors are not cached)."""
    key = (hashlib.blake2b(src.encode("utf-8", "surrogatepass"), digest_size=16).digest(), instrument)
    with _CACHE_LOCK:
        code = _CACHE.get(key)
        if code is not None:
            _CACHE.move_to_end(key)
            return code
    code = translate(src, instrument=instrument)
    with _CACHE_LOCK:
        _CACHE[key] = code
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return code


def same_length(src: str) -> str:
    """The source with E4X replaced by same-length plain JS, only to locate syntax errors exactly."""
    return _Translator(src, False, True).run()
