"""queryDef engine against real databases: SQLite, DuckDB and PostgreSQL, in every deployment shape.

One seeded instance per backend for the module (instances are read-only here); rows are inserted
with SQLAlchemy Core through `storage.table(...)`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.errors import DataApiError
from opencampaign.query.querydef import build_query, compile_where, execute_query, parse_querydef
from opencampaign.query.simplejson import xml_to_simplejson
from opencampaign.storage.replication import replicate

try:  # tests/ may or may not be a package
    from .conftest import BACKENDS, PG_AVAILABLE, PgDatabases
except ImportError:
    from conftest import BACKENDS, PG_AVAILABLE, PgDatabases  # type: ignore[no-redef]

CUSTOM_SCHEMAS = Path(__file__).parent / "fixtures" / "schemas" / "custom"
USER = CallContext(login="jdoe", login_id=1234, rights=frozenset({"delivery"}), variables={"minPoints": 100})
TRUSTED = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}), allow_sql=True)

FOLDERS = [
    {"iFolderId": 10, "sName": "nmsRootRecipient", "sLabel": "Recipients", "sFullName": "/Recipients/"},
    {"iFolderId": 11, "sName": "vip", "sLabel": "VIP", "iParentId": 10,
     "mData": '<folder><where filteringSchema="nms:recipient"/></folder>'},
]
SERVICES = [
    {"iServiceId": 100, "sName": "newsletter", "sLabel": "Newsletter", "iType": 0},
    {"iServiceId": 101, "sName": "alerts", "sLabel": "SMS alerts", "iType": 1},
    {"iServiceId": 102, "sName": "empty", "sLabel": "Nobody", "iType": 0},
]
COUNTRIES = [{"sIsoA2": "FR", "sLabel": "France"}, {"sIsoA2": "US", "sLabel": "United States"}]
STORES = [
    {"iStoreId": 200, "sCode": "PAR", "sName": "Paris Store", "sCity": "Paris"},
    {"iStoreId": 201, "sCode": "LYO", "sName": "Lyon Store", "sCity": "Lyon"},
]


def _rcp(rid: int, email: str | None, first: str, last: str, gender: int, birth: dt.date | None, folder: int,
         store: int, city: str | None, country: str | None, points: int, tier: int, **extra: Any) -> dict[str, Any]:
    row = {"iRecipientId": rid, "sEmail": email, "sFirstName": first, "sLastName": last, "iGender": gender,
           "tsBirthDate": birth, "iFolderId": folder, "iStoreId": store, "sCity": city, "sCountryCode": country,
           "iLoyaltyPoints": points, "iLoyaltyTier": tier,
           "tsCreated": dt.datetime(2024, 1, 1, 8, 0) + dt.timedelta(days=rid - 1000)}
    row.update(extra)
    return row


RECIPIENTS = [
    _rcp(1001, "alice@example.com", "Alice", "Martin", 2, dt.date(1990, 5, 4), 10, 200, "Paris", "FR", 120, 1,
         sCompany='A&B <"x">\n\tY\x01Z\u00e9'),
    _rcp(1002, "bob@example.org", "Bob", "Durand", 1, dt.date(1985, 11, 20), 10, 201, "Lyon", "FR", 40, 0,
         iBlackList=1),
    _rcp(1003, "chloe@example.com", "Chloé", "Petit", 2, dt.date(2001, 2, 28), 11, 200, "Paris", "FR", 300, 2),
    _rcp(1004, "david@test.net", "David", "Smith", 1, None, 11, 0, "New York", "US", 0, 0),
    _rcp(1005, "eve.o'neil@example.com", "Eve", "O'Neil", 0, dt.date(1970, 1, 1), 10, 0, None, "XX", 75, 1),
    _rcp(1006, None, "Frank", "Nomail", 1, dt.date(1999, 12, 31), 0, 0, "Lyon", None, 10, 0),
    _rcp(1007, "grace@EXAMPLE.com", "grace", "hopper", 2, dt.date(1950, 6, 15), 10, 200, "Paris", "FR", 500, 2),
    _rcp(1008, "henri@example.com", "Henri", "Martin", 1, dt.date(1978, 3, 3), 10, 201, "Lyon", "FR", 60, 0),
]
SUBSCRIPTIONS = [
    {"iRecipientId": 1001, "iServiceId": 100, "sOrigin": "web", "tsExpirationDate": dt.datetime(2030, 1, 1)},
    {"iRecipientId": 1001, "iServiceId": 101, "sOrigin": "api", "tsExpirationDate": None},
    {"iRecipientId": 1002, "iServiceId": 100, "sOrigin": "web", "tsExpirationDate": None},
    {"iRecipientId": 1003, "iServiceId": 101, "sOrigin": "import", "tsExpirationDate": dt.datetime(2030, 6, 1)},
    {"iRecipientId": 1007, "iServiceId": 100, "sOrigin": "web", "tsExpirationDate": dt.datetime(2020, 1, 1)},
]
DELIVERIES = [
    {"iDeliveryId": 300, "sInternalName": "DM1", "sLabel": "Live", "iDeleteStatus": 0},
    {"iDeliveryId": 301, "sInternalName": "DM2", "sLabel": "Binned", "iDeleteStatus": 1},
]


def seed(instance: Instance) -> None:
    storage = instance.storage
    for schema_id, rows in [("xtk:folder", FOLDERS), ("nms:service", SERVICES), ("nms:country", COUNTRIES),
                            ("cus:store", STORES), ("nms:recipient", RECIPIENTS),
                            ("nms:subscription", SUBSCRIPTIONS), ("nms:delivery", DELIVERIES)]:
        table = storage.table(schema_id)
        with storage.write(storage.home(schema_id)) as conn:
            for row in rows:  # rows have different keys: one statement each
                conn.execute(sa.insert(table).values(row))
    replicate(storage)


def open_instance(path: Path, env: dict[str, str]) -> Instance:
    instance = Instance.open(path, schema_dirs=[str(CUSTOM_SCHEMAS)], environ=env)
    instance.init(environ=env)
    seed(instance)
    return instance


def backend_environment(kind: str, dbs: PgDatabases | None) -> dict[str, str]:
    """The same deployment shapes as conftest's backend_env, for a module-scoped instance."""
    env: dict[str, str] = {"OPENCAMPAIGN_ADMIN_PASSWORD": "test-admin-password"}
    if kind in ("postgres", "single-postgres"):
        if dbs is None:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
            pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
        env["OPENCAMPAIGN_LOCAL_DB"] = dbs.new()
        if kind == "postgres":
            env["OPENCAMPAIGN_CLOUD_DB"] = dbs.new()
        else:
            env["OPENCAMPAIGN_SINGLE_DATABASE"] = "1"
    elif kind == "single-sqlite":
        env["OPENCAMPAIGN_SINGLE_DATABASE"] = "1"
    return env


@pytest.fixture(scope="module", params=BACKENDS)
def inst(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    dbs = PgDatabases() if PG_AVAILABLE else None
    instance = open_instance(tmp_path_factory.mktemp(request.param), backend_environment(request.param, dbs))
    yield instance
    instance.close()
    if dbs is not None:
        dbs.drop_all()


def q(instance: Instance, document: Any, ctx: CallContext = USER, **kw: Any) -> etree._Element:
    return execute_query(instance.storage, instance.registry, document, ctx, **kw)


def text(elem: etree._Element) -> str:
    return etree.tostring(elem, encoding="unicode")


def ids(elem: etree._Element) -> list[int]:
    return [int(row.get("id")) for row in elem]


def where(*conditions: str, schema: str = "nms:recipient", select: str = '<node expr="@id"/>',
          order: str = '<orderBy><node expr="@id"/></orderBy>', extra: str = "") -> str:
    conds = "".join(conditions)
    return (f'<queryDef schema="{schema}" operation="select"{extra}><select>{select}</select>'
            f"<where>{conds}</where>{order}</queryDef>")


def cond(expr: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-") if k == "bool_operator" else k}="{v}"' for k, v in attrs.items())
    return f"<condition expr=\"{expr.replace('&', '&amp;').replace('<', '&lt;').replace(chr(34), '&quot;')}\"{extra}/>"


def matching(instance: Instance, expr: str, schema: str = "nms:recipient") -> list[int]:
    return ids(q(instance, where(cond(expr), schema=schema)))


def api_error(instance: Instance, document: Any, ctx: CallContext = USER) -> DataApiError:
    with pytest.raises(DataApiError) as info:
        q(instance, document, ctx)
    return info.value


# -- output shapes (soap-protocol.md §7) ---------------------------------------------------------


def test_select_shape_matches_sdk_fixture(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:service" operation="select" lineCount="2" xtkschema="xtk:queryDef">'
           '<select><node expr="@id"/><node expr="@name"/></select>'
           '<where><condition expr="@type=0"/></where><orderBy><node expr="@name"/></orderBy></queryDef>')
    out = q(inst, doc)
    assert text(out) == '<service-collection><service id="102" name="empty"/><service id="100" name="newsletter"/></service-collection>'
    assert xml_to_simplejson(out) == {"service": [{"id": "102", "name": "empty"}, {"id": "100", "name": "newsletter"}]}


def test_select_one_row_and_empty(inst: Instance) -> None:
    one = q(inst, '<queryDef schema="nms:service" operation="select"><select><node expr="@id"/></select>'
                  '<where><condition expr="@name=\'alerts\'"/></where></queryDef>')
    assert text(one) == '<service-collection><service id="101"/></service-collection>'
    assert xml_to_simplejson(one) == {"service": [{"id": "101"}]}
    empty = q(inst, '<queryDef schema="nms:service" operation="select"><select><node expr="@id"/></select>'
                    '<where><condition expr="@name=\'nope\'"/></where></queryDef>')
    assert text(empty) == "<service-collection/>"


def test_get_get_if_exists_and_count(inst: Instance) -> None:
    get = '<queryDef schema="nms:service" operation="{op}"><select><node expr="@name"/><node expr="@id"/></select><where><condition expr="@id = {id}"/></where></queryDef>'
    assert text(q(inst, get.format(op="get", id=100))) == '<service name="newsletter" id="100"/>'
    assert text(q(inst, get.format(op="getIfExists", id=101))) == '<service name="alerts" id="101"/>'
    assert text(q(inst, get.format(op="getIfExists", id=999))) == "<service/>"
    err = api_error(inst, get.format(op="get", id=999))
    assert err.code == "XTK-170041" and "nms:service" in err.message
    assert text(q(inst, '<queryDef schema="nms:service" operation="count"/>')) == '<service count="3"/>'
    assert q(inst, '<queryDef schema="nms:recipient" operation="count"/>').get("count") == "8"


def test_links_nest_unless_aliased_and_elements_nest(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="get"><select>'
           '<node expr="@email"/><node expr="[folder/@label]"/><node expr="[folder/@name]"/>'
           '<node expr="location/@city"/><node expr="[store/@name]" alias="@storeName"/>'
           '<node expr="[folder/parent/@label]"/></select>'
           '<where><condition expr="@id = 1003"/></where></queryDef>')
    assert text(q(inst, doc)) == (
        '<recipient email="chloe@example.com" storeName="Paris Store"><folder label="VIP" name="vip">'
        '<parent label="Recipients"/></folder><location city="Paris"/></recipient>')


def test_default_select_returns_every_column_field(inst: Instance) -> None:
    out = q(inst, '<queryDef schema="cus:store" operation="get"><where><condition expr="@code=\'LYO\'"/></where></queryDef>')
    assert out.get("id") == "201" and out.get("name") == "Lyon Store" and out.get("surface") == "0"
    assert out.find("address").get("city") == "Lyon"


def test_link_node_gives_key_and_compute_string(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/><node expr="folder"/>'
           '<node expr="store" noComputeString="true"/></select><where><condition expr="@id=1001"/></where></queryDef>')
    assert text(q(inst, doc)) == '<recipient id="1001"><folder id="10" _cs="Recipients"/><store id="200"/></recipient>'


def test_typed_formatting(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="get"><select><node expr="@birthDate"/><node expr="@created"/>'
           '<node expr="@blackList"/><node expr="@loyaltyPoints / 8" alias="@ratio"/><node expr="@id &gt; 1000" alias="@big"/>'
           '</select><where><condition expr="@id=1002"/></where></queryDef>')
    out = q(inst, doc)
    assert out.attrib == {"birthDate": "1985-11-20", "created": "2024-01-03 08:00:00.000Z", "blackList": "1",
                          "ratio": "5", "big": "1"}


def test_analyze_enumeration_and_enum_names_in_conditions(inst: Instance) -> None:
    doc = where(cond("@gender = 'female'"), select='<node expr="@id"/><node expr="@gender" analyze="true"/>'
                '<node expr="@loyaltyTier" analyze="true"/>')
    out = q(inst, doc)
    assert [r.attrib for r in out][0] == {"id": "1001", "gender": "2", "genderName": "female", "genderLabel": "Female",
                                          "loyaltyTier": "1", "loyaltyTierName": "silver", "loyaltyTierLabel": "Silver"}
    assert ids(out) == [1001, 1003, 1007]
    assert matching(inst, "@loyaltyTier IN ('gold', 1)") == [1001, 1003, 1005, 1007]
    err = api_error(inst, where(cond("@gender = 'robot'")))
    assert "not valid for the 'nms:recipient:gender' enumeration" in err.lines[0]


def test_special_characters_in_values(inst: Instance) -> None:
    expected = 'A&B <"x">\n\tY\ufffdZ\u00e9'  # a control character cannot travel in XML
    for operation in ("select", "get"):
        out = q(inst, f'<queryDef schema="nms:recipient" operation="{operation}"><select><node expr="@company"/>'
                      f'<node expr="@company" alias="info/@company"/></select>'
                      f'<where><condition expr="@id = 1001"/></where></queryDef>')
        row = out[0] if operation == "select" else out
        assert row.get("company") == expected and row.find("info").get("company") == expected
        assert etree.fromstring(etree.tostring(out)).xpath("string(//@company)") == expected


def test_repeated_alias_keeps_the_last_value(inst: Instance) -> None:
    doc = where(cond("@id = 1002"), select='<node expr="@email" alias="@x"/><node expr="@firstName" alias="@x"/>')
    assert text(q(inst, doc)) == '<recipient-collection><recipient x="Bob"/></recipient-collection>'


def test_json_document(inst: Instance) -> None:
    doc = {"queryDef": {"schema": "nms:service", "operation": "select", "lineCount": 2,
                        "select": {"node": [{"expr": "@id"}, {"expr": "@name"}]},
                        "where": {"condition": [{"expr": "@type=0"}]}, "orderBy": {"node": [{"expr": "@name"}]}}}
    assert xml_to_simplejson(q(inst, doc)) == {"service": [{"id": "102", "name": "empty"}, {"id": "100", "name": "newsletter"}]}


def test_text_and_xml_fields(inst: Instance) -> None:
    doc = ('<queryDef schema="xtk:folder" operation="select"><select><node expr="@name"/>'
           '<node expr="[where/@filteringSchema]"/></select><orderBy><node expr="@id"/></orderBy></queryDef>')
    assert text(q(inst, doc)) == (
        '<folder-collection><folder name="nmsRootRecipient"><where filteringSchema=""/></folder>'
        '<folder name="vip"><where filteringSchema="nms:recipient"/></folder></folder-collection>')
    err = api_error(inst, where(cond("[where/@filteringSchema] = 'x'"), schema="xtk:folder"))
    assert err.code == "XTK-170036" and "stored in XML" in err.lines[0]
    err = api_error(inst, '<queryDef schema="xtk:folder" operation="select"><select><node expr="@id"/></select>'
                          '<orderBy><node expr="[where/@filteringSchema]"/></orderBy></queryDef>')
    assert "stored in XML" in err.lines[0]


# -- conditions ----------------------------------------------------------------------------------


def test_comparisons_and_operators(inst: Instance) -> None:
    assert matching(inst, "@loyaltyPoints >= 100") == [1001, 1003, 1007]
    assert matching(inst, "@loyaltyPoints > 50 AND @loyaltyPoints < 200") == [1001, 1005, 1008]
    assert matching(inst, "@lastName = 'Martin' OR @firstName = 'Bob'") == [1001, 1002, 1008]
    assert matching(inst, "NOT (@gender = 1) AND @loyaltyPoints != 0") == [1001, 1003, 1005, 1007]
    assert matching(inst, "@loyaltyPoints * 2 + 10 = 250") == [1001]
    assert matching(inst, "(@loyaltyPoints - 20) / 2 = 10") == [1002]
    assert matching(inst, "-@loyaltyPoints < -299") == [1003, 1007]
    assert matching(inst, "@lastName + ', ' + @firstName = 'Martin, Henri'") == [1008]
    assert matching(inst, "@birthDate < #1980-01-01#") == [1005, 1007, 1008]
    assert matching(inst, "@birthDate = '1990-05-04'") == [1001]
    assert matching(inst, "@created >= #2024-01-07T08:00:00Z#") == [1006, 1007, 1008]
    assert matching(inst, "@created > #2024-01-07T08:00:00Z#") == [1007, 1008]
    assert matching(inst, "@blackList = true") == [1002]
    assert matching(inst, "@blackList") == [1002]
    assert matching(inst, "@id IN (1001, 1004, 9999)") == [1001, 1004]
    assert matching(inst, "@id NOT IN (1001, 1004)") == [1002, 1003, 1005, 1006, 1007, 1008]


def test_null_and_empty_strings(inst: Instance) -> None:
    assert matching(inst, "@email IS NULL") == [1006]
    assert matching(inst, "@email = ''") == [1006]
    assert matching(inst, "@birthDate IS NULL") == [1004]
    assert matching(inst, "@birthDate IS NOT NULL AND @id < 1004") == [1001, 1002, 1003]
    assert matching(inst, "location/@city IS NULL") == [1005]
    assert len(matching(inst, "@email <> ''")) == 7


def test_like_is_case_sensitive_and_escapes(inst: Instance) -> None:
    assert matching(inst, "@email LIKE '%@example.com'") == [1001, 1003, 1005, 1008]
    assert matching(inst, "Lower(@email) LIKE '%@example.com'") == [1001, 1003, 1005, 1007, 1008]
    assert matching(inst, "@email NOT LIKE '%example%'") == [1004, 1007]
    assert matching(inst, "@lastName LIKE 'O\\'%'") == [1005]
    assert matching(inst, "@firstName LIKE '_lice'") == [1001]
    assert matching(inst, "@firstName LIKE '\\_lice'") == []


def test_bool_operator_joins_to_next_sibling(inst: Instance) -> None:
    # A OR B AND C == A OR (B AND C); both spellings of the attribute
    doc = where(cond("@id = 1001", boolOperator="OR"), cond("@gender = 1"), cond("location/@city = 'Lyon'"))
    assert ids(q(inst, doc)) == [1001, 1002, 1006, 1008]
    doc = where(cond("@id = 1001", bool_operator="OR"), cond("@id = 1002"))
    assert ids(q(inst, doc)) == [1001, 1002]
    nested = where('<condition boolOperator="OR"><condition expr="@id = 1001" boolOperator="OR"/>'
                   '<condition expr="@id = 1002"/></condition><condition expr="@id = 1003"/>')
    assert ids(q(inst, nested)) == [1001, 1002, 1003]
    assert ids(q(inst, where(cond("@id = 1001", ignore="true"), cond("@id < 1003")))) == [1001, 1002]


def test_link_conditions(inst: Instance) -> None:
    assert matching(inst, "[folder/@name] = 'vip'") == [1003, 1004]
    assert matching(inst, "[folder/parent/@name] = 'nmsRootRecipient'") == [1003, 1004]
    assert matching(inst, "[store/address/@city] = 'Lyon'") == [1002, 1008]
    assert matching(inst, "[@folder-id] = 0") == [1006]
    # externalJoin: recipients whose country code has no row are kept with an empty label
    doc = where(cond("@id >= 1004 AND @id <= 1006"), select='<node expr="@id"/><node expr="[country/@label]"/>')
    assert text(q(inst, doc)) == ('<recipient-collection><recipient id="1004"><country label="United States"/></recipient>'
                                  '<recipient id="1005"><country label=""/></recipient>'
                                  '<recipient id="1006"><country label=""/></recipient></recipient-collection>')


def test_calculated_fields(inst: Instance) -> None:
    assert matching(inst, "@domain = 'example.org'") == [1002]
    doc = where(cond("@id = 1004"), select='<node expr="@domain"/><node expr="@age"/>', order="")
    assert text(q(inst, doc)) == '<recipient-collection><recipient domain="test.net" age=""/></recipient-collection>'
    age = int(q(inst, where(cond("@id = 1007"), select='<node expr="@age"/>'))[0].get("age"))
    assert age >= 74
    doc = ('<queryDef schema="nms:subscription" operation="select"><select><node expr="@serviceName"/>'
           '<node expr="[recipient/@email]"/></select><where><condition expr="@serviceName = \'alerts\'"/></where>'
           '<orderBy><node expr="[recipient/@id]"/></orderBy></queryDef>')
    assert text(q(inst, doc)) == (
        '<subscription-collection><subscription serviceName="alerts"><recipient email="alice@example.com"/></subscription>'
        '<subscription serviceName="alerts"><recipient email="chloe@example.com"/></subscription></subscription-collection>')
    assert matching(inst, "@messageType = 1", schema="nms:service") == [101]


def test_functions(inst: Instance) -> None:
    assert matching(inst, "Upper(@firstName) = 'GRACE'") == [1007]
    assert matching(inst, "Length(@lastName) = 5") == [1003, 1004]
    assert matching(inst, "Left(@email, 3) = 'bob'") == [1002]
    assert matching(inst, "Substring(@email, 2, 3) = 'lic'") == [1001]
    assert matching(inst, "Charindex(@email, '@') = 6") == [1001, 1003, 1004, 1007, 1008]
    assert matching(inst, "Abs(@loyaltyPoints - 100) < 30") == [1001, 1005]
    assert matching(inst, "Round(@loyaltyPoints / 7, 1) = 17.1") == [1001]
    assert matching(inst, "Year(@birthDate) = 1990 OR Month(@birthDate) = 11") == [1001, 1002]
    assert matching(inst, "Iif(@gender = 2, @loyaltyPoints, 0) > 200") == [1003, 1007]
    assert matching(inst, "Case(When(@loyaltyTier = 2, 'gold'), Else('other')) = 'gold'") == [1003, 1007]
    assert matching(inst, "Coalesce(@birthDate, #2000-01-01#) = #2000-01-01#") == [1004]
    assert matching(inst, "ToString(@loyaltyPoints) = '75'") == [1005]
    assert matching(inst, "AddDays(@birthDate, 1) = #1970-01-02#") == [1005]
    assert matching(inst, "GetEmailDomain(@email) = 'test.net'") == [1004]
    assert matching(inst, "HasNamedRight('delivery') AND @id = 1001") == [1001]
    assert matching(inst, "HasNamedRight('admin') OR @id = 1002") == [1002]


def test_variables(inst: Instance) -> None:
    ctx = CallContext(login="jdoe", login_id=1001, variables={"minPoints": 100, "city": "Lyon", "since": "1990-01-01"})
    assert ids(q(inst, where(cond("@id = $(loginId)")), ctx)) == [1001]
    assert ids(q(inst, where(cond("@loyaltyPoints >= $(minPoints)")), ctx)) == [1001, 1003, 1007]
    assert ids(q(inst, where(cond("location/@city = $(city) AND @gender = 1")), ctx)) == [1002, 1006, 1008]
    assert ids(q(inst, where(cond("@birthDate >= $date(since)")), ctx)) == [1001, 1003, 1006]
    assert ids(q(inst, where(cond("$(login) = 'jdoe' AND @id = 1002")), ctx)) == [1002]
    err = api_error(inst, where(cond("@id = $(nothere)")), ctx)
    assert err.code == "XTK-170006" and "nothere" in err.lines[0]


# -- collections, sub-queries, sub-selects -------------------------------------------------------


def test_exists_and_not_exists(inst: Instance) -> None:
    exists = where('<condition expr="subscription" setOperator="EXISTS"/>')
    assert ids(q(inst, exists)) == [1001, 1002, 1003, 1007]
    flat = where('<condition expr="subscription" setOperator="EXISTS">'
                 '<condition expr="[service/@name] = \'newsletter\'"/>'
                 '<condition expr="@expirationDate IS NULL" boolOperator="OR"/>'
                 '<condition expr="@expirationDate &gt; #2025-01-01#"/></condition>')
    assert ids(q(inst, flat)) == [1001, 1002, 1003]  # (A AND B) OR C
    nested = where('<condition expr="subscription" setOperator="EXISTS">'
                   '<condition expr="[service/@name] = \'newsletter\'"/><condition>'
                   '<condition expr="@expirationDate IS NULL" boolOperator="OR"/>'
                   '<condition expr="@expirationDate &gt; #2025-01-01#"/></condition></condition>')
    assert ids(q(inst, nested)) == [1001, 1002]
    not_exists = where('<condition expr="subscription" setOperator="NOT EXISTS"/>', cond("@id < 1006"))
    assert ids(q(inst, not_exists)) == [1004, 1005]
    # [../@x] reads the outer row: subscriptions made through the channel of the recipient's gender
    outer = where('<condition expr="subscription" setOperator="EXISTS">'
                  '<condition expr="[service/@type] = [../@gender] - 1"/></condition>')
    assert ids(q(inst, outer)) == [1001, 1002, 1003]
    services = where('<condition expr="subscription" setOperator="NOT EXISTS"/>', schema="nms:service")
    assert ids(q(inst, services)) == [102]


def test_in_sub_query(inst: Instance) -> None:
    sub = ('<condition expr="@id" setOperator="{op}"><subQuery schema="nms:subscription">'
           '<select><node expr="[@recipient-id]"/></select>'
           '<where><condition expr="@origin = \'web\'"/></where></subQuery></condition>')
    assert ids(q(inst, where(sub.format(op="IN")))) == [1001, 1002, 1007]
    assert ids(q(inst, where(sub.format(op="NOT IN")))) == [1003, 1004, 1005, 1006, 1008]
    correlated = ('<condition expr="@id" setOperator="IN"><subQuery schema="nms:subscription">'
                  '<select><node expr="[@recipient-id]"/></select>'
                  '<where><condition expr="[recipient/@loyaltyPoints] = [../@loyaltyPoints]"/></where>'
                  '</subQuery></condition>')
    assert ids(q(inst, where(correlated))) == [1001, 1002, 1003, 1007]
    grouped = ('<condition expr="@id" setOperator="IN"><subQuery schema="nms:subscription">'
               '<select><node expr="[@recipient-id]"/></select><groupBy><node expr="[@recipient-id]"/></groupBy>'
               '<having><condition expr="Count(@origin) &gt; 1"/></having></subQuery></condition>')
    assert ids(q(inst, where(grouped))) == [1001]


def _counting(instance: Instance) -> tuple[list[str], Any]:
    engine = instance.storage.engine(instance.storage.home("nms:recipient"))
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", listener)


def test_collection_sub_select_one_statement_per_collection(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/>'
           '<node expr="subscription"><node expr="[service/@name]"/><node expr="@origin"/>'
           '<where><condition expr="@origin &lt;&gt; \'api\'"/></where>'
           '<orderBy><node expr="[service/@name]" sortDesc="true"/></orderBy></node>'
           '</select><where><condition expr="@id &lt;= 1004"/></where><orderBy><node expr="@id"/></orderBy></queryDef>')
    seen, stop = _counting(inst)
    try:
        out = q(inst, doc)
    finally:
        stop()
    assert len(seen) == 2
    assert text(out) == (
        '<recipient-collection>'
        '<recipient id="1001"><subscription origin="web"><service name="newsletter"/></subscription></recipient>'
        '<recipient id="1002"><subscription origin="web"><service name="newsletter"/></subscription></recipient>'
        '<recipient id="1003"><subscription origin="import"><service name="alerts"/></subscription></recipient>'
        '<recipient id="1004"/></recipient-collection>')
    nested = ('<queryDef schema="nms:service" operation="select"><select><node expr="@name"/>'
              '<node expr="subscription"><node expr="[recipient/@id]"/><orderBy><node expr="[recipient/@id]"/></orderBy></node>'
              '</select><orderBy><node expr="@name"/></orderBy></queryDef>')
    assert text(q(inst, nested)) == (
        '<service-collection><service name="alerts"><subscription><recipient id="1001"/></subscription>'
        '<subscription><recipient id="1003"/></subscription></service><service name="empty"/>'
        '<service name="newsletter"><subscription><recipient id="1001"/></subscription>'
        '<subscription><recipient id="1002"/></subscription><subscription><recipient id="1007"/></subscription>'
        '</service></service-collection>')


def test_sub_select_aggregates_land_on_the_parent(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/>'
           '<node expr="subscription"><node expr="Count()" alias="../@subscriptions"/>'
           '<node expr="Max(@origin)" alias="../@lastOrigin"/></node></select>'
           '<where><condition expr="@id &lt;= 1004"/></where><orderBy><node expr="@id"/></orderBy></queryDef>')
    assert text(q(inst, doc)) == (
        '<recipient-collection><recipient id="1001" subscriptions="2" lastOrigin="web"/>'
        '<recipient id="1002" subscriptions="1" lastOrigin="web"/>'
        '<recipient id="1003" subscriptions="1" lastOrigin="import"/><recipient id="1004"/></recipient-collection>')


def test_group_by_having_and_aggregates(inst: Instance) -> None:
    doc = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="@gender"/>'
           '<node expr="Count(@id)" alias="@count"/><node expr="Sum(@loyaltyPoints)" alias="@points"/>'
           '<node expr="Max(@birthDate)" alias="@youngest"/></select>'
           '<groupBy><node expr="@gender"/></groupBy><having><condition expr="Count(@id) &gt; 1"/></having>'
           '<orderBy><node expr="@gender"/></orderBy></queryDef>')
    assert [r.attrib for r in q(inst, doc)] == [
        {"gender": "1", "count": "4", "points": "110", "youngest": "1999-12-31"},
        {"gender": "2", "count": "3", "points": "920", "youngest": "2001-02-28"}]
    implicit = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="location/@city"/>'
                '<node expr="CountAll()" alias="@n"/></select><orderBy><node expr="location/@city"/></orderBy></queryDef>')
    assert [(r.find("location").get("city"), r.get("n")) for r in q(inst, implicit)] == [
        ("Lyon", "3"), ("New York", "1"), ("Paris", "3"), ("", "1")]
    count = '<queryDef schema="nms:recipient" operation="count"><groupBy><node expr="location/@city"/></groupBy></queryDef>'
    assert q(inst, count).get("count") == "4"
    distinct = ('<queryDef schema="nms:recipient" operation="{op}" distinct="true"><select><node expr="@lastName"/>'
                '</select><where><condition expr="@gender = 1"/></where><orderBy><node expr="@lastName"/></orderBy></queryDef>')
    assert [r.get("lastName") for r in q(inst, distinct.format(op="select"))] == ["Durand", "Martin", "Nomail", "Smith"]
    assert q(inst, distinct.format(op="count")).get("count") == "4"


def test_order_by_and_paging(inst: Instance) -> None:
    page = ('<queryDef schema="nms:recipient" operation="select" lineCount="3" startLine="{start}">'
            '<select><node expr="@id"/></select><orderBy><node expr="@lastName"/>'
            '<node expr="@firstName" sortDesc="true"/></orderBy></queryDef>')
    pages = [ids(q(inst, page.format(start=s))) for s in (0, 3, 6, 9)]
    assert pages == [[1002, 1008, 1001], [1006, 1005, 1003], [1004, 1007], []]
    nulls = ids(q(inst, '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select>'
                        '<orderBy><node expr="@birthDate" sortDesc="true"/></orderBy></queryDef>'))
    assert nulls[0] == 1004  # nulls first when descending, as PostgreSQL
    capped = q(inst, '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select></queryDef>',
               default_line_count=5)
    assert len(capped) == 5


def test_recycle_bin_rows_hidden_unless_asked(inst: Instance) -> None:
    doc = '<queryDef schema="nms:delivery" operation="count"{extra}/>'
    assert q(inst, doc.format(extra="")).get("count") == "1"
    assert q(inst, doc.format(extra=' ignoreDeleteStatus="true"')).get("count") == "2"


def test_empty_row_never_returned(inst: Instance) -> None:
    assert ids(q(inst, '<queryDef schema="xtk:folder" operation="select"><select><node expr="@id"/></select>'
                       '<orderBy><node expr="@id"/></orderBy></queryDef>')) == [10, 11]
    assert matching(inst, "@id = 0") == []
    assert q(inst, '<queryDef schema="xtk:folder" operation="count"><where><condition expr="@name IS NULL"/></where>'
                   '</queryDef>').get("count") == "0"


# -- refusals ------------------------------------------------------------------------------------


def test_unknown_attribute_message(inst: Instance) -> None:
    err = api_error(inst, where(cond("@nothing = 1")))
    assert err.lines == ["Attribute 'nothing' unknown (see definition of schema 'Recipients (nms:recipient)')",
                         "XTK-170036 Unable to parse expression '@nothing = 1'."]
    assert err.client
    assert "Element 'nowhere' unknown" in api_error(inst, where(cond("[nowhere/@x] = 1"))).lines[0]


@pytest.mark.parametrize("expr, fragment", [
    ("Frobnicate(@email) = 1", "Function 'Frobnicate' unknown"),
    ("@email = 5", "Cannot compare"),
    ("@email - 1 = 0", "needs numbers"),
    ("@birthDate LIKE '19%'", "LIKE compares strings"),
    ("[subscription/@origin] = 'web'", "collection"),
    ("@email = ", "Unexpected end of expression"),
    ("Upper(@loyaltyPoints) = 'X'", "must be a string"),
    ("[folder] = 1", "is a link"),
    ("Count(Sum(@id)) > 1", "cannot be nested"),
    ("When(@id = 1, 2) = 2", "only be used inside Case"),
    ("[nms:recipient:@email] = 'x'", "Ad-hoc join"),
    ("[../@id] = 1", "outer query"),
    ("DefaultFolder('x') = 1", "schema defaults"),
])
def test_bad_expressions_are_refused(inst: Instance, expr: str, fragment: str) -> None:
    err = api_error(inst, where(cond(expr)))
    assert err.code == "XTK-170036"
    assert fragment in err.lines[0], err.lines


def test_bad_documents_are_refused(inst: Instance) -> None:
    assert api_error(inst, '<queryDef schema="nms:nothing" operation="select"/>').code == "XSV-350000"
    assert api_error(inst, '<queryDef schema="nms:recipient" operation="delete"/>').code == "XTK-170030"
    assert api_error(inst, '<queryDef operation="select"/>').code == "XTK-170030"
    assert api_error(inst, '<queryDef schema="nms:recipient" lineCount="-1"/>').code == "XTK-170030"
    assert api_error(inst, '<queryDef schema="nms:recipient"><where><condition expr="subscription" '
                           'setOperator="SUM"/></where></queryDef>').code == "XTK-170030"
    assert api_error(inst, '<queryDef schema="xtk:queryDef"/>').code == "XTK-170030"
    assert api_error(inst, "<queryDef schema='nms:recipient'><select>").code == "XTK-170030"
    assert api_error(inst, '<!DOCTYPE x [<!ENTITY e "x">]><queryDef schema="nms:recipient"/>').code == "XTK-170030"
    assert api_error(inst, where(cond("@id = 1"), select='<node expr="@id" alias="@bad name"/>')).code == "XTK-170030"


def test_raw_sql_needs_privilege(inst: Instance) -> None:
    with_sql = where('<condition sql="1=1"/>')
    err = api_error(inst, with_sql)
    assert err.code == "XSV-350082" and err.client
    assert api_error(inst, where(cond("@id = 1", aliasSqlTable="T"))).code == "XSV-350082"
    assert api_error(inst, where(cond("@id = 1001"), select='<node sql="1" alias="@one"/>')).code == "XSV-350082"
    assert len(ids(q(inst, with_sql, TRUSTED))) == 8
    assert ids(q(inst, where('<condition sql="\'a:b%\' LIKE \'a:b%%\'"/>', cond("@id = 1001")), TRUSTED)) == [1001]
    out = q(inst, where(cond("@id = 1001"), select='<node expr="@id"/><node sql="40 + 2" alias="@answer"/>'), TRUSTED)
    assert out[0].get("answer") == "42"


def test_local_schema_runs_on_its_cloud_replica_when_needed(inst: Instance) -> None:
    # xtk:folder is local, but replicated to the cloud: the query runs on the replica
    doc = where('<condition expr="recipient" setOperator="EXISTS"/>', schema="xtk:folder")
    assert ids(q(inst, doc)) == [10, 11]
    services = ('<queryDef schema="nms:service" operation="select"><select><node expr="@name"/>'
                '<node expr="subscription"><node expr="@origin"/></node></select>'
                '<where><condition expr="@id = 101"/></where></queryDef>')
    assert text(q(inst, services)) == ('<service-collection><service name="alerts"><subscription origin="api"/>'
                                       '<subscription origin="import"/></service></service-collection>')


def _table_counts(instance: Instance) -> dict[str, int]:
    counts = {}
    for schema_id in ("nms:recipient", "nms:subscription", "xtk:folder", "nms:service"):
        table = instance.storage.table(schema_id)
        with instance.storage.engine(instance.storage.home(schema_id)).connect() as conn:
            counts[schema_id] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return counts


HOSTILE = [
    "@email = 'x'' OR ''1''=''1'",
    "@email = 'x\\' OR 1=1 --'",
    "@email = 'a'; DROP TABLE NmsRecipient; --'",
    "@email = \"x\" OR 1=1",
    "@email = 'x' UNION SELECT sPassword FROM XtkOperator",
    "[@email; DROP TABLE NmsRecipient] = 'x'",
    "Lower(@email); DELETE FROM NmsRecipient",
    "pg_sleep(5) = 1",
    "@email = $(x'); DROP TABLE NmsRecipient; --)",
    "@email = '" + "a" * 100 + "\x00'",
]


@pytest.mark.parametrize("expr", HOSTILE)
def test_hostile_expressions_leave_tables_intact(inst: Instance, expr: str) -> None:
    before = _table_counts(inst)
    try:
        out = q(inst, where(cond(expr)))
    except DataApiError as err:
        assert err.code.startswith(("XTK-", "XSV-")), err.lines  # refused before reaching the database
    else:
        assert ids(out) == []  # a string constant compared as data, never as SQL
    assert _table_counts(inst) == before


def test_huge_and_deep_inputs_are_refused(inst: Instance) -> None:
    huge = "@email = '" + "x" * (10 * 1024 * 1024) + "'"
    assert api_error(inst, where(cond(huge))).code in ("XTK-170030", "XTK-170036")  # XML text: parser limit
    as_json = {"queryDef": {"schema": "nms:recipient", "where": {"condition": [{"expr": huge}]}}}
    err = api_error(inst, as_json)
    assert err.code == "XTK-170036" and "too long" in err.lines[0]
    assert len(str(err)) < 2000
    deep = "(" * 500 + "@id = 1" + ")" * 500
    assert api_error(inst, where(cond(deep))).code == "XTK-170036"
    many = " OR ".join(f"@id = {i}" for i in range(1000, 4000))
    assert ids(q(inst, where(cond(many)))) == [r["iRecipientId"] for r in RECIPIENTS]
    nested = "<condition>" * 100 + '<condition expr="@id = 1"/>' + "</condition>" * 100
    assert api_error(inst, where(nested)).code == "XTK-170030"


# -- BuildQuery ----------------------------------------------------------------------------------


def test_build_query_shows_sql_with_constants(inst: Instance) -> None:
    doc = where(cond("@email = 'alice@example.com' AND [folder/@name] = 'vip'"),
                select='<node expr="@id"/><node expr="[store/@name]"/>')
    sql = build_query(inst.storage, inst.registry, doc, USER)
    lowered = sql.lower()
    assert "nmsrecipient" in lowered and "xtkfolder" in lowered and "cusstore" in lowered
    assert "'alice@example.com'" in sql and "join" in lowered and "limit" in lowered
    count = build_query(inst.storage, inst.registry, '<queryDef schema="nms:recipient" operation="count"/>', USER)
    assert "count(" in count.lower() and "!= 0" in count


def test_compile_where_for_other_statements(inst: Instance) -> None:
    where = etree.fromstring('<where><condition expr="[folder/@name] = \'vip\'"/></where>')
    compiled = compile_where(inst.storage, inst.registry, "nms:recipient", where, USER)
    statement = sa.select(compiled.table.c.iRecipientId).select_from(compiled.from_clause).where(*compiled.clauses)
    with inst.storage.engine(compiled.role).connect() as conn:
        assert sorted(r[0] for r in conn.execute(statement)) == [1003, 1004]
    everything = compile_where(inst.storage, inst.registry, "nms:delivery", None, USER)
    assert len(everything.clauses) == 2  # id-0 row and recycle bin


def test_parse_querydef_model() -> None:
    qd = parse_querydef('<queryDef schema="nms:recipient" operation="getIfExists" lineCount="5" startLine="10">'
                        '<select><node expr="@a" alias="@b" analyze="true"/></select>'
                        '<where><condition expr="x" bool-operator="or"/><condition expr="subscription" '
                        'setOperator="not  exists"><condition expr="y"/></condition></where></queryDef>')
    assert (qd.operation, qd.line_count, qd.start_line) == ("getIfExists", 5, 10)
    assert qd.select[0].alias == "@b" and qd.select[0].analyze
    assert qd.where[0].bool_or and qd.where[1].set_operator == "NOT EXISTS" and qd.where[1].children[0].expr == "y"
