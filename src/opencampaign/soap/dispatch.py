"""From a parsed SOAP request to the reply bytes: route, authenticate, decode, call, encode.

Routing follows soap-protocol.md §4.3: `ns:name#Method` is a method of schema `ns:name` (its own
`<methods>` or an interface it declares); `iface|ns:name#Method` is a method of interface
`iface` (e.g. `xtk:persist`) called on an object of schema `ns:name`. Parameters are positional:
`<sessiontoken>` first, then `<document>` (the object) for non-static methods, then the inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..context import CallContext
from ..methods.registry import REGISTRY, MethodCall, MethodRegistry
from ..schema.model import Method, Schema
from ..schema.registry import SchemaRegistry
from ..security.services import Security, TokenError, security_for
from ..security.sessions import Session, SessionStore
from . import codec
from .envelope import SoapRequest, build_response, build_xml_response, namespace_urn
from .faults import RATE_LIMITED, READING_PARAMETERS, SoapFault, from_exception, not_defined, session_invalid

_SCHEMA_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*:[A-Za-z][A-Za-z0-9_]*")
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Action:
    urn: str  # as sent: "xtk:session", "xtk:persist|nms:delivery"
    method: str  # as sent (the reply element is named after it)

    @property
    def interface(self) -> str | None:
        return self.urn.split("|", 1)[0] if "|" in self.urn else None

    @property
    def object_schema(self) -> str:
        return self.urn.split("|", 1)[1] if "|" in self.urn else self.urn


@lru_cache(maxsize=1024)  # clients repeat a handful of SOAPAction values
def parse_action(text: str) -> Action | None:
    """`urn#Method` from a SOAPAction value (quotes and spaces tolerated), None if malformed."""
    value = text.strip().strip('"').strip()
    urn, sep, method = value.rpartition("#")
    if not sep or not _METHOD.fullmatch(method):
        return None
    parts = urn.split("|")
    if len(parts) > 2 or not all(_SCHEMA_ID.fullmatch(p) for p in parts):
        return None
    return Action(urn, method)


def action_from_body(request: SoapRequest) -> Action | None:
    namespace = namespace_urn(request.namespace)
    if namespace.startswith("urn:"):
        return parse_action(f"{namespace[4:]}#{request.method}")
    return None


@dataclass(frozen=True)
class Target:
    schema: Schema  # the object schema
    method: Method
    api: str = field(init=False)  # the name TPS limits count calls under: `xtk:queryDef#ExecuteQuery`

    def __post_init__(self) -> None:
        object.__setattr__(self, "api", f"{self.schema.id}#{self.method.name}")


def _by_name(methods: list[Method], name: str, interface: str | None = None) -> Method | None:
    pool = [m for m in methods if interface is None or m.interface == interface]
    exact = next((m for m in pool if m.name == name), None)
    return exact or next((m for m in pool if m.name.lower() == name.lower()), None)


def resolve_target(registry: SchemaRegistry, action: Action) -> Target:
    schema = registry.find(action.object_schema)
    if schema is None:
        raise not_defined(action.method, action.urn)
    iface = action.interface
    if iface is None:
        method = _by_name(schema.methods, action.method)
        if method is None and schema.implements:  # `nms:delivery#NewInstance`: inherited interface method
            parent = registry.find(schema.implements)
            method = _by_name(parent.methods, action.method) if parent else None
        if method is None:
            raise not_defined(action.method, action.urn)
        return Target(schema, method)
    iface_name = iface.split(":", 1)[1]
    declared = _by_name(schema.methods, action.method, iface_name)
    iface_schema = registry.find(iface)
    inherited = _by_name(iface_schema.methods, action.method, iface_name) if iface_schema else None
    implements = schema.implements == iface or declared is not None
    method = declared or inherited
    if method is None or not implements:
        raise not_defined(action.method, action.urn)
    return Target(schema, method)


@dataclass
class Credentials:
    bearer: str = ""
    session: str = ""
    security: str = ""


@dataclass(frozen=True)
class BodyTokens:
    """The tokens an envelope carries: the session token of its SOAP header cookie, else of its
    `<sessiontoken>` parameter, and its SOAP header security token."""

    session: str = ""
    security: str = ""


def body_tokens(request: SoapRequest) -> BodyTokens:
    header_cookie = ""
    cookie_header = request.header.get("cookie", "")
    if cookie_header:
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "__sessiontoken":
                header_cookie = value.strip()
    body_token = ""
    if request.params:
        first = request.params[0]
        if first.tag.rpartition("}")[2].lower() in ("sessiontoken", "__sessiontoken"):
            body_token = (first.text or "").strip()
    return BodyTokens(header_cookie or body_token, request.header.get("x-security-token", ""))


def credentials(headers: Any, cookies: dict[str, str], request: SoapRequest,
                tokens: BodyTokens | None = None) -> Credentials:
    """Tokens from every place clients put them (soap-protocol.md §1.2), first non-empty wins.

    `headers`: any mapping with lower-case names (Starlette's Headers, or the router's dict).
    `tokens`: the request's body_tokens, when already known (prepared requests)."""
    auth = headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if tokens is None:
        tokens = body_tokens(request)
    session = (headers.get("x-session-token", "").strip() or tokens.session
               or cookies.get("__sessiontoken", "").strip())
    security = headers.get("x-security-token", "").strip() or tokens.security
    return Credentials(bearer=bearer, session=session, security=security)


Caller = tuple[CallContext, str]  # who calls, and the token they called with ("" when anonymous)


def _anonymous() -> Caller:
    return CallContext(), ""  # a new one each time: a context carries a (mutable) variables dict


_TARGETS_MAX = 4096


@dataclass
class Dispatcher:
    instance: Any
    store: SessionStore
    methods: MethodRegistry = field(default=REGISTRY)
    # Routed actions: schemas and their methods only change with a restart (successes only, so
    # hostile clients cannot grow it with unknown names).
    _targets: dict[Action, Target] = field(default_factory=dict, init=False, repr=False)
    _security: Security | None = field(default=None, init=False, repr=False)

    @property
    def security(self) -> Security:
        if self._security is None:
            self._security = security_for(self.instance)
        return self._security

    def target(self, action: Action) -> Target:
        """The schema method an action calls; SOP-330006 when there is none."""
        found = self._targets.get(action)
        if found is None:
            found = resolve_target(self.instance.registry, action)
            if len(self._targets) < _TARGETS_MAX:
                self._targets[action] = found
        return found

    def authenticate(self, creds: Credentials, method: Method) -> Caller:
        """The caller; anonymous methods run anonymously when the credentials are unusable."""
        anonymous_ok = (method.access or "").strip() == "anonymous"
        if creds.bearer:
            try:
                return self.security.bearer_context(creds.bearer), creds.bearer
            except TokenError as exc:
                if anonymous_ok:
                    return _anonymous()
                raise session_invalid(f"the bearer token was refused: {exc.description}") from None
        if creds.session:
            session = self.store.resolve(creds.session, creds.security)
            return self._session_caller(session, creds, anonymous_ok)
        return _anonymous()

    def authenticate_cached(self, creds: Credentials, method: Method) -> Caller | None:
        """`authenticate` when it needs no database or network round trip (sessions known to this
        process, or no credentials), else None: the caller then authenticates off the event loop."""
        if creds.bearer:
            return None  # bearer validation may create the technical operator
        if not creds.session:
            return _anonymous()
        known, session = self.store.resolve_cached(creds.session, creds.security)
        if not known:
            return None
        return self._session_caller(session, creds, (method.access or "").strip() == "anonymous")

    @staticmethod
    def _session_caller(session: Session | None, creds: Credentials, anonymous_ok: bool) -> Caller:
        if session is not None:
            return session.context(), creds.session
        if anonymous_ok:
            return _anonymous()
        raise session_invalid("" if creds.security else "the security token (X-Security-Token) is missing")

    def accepts_lifted(self, target: Target) -> bool:
        """Whether the method's implementation takes a queryDef as a LiftedQuery `this` (prepared
        requests; a JavaScript override of the method gets parsed documents)."""
        impl = self.methods.find(target.schema.id, target.method)
        return bool(getattr(impl, "accepts_lifted_documents", False))

    def dispatch(self, request: SoapRequest, action: Action, creds: Credentials, extras: dict[str, str],
                 target: Target | None = None, caller: Caller | None = None,
                 this: Any = None) -> tuple[bytes, dict[str, str]]:
        """The reply envelope and the HTTP headers to send with it (RateLimit-*). `target` and
        `caller` are passed when the router already resolved them; `this`, the object, when a
        prepared request gives it (else it is read from the request)."""
        request_id = extras.get("request-id", "")
        if target is None:
            target = self.target(action)
        method = target.method
        ctx, token = caller if caller is not None else self.authenticate(creds, method)
        api = target.api
        decision = self.security.hit(ctx, api, extras.get("remote-addr", ""))
        if not decision.allowed:
            raise SoapFault(RATE_LIMITED, f"Too many requests: the limit of {decision.limit} calls per second "
                            f"to '{api}' is reached. Retry in {max(1, decision.reset_seconds)} s.", status=429,
                            headers=decision.headers())
        params = request.params[1:]  # the first one is always the session token
        try:
            if not method.static:
                if not params:
                    raise ValueError("the object (<document>) of a non-static method is missing")
                if this is None:
                    this = codec.first_child(params[0])
                    if this is None:
                        raise ValueError("the object (<document>) of a non-static method is empty")
                params = params[1:]
            values = codec.decode_inputs(method, params)
        except ValueError as exc:
            raise SoapFault(READING_PARAMETERS, f"Error while reading parameters of method '{method.name}' of "
                            f"service '{action.urn}'.", [str(exc)]) from None
        call = MethodCall(instance=self.instance, ctx=ctx, schema=target.schema, method=method, this=this,
                          params=values, headers={**extras, "session-token": token, "urn": action.urn},
                          xml_as_text=True)
        try:
            result = self.methods.call(call)
            if result.this is None or method.static:
                name = codec.xml_output_name(method, result.outputs)
                if name is not None:  # one XML text (a queryDef row): no Output objects
                    return (build_xml_response(action.method, target.schema.id, name, result.outputs[0]),
                            decision.headers())
            outputs = codec.encode_outputs(method, result.outputs)
            if not method.static and result.this is not None:
                outputs.insert(0, codec.encode_entity(result.this))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fault
            dialect = self._dialect(target.schema)
            raise from_exception(exc, method.name, action.urn, request_id, dialect) from None
        return build_response(action.method, target.schema.id, outputs), decision.headers()

    def _dialect(self, schema: Schema) -> str:
        storage = self.instance.storage
        try:
            return storage.dialect(storage.home(schema.id)) if schema.has_table else storage.dialect("local")
        except Exception:  # noqa: BLE001 - only used to word a message
            return ""
