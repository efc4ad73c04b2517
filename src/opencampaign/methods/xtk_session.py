"""xtk:session: logon, logoff, user and server information, options, ids, cache refresh
(business-rest-auth.md §1.5, soap-protocol.md §3, §4.4, §8.3)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from lxml import etree

from .. import __version__
from ..query.persist import get_new_ids
from ..query.values import format_value, parse_value
from ..security.operators import LogonError
from ..security.sessions import Session, store_for
from .registry import REGISTRY, MethodCall, MethodError, MethodResult

BUILD_NUMBER = "9400"  # reported as Campaign's build (clients only parse it)
VERSION = ("8", "7", "0")  # majNumber, minNumber, servicePack: the Campaign v8 API level served
PACKAGES = (("nms", "core"), ("nms", "campaign"))
SESSION = "xtk:session"
OPTION = "xtk:option"
DATABASE_ID = "XtkDatabaseId"
STARTED = datetime.now(UTC).replace(tzinfo=None)  # schemas are loaded once per process

# xtk:option type code -> (value column, XTK type used to format it)
OPTION_COLUMNS: dict[int, tuple[str, str]] = {
    1: ("iLongValue", "long"), 2: ("iLongValue", "long"), 3: ("iLongValue", "long"), 15: ("iLongValue", "long"),
    4: ("dDoubleValue", "double"), 5: ("dDoubleValue", "double"), 14: ("dDoubleValue", "double"),
    6: ("sStringValue", "string"), 12: ("mMemoValue", "memo"), 13: ("mMemoValue", "memo"),
    7: ("tsTimeStampValue", "datetime"), 10: ("tsTimeStampValue", "date"),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _require_session(call: MethodCall) -> Session:
    token = call.headers.get("session-token", "")
    store = store_for(call.instance)
    session = store.resolve(token, None) if token else None
    if session is None and call.ctx.login:  # an IMS bearer token: the caller has no stored session
        session = store.for_operator(call.ctx.login)
    if session is None:
        raise MethodError("XSV-350008", "Session has expired or is invalid. Please reconnect.", client=True)
    return session


# --- documents -----------------------------------------------------------------------------------


def user_info(session: Session) -> etree._Element:
    elem = etree.Element("userInfo", datakitInDatabase="true", homeDir=session.home_dir, instanceLocale="en",
                         locale=session.locale, login=session.login, loginCS=f"{session.label} ({session.login})",
                         loginId=str(session.operator_id), noConsoleCnx="false", orgUnitId="0", theme="",
                         timezone=session.timezone or "UTC")
    for group in session.groups:
        etree.SubElement(elem, "login-group", id=str(group))
    for right in sorted(session.rights):
        etree.SubElement(elem, "login-right", right=right)
    for namespace, name in PACKAGES:
        etree.SubElement(elem, "installed-package", name=name, namespace=namespace)
    return elem


def server_info(instance: Any) -> etree._Element:
    ttl = str(int(instance.settings.get("session", "ttl_seconds", 86400)))
    major, minor, service_pack = VERSION
    return etree.Element(
        "serverInfo", advisedClientBuildNumber="0", allowSQL="false", buildNumber=BUILD_NUMBER,
        commitId=f"opencampaign-{__version__}", databaseId=database_id(instance), defaultNameSpace="cus",
        fohVersion="2", instanceName=instance.data_dir.name, majNumber=major, minClientBuildNumber="0",
        minNumber=minor, minNumberTechnical="0", releaseName=f"opencampaign {__version__}", securityTimeOut=ttl,
        serverDate=format_value("datetime", _now()), servicePack=service_pack, sessionTimeOut=ttl, useVault="false")


def session_info(instance: Any, session: Session) -> etree._Element:
    root = etree.Element("sessionInfo")
    root.append(server_info(instance))
    root.append(user_info(session))
    return root


# --- options -------------------------------------------------------------------------------------


def read_option(instance: Any, name: str) -> tuple[str, int]:
    """(value as text, type code); ("", 0) for an unknown option, as Campaign answers."""
    storage = instance.storage
    table = storage.table(OPTION)
    with storage.engine_for(OPTION).connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.sName == name)).first()
    if row is None:
        return "", 0
    code = int(row.iDataType or 0)
    column, kind = OPTION_COLUMNS.get(code, ("sStringValue", "string"))
    value = row._mapping[column]
    if code == 15:
        return ("1" if value else "0"), code
    return format_value(kind, value), code


def database_id(instance: Any) -> str:
    """The instance's XtkDatabaseId option, created on first use (`u` + 40 hex digits, Campaign's form)."""
    value, _ = read_option(instance, DATABASE_ID)
    if value:
        return value
    storage = instance.storage
    table = storage.table(OPTION)
    with storage.write(storage.home(OPTION)) as conn:
        existing = conn.execute(sa.select(table.c.sStringValue).where(table.c.sName == DATABASE_ID)).scalar()
        if existing:
            return existing
        value = "u" + secrets.token_hex(20).upper()
        conn.execute(sa.insert(table).values(sName=DATABASE_ID, iDataType=6, sStringValue=value,
                                             sDescription="Identifier of the database", tsLastModified=_now()))
    return value


# --- methods -------------------------------------------------------------------------------------


@REGISTRY.implements("xtk:session#Logon")
def logon(call: MethodCall) -> MethodResult:
    login = str(call.params.get("login") or "")
    password = str(call.params.get("password") or "")
    parameters = call.params.get("parameters")
    remember = parameters is not None and str(parameters.get("rememberMe", "")).lower() in ("true", "1")
    store = store_for(call.instance)
    try:
        if not login or password.startswith("=="):  # "==<IMS service token>" is Adobe-internal
            raise LogonError()
        session_token, security_token, session = store.logon(login, password, remember_me=remember,
                                                             remote=call.headers.get("remote-addr", ""))
    except LogonError:
        raise MethodError("XSV-350012", "Invalid login or password. Connection denied.", client=True) from None
    return MethodResult([session_token, session_info(call.instance, session), security_token])


@REGISTRY.implements("xtk:session#BearerTokenLogon")
def bearer_token_logon(call: MethodCall) -> MethodResult:
    """Exchanges an IMS-style access token for session + security tokens (`ofBearerToken`)."""
    from ..security.services import TokenError, security_for

    token = str(call.params.get("bearerToken") or "").strip()
    security = security_for(call.instance)
    try:
        ctx = security.bearer.context(token)
    except TokenError as exc:
        raise MethodError("XSV-350008", f"Session has expired or is invalid. Please reconnect. ({exc.description})",
                          client=True) from None
    session_token, security_token, session = security.sessions.open(
        ctx.login_id, remote=call.headers.get("remote-addr", ""), auth_type="ims")
    return MethodResult([session_token, session_info(call.instance, session), security_token])


@REGISTRY.implements("xtk:session#Logoff")
def logoff(call: MethodCall) -> MethodResult:
    token = call.headers.get("session-token", "")
    if token:
        store_for(call.instance).close(token)
    return MethodResult([])


@REGISTRY.implements("xtk:session#TestCnx")
def test_cnx(call: MethodCall) -> MethodResult:
    _require_session(call)
    return MethodResult([])


@REGISTRY.implements("xtk:session#GetUserInfo")
def get_user_info(call: MethodCall) -> MethodResult:
    return MethodResult([user_info(_require_session(call))])


@REGISTRY.implements("xtk:session#GetServerTime")
def get_server_time(_call: MethodCall) -> MethodResult:
    return MethodResult([_now()])


@REGISTRY.implements("xtk:session#GetOption")
def get_option(call: MethodCall) -> MethodResult:
    value, code = read_option(call.instance, str(call.params.get("name") or ""))
    return MethodResult([value, code])


def _ids(call: MethodCall, sequence: str) -> MethodResult:
    ids = get_new_ids(call.instance.storage, int(call.params.get("count") or 0), sequence)
    return MethodResult([",".join(str(i) for i in ids)])


@REGISTRY.implements("xtk:session#GetNewIds")
def get_new_ids_method(call: MethodCall) -> MethodResult:
    return _ids(call, "XtkNewId")


@REGISTRY.implements("xtk:session#GetNewIdsEx")
def get_new_ids_ex(call: MethodCall) -> MethodResult:
    return _ids(call, str(call.params.get("sequence") or ""))


@REGISTRY.implements("xtk:session#GetModifiedEntities")
def get_modified_entities(call: MethodCall) -> MethodResult:
    """Cache refresh: schemas only change with a restart, options whenever they are written."""
    cache = call.params.get("cacheEntities")
    build = cache.get("buildNumber") if cache is not None else None
    since_text = cache.get("lastModified") if cache is not None else None
    entity_types = [_qname_id(child) for child in (cache if cache is not None else []) if isinstance(child.tag, str)]
    now = _now()
    out = etree.Element("cache", buildNumber=BUILD_NUMBER, time=_iso(now))
    since = _parse_time(since_text)
    if build != BUILD_NUMBER or since is None or since < STARTED:
        out.set("emptyCache", "true")
        return MethodResult([out])
    if OPTION in entity_types:
        storage = call.instance.storage
        table = storage.table(OPTION)
        with storage.engine_for(OPTION).connect() as conn:
            rows = conn.execute(sa.select(table.c.sName, table.c.tsLastModified)
                                .where(table.c.tsLastModified >= since).limit(1000)).all()
        for row in rows:
            etree.SubElement(out, "entityCache", pk=f"{OPTION}|{row.sName}", schema=OPTION, md5="",
                             lastModified=_iso(row.tsLastModified))
    return MethodResult([out])


def _qname_id(elem: etree._Element) -> str:
    qname = etree.QName(elem)
    namespace = qname.namespace or ""
    return namespace[4:] if namespace.startswith("urn:") else (elem.prefix or "") + ":" + qname.localname


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = parse_value("datetime", text)
    except ValueError:
        return None
    return value if isinstance(value, datetime) else None
