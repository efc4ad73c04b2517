"""Wire values <-> typed method parameters, driven by the schema's `<param>` declarations.

Inputs are read by position (element names and `xsi:type` are not trusted: clients differ);
outputs get the literal `xsi:type` of soap-protocol.md §5.1 and Campaign's Hungarian names
(`pstrSessionToken`, `pdomOutput`), which the WSDL repeats so that WSDL-driven clients agree.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ..query.values import DOM_TYPES, format_soap_value, parse_soap_value, soap_xsi_type, xtk_type_name
from ..schema.model import Method, Param
from .envelope import Output, serialize

# Campaign's type prefixes for parameter names (strLogin, bIgnoreDeleteStatus, pdomDoc...).
_PREFIXES = {
    "string": "str", "memo": "str", "CDATA": "str", "html": "str", "uuid": "str", "primarykey": "pk",
    "boolean": "b", "byte": "bt", "short": "s", "long": "l", "int64": "l", "float": "d", "double": "d",
    "datetime": "tm", "datetimetz": "tm", "datetimenotz": "tm", "date": "tm",
    "DOMDocument": "dom", "DOMElement": "elem",
}
# Names real Campaign uses that the rule above does not give (LOGON_RESPONSE fixture).
_OUTPUT_NAMES = {("Logon", "sessionInfo"): "pSessionInfo", ("BearerTokenLogon", "sessionInfo"): "pSessionInfo"}


def canonical_type(param_type: str) -> str | None:
    """The XTK type of a parameter, or None for a schema-local element type (`sessionUserInfo`)."""
    try:
        return xtk_type_name(param_type)
    except ValueError:
        return None


def is_xml(param: Param) -> bool:
    kind = canonical_type(param.type)
    return kind is None or kind in DOM_TYPES


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def input_name(param: Param) -> str:
    return _PREFIXES.get(canonical_type(param.type) or "", "elem") + _cap(param.name)


def output_name(method: Method, param: Param) -> str:
    special = _OUTPUT_NAMES.get((method.name, param.name))
    if special:
        return special
    kind = canonical_type(param.type)
    return "p" + (_PREFIXES.get(kind, "") if kind else "") + _cap(param.name)


def first_child(elem: etree._Element | None) -> etree._Element | None:
    if elem is None:
        return None
    return next((c for c in elem if isinstance(c.tag, str)), None)


def decode_input(param: Param, elem: etree._Element | None) -> Any:
    """Raises ValueError with a message naming the parameter."""
    kind = canonical_type(param.type)
    if kind is None or kind in DOM_TYPES:
        return first_child(elem)
    text = "" if elem is None else "".join(elem.itertext())
    try:
        return parse_soap_value(kind, text)
    except ValueError as exc:
        raise ValueError(f"parameter '{param.name}' ({param.type}): {exc}") from None


# id(method) -> (method, its inputs, its outputs): schemas, and so methods, live as long as the process.
_PARAMS: dict[int, tuple[Method, list[Param], list[Param]]] = {}


def _params(method: Method) -> tuple[list[Param], list[Param]]:
    known = _PARAMS.get(id(method))
    if known is None or known[0] is not method:
        known = _PARAMS[id(method)] = (method, method.inputs, method.outputs)
    return known[1], known[2]


def decode_inputs(method: Method, elems: list[etree._Element]) -> dict[str, Any]:
    """Missing trailing inputs read as empty values, as Campaign treats absent parameters."""
    values: dict[str, Any] = {}
    for position, param in enumerate(_params(method)[0]):
        values[param.name] = decode_input(param, elems[position] if position < len(elems) else None)
    return values


# (method, param) -> (output name, XTK type or None for XML, xsi:type): schemas live as long as the process.
_OUTPUT_SPECS: dict[tuple[int, int], tuple[str, str | None, str]] = {}


def _output_spec(method: Method, param: Param) -> tuple[str, str | None, str]:
    key = (id(method), id(param))
    spec = _OUTPUT_SPECS.get(key)
    if spec is None:
        if is_xml(param):
            spec = (output_name(method, param), None, "ns:Element")
        else:
            kind = canonical_type(param.type) or "string"
            spec = (output_name(method, param), kind, soap_xsi_type(kind))
        _OUTPUT_SPECS[key] = spec
    return spec


def encode_output(method: Method, param: Param, value: Any) -> Output:
    name, kind, xsi_type = _output_spec(method, param)
    if kind is None:
        xml = "" if value is None else (value if isinstance(value, str) else serialize(_element(value)))
        return Output(name, xsi_type, xml=xml)
    return Output(name, xsi_type, text=format_soap_value(kind, value))


def _element(value: Any) -> etree._Element:
    if isinstance(value, etree._ElementTree):
        return value.getroot()
    if isinstance(value, etree._Element):
        return value
    raise TypeError(f"expected an XML element, got {type(value).__name__}")


def xml_output_name(method: Method, values: list[Any]) -> str | None:
    """The output name when `values` is one XML output already serialised, else None (the reply
    then goes through encode_outputs)."""
    if len(values) != 1 or type(values[0]) is not str:
        return None
    outputs = _params(method)[1]
    if len(outputs) != 1:
        return None
    name, kind, _ = _output_spec(method, outputs[0])
    return name if kind is None else None


def encode_outputs(method: Method, values: list[Any]) -> list[Output]:
    outputs = _params(method)[1]
    if len(values) != len(outputs):
        raise TypeError(f"{method.name} returned {len(values)} value(s) for {len(outputs)} output(s)")
    return [encode_output(method, p, v) for p, v in zip(outputs, values, strict=True)]


def encode_entity(entity: etree._Element) -> Output:
    return Output("entity", "ns:Element", xml=serialize(entity))
