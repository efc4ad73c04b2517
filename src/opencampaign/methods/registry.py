"""The method registry: one implementation per `namespace:schema#Method`, whatever the transport.

Schemas declare methods (name, static, parameters, access); this registry holds what implements
them. SOAP, REST and JavaScript all call `MethodRegistry.call`, so rights checks and behaviour
live here once. A declared method without an implementation is reported as such by the caller's
transport (SOAP fault SOP-330006), never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..context import CallContext
from ..schema.model import Method, Schema

Implementation = Callable[["MethodCall"], "MethodResult"]


class MethodError(Exception):
    """A method failed; `code` is Campaign's `AAA-NNNNNN` code, `detail` the cause chain (innermost first)."""

    def __init__(self, code: str, message: str, detail: list[str] | None = None, *, client: bool = False):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.detail = detail or []
        self.client = client  # the caller's fault (bad input) rather than the server's


@dataclass
class MethodCall:
    instance: Any  # opencampaign.instance.Instance (Any: methods must not import transports)
    ctx: CallContext
    schema: Schema  # the object schema (`nms:delivery` in `xtk:persist|nms:delivery#NewInstance`)
    method: Method
    this: Any  # the object, for non-static methods: an element (ExecuteQuery: or a LiftedQuery)
    params: dict[str, Any] = field(default_factory=dict)  # inputs by declared name, already typed
    headers: dict[str, str] = field(default_factory=dict)  # transport extras (client IP, user agent)
    # The transport serialises XML outputs anyway: a method may return one as XML text (str).
    xml_as_text: bool = False


@dataclass
class MethodResult:
    outputs: list[Any] = field(default_factory=list)  # in the declared order of out/inout params
    this: etree._Element | None = None  # the updated object of a mutable call (NewInstance...)


class MethodRegistry:
    def __init__(self) -> None:
        self._impls: dict[str, Implementation] = {}

    def register(self, key: str, func: Implementation) -> None:
        """`key` is `ns:schema#Method`; interface methods register under the interface urn (`xtk:persist#Write`)."""
        self._impls[key] = func

    def implements(self, key: str) -> Callable[[Implementation], Implementation]:
        def decorator(func: Implementation) -> Implementation:
            self.register(key, func)
            return func

        return decorator

    def find(self, schema_id: str, method: Method) -> Implementation | None:
        """The implementation for `method` of `schema_id`: its own, else its interface's (`xtk:persist#...`)."""
        own = self._impls.get(f"{schema_id}#{method.name}")
        if own is not None:
            return own
        if method.interface:
            namespace = schema_id.split(":", 1)[0]
            return self._impls.get(f"{namespace}:{method.interface}#{method.name}") or self._impls.get(
                f"xtk:{method.interface}#{method.name}")
        return None

    def keys(self) -> list[str]:
        return sorted(self._impls)

    def call(self, call: MethodCall) -> MethodResult:
        check_access(call.ctx, call.method)
        impl = self.find(call.schema.id, call.method)
        if impl is None:
            raise MethodError("SOP-330006", f"The method '{call.method.name}' of schema '{call.schema.id}' "
                              "is declared but not implemented.", client=True)
        return impl(call)


def check_access(ctx: CallContext, method: Method) -> None:
    """`access="anonymous"` needs no session; named rights (e.g. `admin`) must be held; otherwise a logon."""
    access = (method.access or "").strip()
    if access == "anonymous":
        return
    if not ctx.login:
        raise MethodError("XSV-350008", "Session has expired or is invalid. Please reconnect.", client=True)
    for right in [r.strip() for r in access.replace("|", ",").split(",") if r.strip()]:
        if right not in ("", "user") and not ctx.has_right(right):
            raise MethodError("SOP-330007", f"The operator '{ctx.login}' does not have the right '{right}' "
                              f"needed by method '{method.name}'.", client=True)


REGISTRY = MethodRegistry()  # filled by the methods/<ns>_<schema>.py modules on import
