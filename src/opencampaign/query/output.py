"""Result documents shaped as Campaign returns them (data-model.md §3.2, soap-protocol.md §7).

`<recipient-collection><recipient email=".."><folder label=".."/></recipient></recipient-collection>`:
rows are named after the schema, fields land where their xpath (or alias) says — attributes for
`@x`, child elements for each element step, element text for text nodes such as memos.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from ..schema.model import Enumeration
from .values import format_value, js_number
from .xmldata import get_text, read_memo

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_FAMILIES = {
    **dict.fromkeys(("string", "memo", "html", "CDATA", "uuid"), "string"),
    **dict.fromkeys(("byte", "short", "long", "int64"), "integer"),
    **dict.fromkeys(("float", "double", "percent", "money", "timespan"), "float"),
    "datetime": "datetime", "datetimetz": "datetime",
}
# Characters XML 1.0 cannot carry (control characters, lone surrogates) become U+FFFD: a value
# read from a database must never make the document unserialisable.
_SANITIZE = str.maketrans(dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xD800, 0xE000),
                                         0xFFFE, 0xFFFF], "\ufffd"))
_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
_ESCAPE_RE = re.compile('[&<"\n\r\t]')
_LXML_ATTR_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;",
                                   "\r": "&#13;", "\t": "&#9;"})
_LXML_ATTR_RE = re.compile('[&<>"\n\r\t]')


def xml_text(text: str) -> str:
    """`text` without the characters XML cannot carry (a regex search is much cheaper than a
    translate when, as nearly always, there is nothing to replace)."""
    return text.translate(_SANITIZE) if _INVALID_RE.search(text) else text
_ALIAS_RE = re.compile(rf"(?:\.\./)*(?:{_NAME}/)*(?:@{_NAME}|{_NAME})")


@dataclass(frozen=True)
class OutSpec:
    """Where one selected value goes, relative to its row element."""

    steps: tuple[str, ...]  # element steps below the row; leading ".." climb to the parent
    name: str | None  # attribute name; None: the text of the element at `steps`
    type: str  # XTK type used to format the value
    enum: Enumeration | None = None
    analyze: bool = False  # also <name>Name / <name>Label from the enumeration
    xml: str | None = None  # the value is the row's mData memo; read this xpath from it


def spec_from_xpath(xpath: str, xtk_type: str, **kw: Any) -> OutSpec:
    """`@a` / `e/@a` / `../@a` / `e` (text element) -> OutSpec; ValueError when not a valid path."""
    text = xpath.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not _ALIAS_RE.fullmatch(text):
        raise ValueError(f"'{xpath}' is not a valid output path (expected e.g. '@name', 'folder/@label', '../@n')")
    *steps, last = text.split("/")
    if last.startswith("@"):
        return OutSpec(tuple(steps), last[1:], xtk_type, **kw)
    if last == "..":
        raise ValueError(f"'{xpath}' does not name a field")
    return OutSpec((*steps, last), None, xtk_type, **kw)  # the text of element `last`


def formatter(xtk_type: str) -> Callable[[Any], str]:
    """format_cell specialised for one type, with fast paths for what drivers usually return
    (shaping thousands of cells per page is the main cost of a select after the database)."""
    family = _FAMILIES.get(xtk_type)

    def generic(value: Any) -> str:
        return format_cell(xtk_type, value)

    if family == "string":
        return lambda v: xml_text(v) if type(v) is str else generic(v)
    if family == "integer":
        return lambda v: str(v) if type(v) is int else generic(v)
    if family == "float":
        return lambda v: (str(int(v)) if v.is_integer() and abs(v) < 1e15 else js_number(v)) \
            if type(v) is float else generic(v)
    if family == "datetime":
        return lambda v: (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}."
                          f"{v.microsecond // 1000:03d}Z") if type(v) is datetime and v.tzinfo is None else generic(v)
    return generic


def format_cell(xtk_type: str, value: Any) -> str:
    """Campaign's document text of a database value; tolerant of drivers' loose typing."""
    if value is None:
        return ""
    try:
        return xml_text(format_value(xtk_type, value))
    except (ValueError, TypeError, OverflowError):
        if isinstance(value, float):
            return js_number(value)
        return xml_text(str(value))


def target_element(row: etree._Element, steps: tuple[str, ...]) -> etree._Element:
    node = row
    for step in steps:
        if step == "..":
            parent = node.getparent()
            node = parent if parent is not None else node
            continue
        child = node.find(step)
        if child is None:
            child = etree.SubElement(node, step)
        node = child
    return node


def put(row: etree._Element, spec: OutSpec, raw: Any, fmt: Callable[[Any], str] | None = None) -> None:
    if fmt is not None:
        text = fmt(raw)
    elif spec.xml is not None:
        text = get_text(read_memo(raw), spec.xml) or ""
    else:
        text = format_cell(spec.type, raw)
    if spec.name is None:
        if text:  # a null or empty text node gives no element
            target_element(row, spec.steps).text = text
        return
    node = target_element(row, spec.steps)
    node.set(spec.name, text)
    if spec.analyze and spec.enum is not None:
        found = spec.enum.by_value(text)
        if found is not None:
            node.set(f"{spec.name}Name", found.name)
            node.set(f"{spec.name}Label", found.label)


_Field = tuple[int, str, Callable[[Any], str], Enumeration | None]
Converter = Callable[[Any], Any]


class RowShaper:
    """Builds row elements: the attributes of the row and of its one-level child elements in one
    lxml call each (in select order), the rest (text nodes, deeper or `..` paths) through put().

    `converters` ({column index: function}) turn what a raw driver returns into what SQLAlchemy
    would have returned (e.g. SQLite's datetime text), for rows read without SQLAlchemy.
    A shaper is immutable once built and shared by the threads running its plan."""

    def __init__(self, row_name: str, outputs: list[tuple[int, OutSpec]],
                 converters: dict[int, Converter] | None = None):
        self.row_name = row_name
        self.converters = dict(converters or {})
        self.flat: list[_Field] = []
        self.children: dict[str, list[_Field]] = {}
        # child-level work in select order: a tag (its attribute group) or a put()
        self.rest: list[str | tuple[int, OutSpec, Callable[[Any], str]]] = []
        self._families: dict[int, str | None] = {}
        memo: list[tuple[Any, Any]] = [(None, None)]  # (memo text, parsed), read and replaced as one tuple
        for index, spec in outputs:
            fmt = _memo_reader(spec.xml, memo) if spec.xml is not None else formatter(spec.type)
            self._families[index] = None if spec.xml is not None else _FAMILIES.get(spec.type)
            field = (index, spec.name or "", fmt, spec.enum if spec.analyze else None)
            if spec.name is None or len(spec.steps) > 1 or spec.steps[:1] == ("..",):
                self.rest.append((index, spec, fmt))
            elif not spec.steps:
                self.flat.append(field)
            else:
                if spec.steps[0] not in self.children:
                    self.rest.append(spec.steps[0])
                self.children.setdefault(spec.steps[0], []).append(field)
        self._template = self._make_template()
        # One row as text: as the collection's, when no element would get the same attribute twice.
        groups = [self.flat, *self.children.values()]
        unique = all(len({name for _, name, _, _ in group}) == len(group) for group in groups)
        self._single_template = self._template if unique else None

    @staticmethod
    def _attrib(fields: list[_Field], row: Any) -> dict[str, str]:
        attrib: dict[str, str] = {}
        for index, name, fmt, enum in fields:
            attrib[name] = text = fmt(row[index])
            if enum is not None:
                found = enum.by_value(text)
                if found is not None:
                    attrib[f"{name}Name"], attrib[f"{name}Label"] = found.name, found.label
        return attrib

    def convert(self, row: Any) -> Any:
        if not self.converters:
            return row
        values = list(row)
        for index, convert in self.converters.items():
            values[index] = convert(values[index])
        return values

    def collection(self, root_tag: str, rows: list[Any]) -> etree._Element:
        """`<root_tag>` holding one element per row. When every value is an attribute of the row
        or of a one-level child, the document is written as text and parsed once (lxml's parser
        is several times faster than building elements one call at a time)."""
        if self._template is not None and rows:
            try:
                return etree.fromstring(self._collection_text(root_tag, rows))
            except (etree.XMLSyntaxError, ValueError):  # a repeated alias, a value beyond libxml2's limits...
                pass
        root = etree.Element(root_tag)
        for row in rows:
            self.element(root, row)
        return root

    def _collection_text(self, root_tag: str, rows: list[Any]) -> str:
        """The rows written column by column: each column is formatted (and checked for characters
        to escape) in a few C-level passes, then the row texts are interleaved by slice assignment,
        so the Python work per row is constant and small."""
        assert self._template is not None
        segments, fields = self._template
        count = len(rows)
        columns = list(zip(*rows, strict=True)) if fields else []
        stride = len(segments) + len(fields)
        parts: list[Any] = [None] * (count * stride)
        for position, segment in enumerate(segments):
            parts[2 * position::stride] = [segment] * count
        for position, (index, fmt) in enumerate(fields):
            values = columns[index]
            convert = self.converters.get(index)
            if convert is not None:
                values = list(map(convert, values))
            parts[2 * position + 1::stride] = _column_text(values, fmt, self._families.get(index))
        return f"<{root_tag}>{''.join(parts)}</{root_tag}>"

    def _make_template(self) -> tuple[list[str], list[tuple[int, Callable[[Any], str]]]] | None:
        """The row as text segments around one slot per value, when every value is a plain
        attribute of the row or of a one-level child (names are checked XML names)."""
        if not all(isinstance(work, str) for work in self.rest):
            return None
        fields = [*self.flat, *(f for tag in self.rest for f in self.children[str(tag)])]
        if any(enum is not None for *_, enum in fields):
            return None
        segments: list[str] = []
        text = f"<{self.row_name}"
        for _, name, _, _ in self.flat:
            segments.append(f'{text} {name}="')
            text = '"'
        text += ">" if self.rest else "/>"
        for tag in self.rest:
            text += f"<{tag}"
            for _, name, _, _ in self.children[str(tag)]:
                segments.append(f'{text} {name}="')
                text = '"'
            text += "/>"
        if self.rest:
            text += f"</{self.row_name}>"
        segments.append(text)
        return segments, [(index, fmt) for index, _, fmt, _ in fields]

    def element(self, parent: etree._Element, row: Any) -> etree._Element:
        """The element of `row`, appended to `parent`."""
        row = self.convert(row)
        return self._fill(etree.SubElement(parent, self.row_name, self._attrib(self.flat, row)), row)

    def single(self, row: Any) -> etree._Element:
        """The element of `row` as a document root (operation get / getIfExists)."""
        row = self.convert(row)
        return self._fill(etree.Element(self.row_name, self._attrib(self.flat, row)), row)

    def single_text(self, row: Any) -> str | None:
        """`single(row)` serialised, written directly (for transports that send XML text: no
        element built only to be serialised); None when the row is not a flat template (then
        use `single`). The text is what lxml would write for the element, byte for byte."""
        template = self._single_template
        if template is None:
            return None
        segments, fields = template
        row = self.convert(row)
        parts = [segments[0]]
        for (index, fmt), segment in zip(fields, segments[1:], strict=True):
            text = fmt(row[index])
            parts.append(text.translate(_LXML_ATTR_ESCAPE) if _LXML_ATTR_RE.search(text) else text)
            parts.append(segment)
        return "".join(parts)

    def _fill(self, elem: etree._Element, row: Any) -> etree._Element:
        for work in self.rest:
            if isinstance(work, str):
                found = elem.find(work)
                if found is None:
                    etree.SubElement(elem, work, self._attrib(self.children[work], row))
                else:
                    found.attrib.update(self._attrib(self.children[work], row))
            else:
                put(elem, work[1], row[work[0]], work[2])
        return elem


def _memo_reader(xpath: str, last: list[tuple[Any, Any]]) -> Callable[[Any], str]:
    """Reads one field of a row's XML memo. The readers of one shaper share `last`, the memo
    parsed last, so several fields of one row share one parse."""

    def read(raw: Any) -> str:
        entry = last[0]  # one read: another thread running the same plan may replace it meanwhile
        if entry[0] is raw:
            parsed = entry[1]
        else:
            parsed = read_memo(raw)
            last[0] = (raw, parsed)
        return get_text(parsed, xpath) or ""

    return read


def _column_text(values: Any, fmt: Callable[[Any], str], family: str | None) -> Any:
    """The escaped texts of one column. Fast paths: strings that need neither replacement nor
    escaping are used as they are; integers are str()."""
    if family == "string":
        try:
            joined = "".join(values)  # TypeError when a value is null or not a string
        except TypeError:
            pass
        else:
            if _plain(joined):
                return values
    elif family == "integer" and {*map(type, values)} == {int}:
        return list(map(str, values))
    texts = list(map(fmt, values))
    return texts if _plain("".join(texts)) else [_escape(t) for t in texts]


# Bytes of UTF-8 text that need no replacement (xml_text) nor escape (_escape): deleting them
# leaves nothing when a whole column can be used as it is.
_PLAIN_BYTES = bytes(b for b in range(0x20, 0x100) if b not in b'&<"')


def _plain(text: str) -> bool:
    """True when `text` holds no character to replace or escape (one C pass, ~10x faster than
    the regex searches)."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return not data.translate(None, _PLAIN_BYTES) and "\ufffe" not in text and "\uffff" not in text


def _escape(value: str) -> str:
    return value.translate(_ESCAPE) if _ESCAPE_RE.search(value) else value


def count_document(schema_name: str, count: int) -> etree._Element:
    return etree.Element(schema_name, count=str(count))
