"""`GET /nl/jsp/schemawsdl.jsp?schema=ns:name`: a document/literal WSDL of a schema's methods.

Shaped like Campaign's: one element per method in the `urn:ns:name` namespace (qualified), the
session token first, the object as `entity` for non-static methods, Hungarian parameter names,
and a `tns:Element` type (any content) for XML parameters, which is also what the replies'
`xsi:type='ns:Element'` resolves to. Methods a schema inherits from an interface (`xtk:persist`)
are listed with their compound SOAPAction (`xtk:persist|nms:delivery#NewInstance`).
`xtk:session` is public (clients need it to log on); other schemas need a session.
"""

from __future__ import annotations

from lxml import etree

from ..schema.model import Method, Schema
from ..schema.registry import SchemaRegistry
from . import codec

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XS = "http://www.w3.org/2001/XMLSchema"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
PUBLIC_SCHEMAS = {"xtk:session"}

_XS_TYPES = {
    "string": "s:string", "memo": "s:string", "CDATA": "s:string", "html": "s:string", "uuid": "s:string",
    "primarykey": "s:string", "boolean": "s:boolean", "byte": "s:byte", "short": "s:short", "long": "s:int",
    "int64": "s:long", "float": "s:float", "double": "s:double", "datetime": "s:dateTime",
    "datetimetz": "s:dateTime", "datetimenotz": "s:dateTime", "date": "s:date",
}


def operations(registry: SchemaRegistry, schema: Schema) -> list[tuple[str, Method]]:
    """(SOAPAction, method) pairs callable on `schema`, own methods first, one per name."""
    found: dict[str, tuple[str, Method]] = {}
    for method in schema.methods:
        urn = f"{schema.namespace}:{method.interface}" if method.interface else schema.id
        if method.interface and urn != schema.id:
            urn = f"{urn}|{schema.id}"
        found.setdefault(method.name, (f"{urn}#{method.name}", method))
    parent = registry.find(schema.implements) if schema.implements else None
    if parent is not None:
        for method in parent.methods:
            if method.interface:
                found.setdefault(method.name, (f"{parent.id}|{schema.id}#{method.name}", method))
    return list(found.values())


def _xs_type(param_type: str) -> str:
    kind = codec.canonical_type(param_type)
    return _XS_TYPES.get(kind or "", "tns:Element")


def _element(parent: etree._Element, name: str, xs_type: str, *, optional: bool = False) -> None:
    etree.SubElement(parent, f"{{{XS}}}element", name=name, type=xs_type,
                     minOccurs="0" if optional else "1", maxOccurs="1")


def _message_element(schema_el: etree._Element, name: str) -> etree._Element:
    element = etree.SubElement(schema_el, f"{{{XS}}}element", name=name)
    return etree.SubElement(etree.SubElement(element, f"{{{XS}}}complexType"), f"{{{XS}}}sequence")


def build_wsdl(registry: SchemaRegistry, schema: Schema, location: str) -> bytes:
    tns = f"urn:{schema.id}"
    root = etree.Element(f"{{{WSDL}}}definitions", nsmap={"wsdl": WSDL, "soap": SOAP, "s": XS, "tns": tns},
                         targetNamespace=tns)
    types = etree.SubElement(root, f"{{{WSDL}}}types")
    xs = etree.SubElement(types, f"{{{XS}}}schema", elementFormDefault="qualified", targetNamespace=tns)
    any_type = etree.SubElement(xs, f"{{{XS}}}complexType", name="Element")
    etree.SubElement(etree.SubElement(any_type, f"{{{XS}}}sequence"), f"{{{XS}}}any", processContents="lax",
                     minOccurs="0", maxOccurs="1")
    ops = operations(registry, schema)
    port_name = f"{schema.name}MethodsSoap"
    messages, port_ops, binding_ops = [], [], []
    for action, method in ops:
        request = _message_element(xs, method.name)
        _element(request, "sessiontoken", "s:string")
        if not method.static:
            _element(request, "entity", "tns:Element")
        for param in method.inputs:
            _element(request, codec.input_name(param), _xs_type(param.type), optional=codec.is_xml(param))
        response = _message_element(xs, f"{method.name}Response")
        if not method.static:
            _element(response, "entity", "tns:Element", optional=True)
        for param in method.outputs:
            _element(response, codec.output_name(method, param), _xs_type(param.type))
        messages.append(method.name)
        port_ops.append(method.name)
        binding_ops.append((method.name, action))
    for name in messages:
        for suffix, element in (("In", name), ("Out", f"{name}Response")):
            message = etree.SubElement(root, f"{{{WSDL}}}message", name=f"{name}{suffix}")
            etree.SubElement(message, f"{{{WSDL}}}part", name="parameters", element=f"tns:{element}")
    port_type = etree.SubElement(root, f"{{{WSDL}}}portType", name=port_name)
    for name in port_ops:
        op = etree.SubElement(port_type, f"{{{WSDL}}}operation", name=name)
        etree.SubElement(op, f"{{{WSDL}}}input", message=f"tns:{name}In")
        etree.SubElement(op, f"{{{WSDL}}}output", message=f"tns:{name}Out")
    binding = etree.SubElement(root, f"{{{WSDL}}}binding", name=port_name, type=f"tns:{port_name}")
    etree.SubElement(binding, f"{{{SOAP}}}binding", style="document", transport=HTTP_TRANSPORT)
    for name, action in binding_ops:
        op = etree.SubElement(binding, f"{{{WSDL}}}operation", name=name)
        etree.SubElement(op, f"{{{SOAP}}}operation", soapAction=action, style="document")
        for direction in ("input", "output"):
            etree.SubElement(etree.SubElement(op, f"{{{WSDL}}}{direction}"), f"{{{SOAP}}}body", use="literal")
    service = etree.SubElement(root, f"{{{WSDL}}}service", name=schema.namespace.capitalize() + schema.name[:1].upper()
                               + schema.name[1:])
    port = etree.SubElement(service, f"{{{WSDL}}}port", name=port_name, binding=f"tns:{port_name}")
    etree.SubElement(port, f"{{{SOAP}}}address", location=location)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
