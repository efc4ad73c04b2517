"""SOAP 1.1 envelopes as Campaign clients send and expect them (soap-protocol.md §2).

Requests are parsed with the hardened parser (no DTD, no entities, bounded depth). Replies are
built as text: the SDK finds the body by its literal name `SOAP-ENV:Body`, the result by the
unprefixed `<MethodResponse>` and each output by its literal `xsi:type` attribute, so the exact
spelling matters more than what an XML library would choose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from ..xmlsafe import XMLInputError, parse_xml
from .faults import INVALID_MESSAGE, SoapFault

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
ENCODING_STYLE = "http://schemas.xmlsoap.org/soap/encoding/"
LITERAL_XML = "http://xml.apache.org/xml-soap/literalxml"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_DEPTH = 128


@dataclass
class SoapRequest:
    method: str  # local name of the body's method element
    namespace: str  # its namespace, "urn:xtk:session" (may be "")
    params: list[etree._Element]  # element children of the method element, in order
    header: dict[str, str] = field(default_factory=dict)  # SOAP header children by lower-case local name


def _local(tag: object) -> str:
    # String slicing, not etree.QName: this runs for every envelope element on the hot path.
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _namespace(tag: str) -> str:
    return tag[1:tag.index("}")] if tag[:1] == "{" else ""


def _children(elem: etree._Element) -> list[etree._Element]:
    return [c for c in elem if isinstance(c.tag, str)]


_ENVELOPE_TAGS = {f"{{{SOAP11_NS}}}Envelope", f"{{{SOAP12_NS}}}Envelope"}


def parse_request(body: bytes, charset: str | None = None) -> SoapRequest:
    root = _parse(body, charset)
    if root.tag not in _ENVELOPE_TAGS:
        raise SoapFault(INVALID_MESSAGE, "The XML SOAP message is invalid: the root element is not a SOAP Envelope.")
    header: dict[str, str] = {}
    body_elem = None
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = tag.rpartition("}")[2]
        if name == "Header":
            for item in child:
                if isinstance(item.tag, str):
                    header[item.tag.rpartition("}")[2].lower()] = (item.text or "").strip()
        elif name == "Body":
            body_elem = child
    if body_elem is None:
        raise SoapFault(INVALID_MESSAGE, "The XML SOAP message is invalid: the Envelope has no Body.")
    call = next((c for c in body_elem if isinstance(c.tag, str)), None)
    if call is None:
        raise SoapFault(INVALID_MESSAGE, "The XML SOAP message is invalid: the Body holds no method element.")
    tag = call.tag
    return SoapRequest(method=tag.rpartition("}")[2], namespace=_namespace(tag), params=_children(call),
                       header=header)


# libxml2 refuses `xmlns:m="urn:xtk:persist|xtk:session"` (not a valid URI), which is exactly what
# clients send for interface methods: the `|` of namespace declarations is percent-encoded first.
_XMLNS_WITH_BAR = re.compile(rb"""(xmlns(?::[\w.-]+)?\s*=\s*)(["'])([^"'<>]*\|[^"'<>]*)\2""")


def _encode_bars(match: re.Match[bytes]) -> bytes:
    return match.group(1) + match.group(2) + match.group(3).replace(b"|", b"%7C") + match.group(2)


def namespace_urn(namespace: str) -> str:
    """The urn of a method element's namespace, with the `|` restored."""
    return namespace.replace("%7C", "|").replace("%7c", "|")


def _parse(body: bytes, charset: str | None) -> etree._Element:
    if b"|" in body:
        body = _XMLNS_WITH_BAR.sub(_encode_bars, body)
    try:
        return _parse_safely(body)
    except XMLInputError as exc:
        # A body without an XML declaration is read as UTF-8; honour a different declared charset.
        if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8") and not body.lstrip().startswith(b"<?xml"):
            try:
                return _parse_safely(body.decode(charset).encode("utf-8"))
            except (LookupError, UnicodeDecodeError, XMLInputError):
                pass
        raise SoapFault(INVALID_MESSAGE, f"The XML SOAP message is invalid. {exc}") from None


def _parse_safely(body: bytes) -> etree._Element:
    # xmlsafe: no DTD, no entity resolution (XXE, billion laughs), bounded nesting; a DOCTYPE inside
    # CDATA (delivery HTML) is accepted.
    return parse_xml(body, max_depth=MAX_DEPTH, source="SOAP message")


# --- replies -------------------------------------------------------------------------------------

# XML 1.0 forbids most control characters; a stored value holding one must not break the reply.
_INVALID_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;",
                               "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def escape_text(text: str) -> str:
    return _INVALID_CHARS.sub("\ufffd", text).translate(_ESCAPES)


def escape_attr(text: str) -> str:
    return _INVALID_CHARS.sub("\ufffd", text).translate(_ATTR_ESCAPES)


def _open_envelope(urn: str) -> str:
    return ("<?xml version='1.0'?>\n"
            f"<SOAP-ENV:Envelope xmlns:xsd='{XSD_NS}' xmlns:xsi='{XSI_NS}' xmlns:ns='urn:{escape_attr(urn)}' "
            f"xmlns:SOAP-ENV='{SOAP11_NS}'>\n<SOAP-ENV:Body>\n")


_CLOSE = "</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>"


@dataclass
class Output:
    """One response child: a scalar (`text`) or literal XML (`xml`, already serialised, may be empty)."""

    name: str
    xsi_type: str
    text: str | None = None
    xml: str | None = None

    def render(self) -> str:
        if self.xml is not None:
            return (f"<{self.name} xsi:type='{self.xsi_type}' SOAP-ENV:encodingStyle='{LITERAL_XML}'>"
                    f"{self.xml}</{self.name}>\n")
        return f"<{self.name} xsi:type='{self.xsi_type}'>{escape_text(self.text or '')}</{self.name}>\n"


# (method, urn) -> the envelope up to the method element, and its closing: built once per method.
_FRAMES: dict[tuple[str, str], tuple[str, str]] = {}
_FRAMES_MAX = 4096  # method and urn come from routed (existing) methods, but stay bounded anyway


def _frame(method: str, urn: str) -> tuple[str, str]:
    frame = _FRAMES.get((method, urn))
    if frame is None:
        frame = (_open_envelope(urn) + f"<{method}Response xmlns='urn:{escape_attr(urn)}' "
                 f"SOAP-ENV:encodingStyle='{ENCODING_STYLE}'>\n", f"</{method}Response>\n{_CLOSE}")
        if len(_FRAMES) < _FRAMES_MAX:
            _FRAMES[(method, urn)] = frame
    return frame


_XML_FRAMES: dict[tuple[str, str, str], tuple[str, str]] = {}


def build_xml_response(method: str, urn: str, name: str, xml: str) -> bytes:
    """`build_response` with one output, literal XML named `name` (an ExecuteQuery result)."""
    frame = _XML_FRAMES.get((method, urn, name))
    if frame is None:
        head, tail = _frame(method, urn)
        frame = (f"{head}<{name} xsi:type='ns:Element' SOAP-ENV:encodingStyle='{LITERAL_XML}'>",
                 f"</{name}>\n{tail}")
        if len(_XML_FRAMES) < _FRAMES_MAX:
            _XML_FRAMES[(method, urn, name)] = frame
    return f"{frame[0]}{xml}{frame[1]}".encode()


def build_response(method: str, urn: str, outputs: list[Output]) -> bytes:
    """`urn` is the namespace of the reply element (the object schema, as Campaign answers)."""
    head, tail = _frame(method, urn)
    return "".join([head, *[o.render() for o in outputs], tail]).encode("utf-8")


def build_fault(fault: SoapFault) -> bytes:
    detail = "\n".join(fault.lines)
    text = (f"<?xml version='1.0'?>\n<SOAP-ENV:Envelope xmlns:xsd='{XSD_NS}' xmlns:xsi='{XSI_NS}' "
            f"xmlns:SOAP-ENV='{SOAP11_NS}'>\n<SOAP-ENV:Body>\n<SOAP-ENV:Fault>\n"
            f"<faultcode>{fault.faultcode}</faultcode>\n"
            f"<faultstring xsi:type='xsd:string'>{escape_text(fault.headline)}</faultstring>\n"
            f"<detail xsi:type='xsd:string'>{escape_text(detail)}</detail>\n"
            f"</SOAP-ENV:Fault>\n{_CLOSE}")
    return text.encode("utf-8")


def serialize(elem: etree._Element) -> str:
    return etree.tostring(elem, encoding="unicode", with_tail=False)
