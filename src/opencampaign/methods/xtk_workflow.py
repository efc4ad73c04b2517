"""xtk:workflow static methods (business-rest-auth.md §1.3, §1.11): queued commands for the worker."""

from __future__ import annotations

from typing import Any

from lxml import etree

from ..workflow import commands
from ..xmlsafe import XMLInputError, parse_xml
from .registry import REGISTRY, MethodCall, MethodError, MethodResult


def _ref(call: MethodCall) -> str:
    ref = call.params.get("workflowId")
    if ref is None or not str(ref).strip():
        raise MethodError("XSV-350009", "The parameter 'workflowId' is mandatory.", client=True)
    return str(ref).strip()


def _variables(value: Any) -> dict[str, str]:
    """`<variables a=".." b=".."/>` (attributes only), or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, etree._Element):
        elem = value
    else:
        try:
            elem = parse_xml(value if isinstance(value, str | bytes) else str(value), source="parameters")
        except XMLInputError as exc:
            raise MethodError("XSV-350010", str(exc), client=True) from None
    if elem.tag != "variables" and elem.find("variables") is not None:
        elem = elem.find("variables")
    if elem.tag != "variables":
        raise MethodError("XSV-350010", "The root element of the parameters must be <variables>.", client=True)
    return dict(elem.attrib)


def _command(func: Any) -> Any:
    def impl(call: MethodCall) -> MethodResult:
        try:
            func(call)
        except commands.CommandError as exc:
            raise MethodError(exc.code, exc.message, client=exc.client) from None
        return MethodResult()

    return impl


def _start(call: MethodCall) -> None:
    commands.start(call.instance, _ref(call), call.ctx)


def _start_with(call: MethodCall) -> None:
    commands.start(call.instance, _ref(call), call.ctx, variables=_variables(call.params.get("parameters")))


def _post_event(call: MethodCall) -> None:
    complete = call.params.get("complete")
    commands.post_event(call.instance, _ref(call), str(call.params.get("activity") or ""),
                        str(call.params.get("transition") or ""), _variables(call.params.get("parameters")),
                        complete in (True, 1, "1", "true"), call.ctx)


REGISTRY.register("xtk:workflow#Start", _command(_start))
REGISTRY.register("xtk:workflow#StartWithParameters", _command(_start_with))
REGISTRY.register("xtk:workflow#Stop", _command(lambda c: commands.stop(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#Kill", _command(lambda c: commands.kill(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#Pause", _command(lambda c: commands.pause(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#Resume", _command(lambda c: commands.resume(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#Restart", _command(lambda c: commands.restart(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#Wakeup", _command(lambda c: commands.wakeup(c.instance, _ref(c), c.ctx)))
REGISTRY.register("xtk:workflow#PostEvent", _command(_post_event))
