"""XML <-> JSON the way acc-js-sdk 1.2.0 converts (DomUtil.toJSON / fromJSON, soap-protocol.md §6).

SimpleJson (the SDK default) and BadgerFish (deprecated). The wire is always XML; these serve
JSON-speaking entry points (queryDef given as JSON, REST, scripts) and tests that compare with
what an SDK user sees.

One deliberate difference: the SDK applies ``"$"`` with DOM ``textContent``, which deletes any
child element created before it. Here ``"$"`` becomes the element's leading text and children are
kept, so XML -> JSON -> XML -> JSON is stable for mixed content too.
"""

from __future__ import annotations

import math
import xml.parsers.expat
from typing import Any, Literal

from lxml import etree

from opencampaign.query.values import js_number

Representation = Literal["SimpleJson", "BadgerFish"]
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_NODES = 250_000  # elements + attributes; a 10,000-row query with 20 fields fits

_XML_NS = "http://www.w3.org/XML/1998/namespace"
# Characters ECMAScript String#trim removes. str.strip() differs: it also removes U+0085 and
# U+001C..U+001F but keeps U+FEFF.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_COLLECTION = "-collection"


class RepresentationError(ValueError):
    """The document cannot be converted (too deep, too large, or not representable)."""


class _Budget:
    def __init__(self, max_depth: int, max_nodes: int):
        self.max_depth, self.max_nodes, self.nodes = max_depth, max_nodes, 0

    def enter(self, depth: int, nodes: int) -> None:
        """Account for an element at ``depth`` (root = 1) plus its attributes."""
        if depth > self.max_depth:
            raise RepresentationError(f"document is nested deeper than {self.max_depth} levels")
        self.nodes += nodes
        if self.nodes > self.max_nodes:
            raise RepresentationError(f"document has more than {self.max_nodes} nodes")


# --- XML -> JSON ---------------------------------------------------------------------------------


def xml_to_simplejson(
    elem: etree._Element, *, max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_MAX_NODES
) -> dict[str, Any]:
    """SimpleJson content of ``elem`` (its own name is dropped); attribute values stay strings."""
    return _ToJson(elem, "SimpleJson", _Budget(max_depth, max_nodes)).convert(elem, 1, True)


def xml_to_badgerfish(
    elem: etree._Element, *, max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_MAX_NODES
) -> dict[str, Any]:
    """BadgerFish content of ``elem``: attributes ``@name``, all text untrimmed in ``$``."""
    return _ToJson(elem, "BadgerFish", _Budget(max_depth, max_nodes)).convert(elem, 1, True)


def _name(elem: etree._Element) -> str:
    """DOM nodeName: ``prefix:local`` or ``local``."""
    tag = elem.tag
    if tag[0] != "{":
        return tag
    local = tag.partition("}")[2]
    return f"{elem.prefix}:{local}" if elem.prefix else local


def _attribute_name(key: str, nsmap: dict[str | None, str]) -> str:
    if key[0] != "{":
        return key
    uri, _, local = key[1:].partition("}")
    if uri == _XML_NS:
        return "xml:" + local
    prefix = next((p for p, u in nsmap.items() if u == uri and p), None)
    return f"{prefix}:{local}" if prefix else local


def _js_trim(text: str | None) -> str:
    return text.strip(_JS_SPACE) if text else ""


def _declarations(root: etree._Element) -> dict[etree._Element, list[tuple[str, str]]]:
    """Namespace declarations written on each element (not inherited ones), from libxml2."""
    if next(iter(etree.iterwalk(root, events=("start-ns",))), None) is None:
        return {}  # the usual case, found without a Python step per element
    declared: dict[etree._Element, list[tuple[str, str]]] = {}
    pending: list[tuple[str, str]] = []
    for event, item in etree.iterwalk(root, events=("start-ns", "start")):
        if event == "start-ns":
            pending.append(item)
        elif pending:
            declared[item], pending = pending, []
    return declared


class _ToJson:
    def __init__(self, root: etree._Element, flavor: Representation, budget: _Budget):
        self.badger, self.budget = flavor == "BadgerFish", budget
        # Declarations are attributes in the SDK's DOM (a real payload in its tests has
        # "xmlns:SOAP-ENV" keys); lxml keeps them apart, so collect them once.
        self.declared = _declarations(root)
        # lxml merges CDATA into .text; the SDK never trims CDATA, so keep the node boundaries.
        self.pieces = None if self.badger else _text_and_cdata_pieces(root)

    def attributes(self, elem: etree._Element) -> list[tuple[str, str]]:
        items = elem.items()
        if any(k[0] == "{" for k, _ in items):
            nsmap = elem.nsmap
            items = [(_attribute_name(k, nsmap), v) for k, v in items]
        declared = self.declared.get(elem) if self.declared else None
        if declared:
            items = [*items, *(("xmlns:" + p if p else "xmlns", u) for p, u in declared)]
        return items

    def convert(self, elem: etree._Element, depth: int, is_root: bool) -> dict[str, Any]:
        attributes = self.attributes(elem)
        self.budget.enter(depth, 1 + len(attributes))
        badger = self.badger
        name = _name(elem)
        collection = len(name) > len(_COLLECTION) and name.endswith(_COLLECTION)
        # comments and processing instructions (name None) only split text or carry a tail
        nodes = [(c, _name(c) if isinstance(c.tag, str) else None) for c in elem]
        names = [n for _, n in nodes if n is not None]
        repeated = set() if len(set(names)) == len(names) else {n for n in names if names.count(n) > 1}
        out: dict[str, Any] = {}
        if badger and elem.text is not None:
            out["$"] = elem.text
        for child, child_name in nodes:
            if child_name is None:
                pass
            elif collection or child_name in repeated:
                if child_name not in out:
                    out[child_name] = []
                out[child_name].append(self.convert(child, depth + 1, False))
            elif not badger and not len(child) and child.text is not None and not self.attributes(child):
                # only text and CDATA, no attribute (a namespace declaration is one): "$name"
                self.budget.enter(depth + 1, 1)
                out["$" + child_name] = child.text
            else:
                out[child_name] = self.convert(child, depth + 1, False)
            if badger and child.tail is not None:  # the SDK puts "$" where the first text node is
                out["$"] = out.get("$", "") + child.tail
        if not badger:
            text = self.simple_text(elem, trim=is_root or bool(names))
            if text:
                out["$"] = text
        for key, value in attributes:
            out["@" + key if badger or key in out else key] = value  # SimpleJson: "@" only on a clash
        return out

    def simple_text(self, elem: etree._Element, trim: bool) -> str:
        if trim and self.pieces is not None:
            return "".join(t if cdata else _js_trim(t) for cdata, t in self.pieces.get(elem, ()))
        text = elem.text or ""
        if len(elem):
            runs = [text, *(c.tail for c in elem)]
            return "".join(_js_trim(r) for r in runs) if trim else "".join(r for r in runs if r)
        return _js_trim(text) if trim else text


def _text_and_cdata_pieces(root: etree._Element) -> dict[etree._Element, list[tuple[bool, str]]] | None:
    """Each element's direct text nodes as (is_cdata, text), or None when there is no CDATA.

    lxml exposes no CDATA node, so the serialised subtree is re-read with expat, which reports
    CDATA sections; elements are matched by document order.
    """
    data = etree.tostring(root, encoding="utf-8", with_tail=False)  # ASCII output escapes non-ASCII names
    if b"<![CDATA[" not in data:
        return None
    elements = list(root.iter(etree.Element))
    reader = _TextNodeReader(len(elements))
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = reader.start, reader.end
    parser.StartCdataSectionHandler, parser.EndCdataSectionHandler = reader.cdata_start, reader.cdata_end
    parser.CharacterDataHandler = reader.buffer.append
    parser.CommentHandler = parser.ProcessingInstructionHandler = reader.flush  # they split text nodes
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError:
        return None  # not expected for lxml output; fall back to merged text
    return dict(zip(elements, reader.pieces, strict=True))


class _TextNodeReader:
    """expat handlers: the direct text nodes of the n-th element, as (is_cdata, text)."""

    def __init__(self, count: int):
        self.pieces: list[list[tuple[bool, str]]] = [[] for _ in range(count)]
        self.stack: list[int] = []
        self.buffer: list[str] = []  # expat may deliver one text node in several calls
        self.next, self.cdata = 0, False

    def flush(self, *_: object) -> None:
        if self.buffer and self.stack:
            self.pieces[self.stack[-1]].append((self.cdata, "".join(self.buffer)))
        self.buffer.clear()

    def start(self, *_: object) -> None:
        self.flush()
        self.stack.append(self.next)
        self.next += 1

    def end(self, *_: object) -> None:
        self.flush()
        self.stack.pop()

    def cdata_start(self) -> None:
        self.flush()
        self.cdata = True

    def cdata_end(self) -> None:
        self.flush()
        self.cdata = False


# --- JSON -> XML ---------------------------------------------------------------------------------


def simplejson_to_xml(
    root_name: str,
    obj: dict[str, Any] | None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> etree._Element:
    """Element ``root_name`` from SimpleJson: scalars are attributes (``@`` stripped), ``$x`` a text
    child, ``$`` text, objects children, arrays repeated children; None is skipped."""
    return _ToXml("SimpleJson", _Budget(max_depth, max_nodes)).build(None, root_name, obj, 1, {}, root_name)


def badgerfish_to_xml(
    root_name: str,
    obj: dict[str, Any] | None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> etree._Element:
    """Element ``root_name`` from BadgerFish: ``@x`` attributes, ``$`` text, the rest children."""
    return _ToXml("BadgerFish", _Budget(max_depth, max_nodes)).build(None, root_name, obj, 1, {}, root_name)


def json_document_to_xml(
    obj: Any,
    root_name: str | None = None,
    *,
    representation: Representation = "SimpleJson",
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> etree._Element:
    """XML document from its JSON form: ``{"queryDef": {...}}`` (the single key names the root),
    or a bare object plus ``root_name``, or a bare object whose ``xtkschema`` names the root
    (the part after ``:``, as the SDK does for Write)."""
    if representation not in ("SimpleJson", "BadgerFish"):
        raise RepresentationError(f"unknown representation {representation!r}")
    if not isinstance(obj, dict):
        raise RepresentationError("a JSON document must be an object")
    wrapped = len(obj) == 1 and isinstance(next(iter(obj.values())), dict)
    if root_name is None:
        schema = obj.get("xtkschema", obj.get("@xtkschema"))
        key = next(iter(obj), "")
        if wrapped and key[:1] not in ("$", "@"):
            root_name, obj = key, obj[key]
        elif isinstance(schema, str) and ":" in schema:
            root_name = schema.partition(":")[2]
        else:
            raise RepresentationError(
                'cannot tell the root element: use {"<root>": {...}} or give a root name'
            )
    elif wrapped and root_name in obj:
        obj = obj[root_name]
    convert = simplejson_to_xml if representation == "SimpleJson" else badgerfish_to_xml
    return convert(root_name, obj, max_depth=max_depth, max_nodes=max_nodes)


def _scalar_text(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # exact, where the SDK would go through a double
    if isinstance(value, float):
        return js_number(value) if math.isfinite(value) else "0"  # as XtkCaster.asNumber
    return value


_SCALARS = (str, bool, int, float)


def _is_plain(name: str) -> bool:
    return ":" not in name and "{" not in name and "}" not in name


class _ToXml:
    def __init__(self, flavor: Representation, budget: _Budget):
        self.simple, self.budget = flavor == "SimpleJson", budget

    @staticmethod
    def qualify(name: str, scope: dict[str | None, str], path: str, attribute: bool = False) -> str:
        """lxml (Clark) name for ``local`` or ``prefix:local``; unprefixed elements take the default
        namespace in scope, unprefixed attributes have none."""
        if _is_plain(name):
            uri = None if attribute else scope.get(None)
            return f"{{{uri}}}{name}" if uri else name
        prefix, _, local = name.partition(":")
        uri = _XML_NS if prefix == "xml" else scope.get(prefix)
        if not uri or not _is_plain(local):
            raise RepresentationError(f"{path}: invalid XML name or undeclared namespace prefix in {name!r}")
        return f"{{{uri}}}{local}"

    def build(
        self,
        parent: etree._Element | None,
        name: str,
        obj: Any,
        depth: int,
        scope: dict[str | None, str],
        path: str,
    ) -> etree._Element:
        if obj is not None and not isinstance(obj, dict):
            raise RepresentationError(f"{path}: expected an object, got {type(obj).__name__}")
        attributes, text, children = self.split(obj or {}, path)
        self.budget.enter(depth, 1 + len(attributes))
        declared = {
            (None if a == "xmlns" else a[6:]): attributes.pop(a)
            for a in [a for a in attributes if a[:5] == "xmlns" and (len(a) == 5 or a[5] == ":")]
        }
        if declared:
            scope = {**scope, **declared}
        tag = self.qualify(name, scope, path)
        if not all(_is_plain(a) for a in attributes):
            attributes = {
                self.qualify(a, scope, f"{path}/@{a}", attribute=True): v for a, v in attributes.items()
            }
        try:
            nsmap = declared or None
            if parent is None:
                elem = etree.Element(tag, attributes, nsmap=nsmap)
            else:
                elem = etree.SubElement(parent, tag, attributes, nsmap=nsmap)
            elem.text = text or None
        except ValueError as exc:  # lxml refuses bad names and characters XML cannot carry
            raise RepresentationError(_diagnose(tag, attributes, text, path) or f"{path}: {exc}") from None
        for child_name, child, index in children:
            child_path = f"{path}/{child_name}" if index is None else f"{path}/{child_name}[{index}]"
            if isinstance(child, str):  # SimpleJson "$name": "text"
                self.budget.enter(depth + 1, 1)
                child_path = f"{path}/${child_name}"
                child_tag = self.qualify(child_name, scope, child_path)
                try:
                    etree.SubElement(elem, child_tag).text = child or None
                except ValueError as exc:
                    raise RepresentationError(
                        _diagnose(child_tag, {}, child, child_path) or str(exc)
                    ) from None
            else:
                self.build(elem, child_name, child, depth + 1, scope, child_path)
        return elem

    def split(self, content: dict[str, Any], path: str) -> tuple[dict[str, str], str, list]:
        """Sort an object's members into attributes, text and children by the SDK's key rules."""
        simple = self.simple
        attributes: dict[str, str] = {}  # a repeated attribute: the last one wins, as setAttribute
        text = ""
        children: list[tuple[str, Any, int | None]] = []
        for key, value in content.items():
            if value is None:
                continue
            if not isinstance(key, str) or not key:
                raise RepresentationError(f"{path}: invalid member name {key!r}")
            first = key[0]
            if key == "$":
                if not isinstance(value, _SCALARS):
                    raise RepresentationError(f"{path}/$: text must be a string, number or boolean")
                text = _scalar_text(value)
            elif first == "@" or (simple and first != "$" and isinstance(value, _SCALARS)):
                if not isinstance(value, _SCALARS):
                    raise RepresentationError(
                        f"{path}/{key}: attribute value must be a string, number or boolean"
                    )
                attributes[key[1:] if first == "@" else key] = _scalar_text(value)
            elif simple and first == "$":
                if not isinstance(value, _SCALARS):
                    raise RepresentationError(
                        f"{path}/{key}: text element value must be a string, number or boolean"
                    )
                children.append((key[1:], _scalar_text(value), None))
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    if item is not None and not isinstance(item, dict):
                        raise RepresentationError(f"{path}/{key}[{index}]: array items must be objects")
                    children.append((key, item, index))
            elif isinstance(value, dict):
                children.append((key, value, None))
            else:
                raise RepresentationError(f"{path}/{key}: {type(value).__name__} cannot be converted to XML")
        return attributes, text, children


def _diagnose(tag: str, attributes: dict[str, str], text: str, path: str) -> str | None:
    """Redo an element step by step to say which name or value lxml refused."""
    for where, step in [
        (path, lambda e: None),
        *((f"{path}/@{a}", lambda e, a=a, v=v: e.set(a, v)) for a, v in attributes.items()),
        (path, lambda e: setattr(e, "text", text or None)),
    ]:
        try:
            step(etree.Element(tag))
        except ValueError as exc:
            return f"{where}: {exc}"
    return None
