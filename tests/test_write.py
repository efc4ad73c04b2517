"""Write / WriteCollection on every deployment shape (SQLite, DuckDB, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query import persist
from opencampaign.query.errors import DataApiError
from opencampaign.query.write import write, write_collection
from opencampaign.storage.placement import CLOUD

from .conftest import CUSTOM_SCHEMAS

CTX = CallContext(login="admin", login_id=1234, rights=frozenset({"admin"}))

# A schema with XML fields, an XML collection, free XML, and links of every integrity.
TEST_SCHEMAS = {
    "profile.xml": """
<srcSchema name="profile" namespace="tst" label="Profiles" labelSingular="Profile">
  <enumeration name="level" basetype="string"><value name="low" value="L"/><value name="high" value="H"/></enumeration>
  <element name="profile" autopk="true">
    <key name="code"><keyfield xpath="@code"/></key>
    <attribute name="code" type="string" length="16" default="'P'" defOnDuplicate="true"/>
    <attribute name="level" type="string" length="1" enum="level"/>
    <attribute name="note" type="string" xml="true"/>
    <attribute name="score" type="long" xml="true"/>
    <attribute name="seen" type="datetime" xml="true"/>
    <element name="prefs" xml="true">
      <attribute name="color" type="string"/>
      <element name="pref" unbound="true">
        <attribute name="name" type="string"/>
        <attribute name="value" type="string"/>
      </element>
    </element>
    <element name="comment" type="memo" xml="true"/>
    <element name="extra" type="ANY" xml="true"/>
    <element name="folder" type="link" target="xtk:folder" revLink="profile" revIntegrity="normal"/>
  </element>
</srcSchema>""",
    "line.xml": """
<srcSchema name="line" namespace="tst" label="Profile lines" labelSingular="Profile line">
  <element name="line" autopk="true">
    <attribute name="label" type="string" length="32"/>
    <element name="profile" type="link" target="tst:profile" revLink="line" revIntegrity="owncopy"/>
  </element>
</srcSchema>""",
}


@pytest.fixture
def inst(tmp_path: Path, backend_env: dict[str, str]) -> Iterator[Instance]:
    yield from make_instance(tmp_path, backend_env)


def make_instance(tmp_path: Path, backend_env: dict[str, str]) -> Iterator[Instance]:
    """An initialised instance with the test schemas and the folders the defaults point at."""
    schemas = tmp_path / "tst"
    schemas.mkdir()
    for name, text in TEST_SCHEMAS.items():
        (schemas / name).write_text(text)
    instance = Instance.open(tmp_path / "inst", schema_dirs=[str(CUSTOM_SCHEMAS), str(schemas)], environ=backend_env)
    instance.init(environ=backend_env)
    w(instance, '<folder xtkschema="xtk:folder" name="nmsRootRecipient" label="Recipients"/>')
    w(instance, '<folder xtkschema="xtk:folder" name="nmsService" label="Services"/>')
    yield instance
    instance.close()


def w(instance: Instance, document, ctx: CallContext = CTX) -> None:
    write(instance.storage, instance.registry, document, ctx)


def wc(instance: Instance, document, ctx: CallContext = CTX) -> None:
    write_collection(instance.storage, instance.registry, document, ctx)


def rows(instance: Instance, schema_id: str, *cols: str, where=None, role: str | None = None) -> list[tuple]:
    table = instance.storage.table(schema_id, role)
    query = sa.select(*[table.c[c] for c in cols])
    pk = instance.registry.get(schema_id).attribute("@id")
    if pk is not None and pk.sqlname in table.c:
        query = query.where(table.c[pk.sqlname] != 0)
    if where is not None:
        query = query.where(where(table))
    with instance.storage.engine(role or instance.storage.home(schema_id)).connect() as conn:
        found = [tuple(r) for r in conn.execute(query)]
    return sorted(found, key=lambda r: tuple((v is not None, v) for v in r))  # NULLs first on every engine


def folder_id(instance: Instance, name: str) -> int:
    return rows(instance, "xtk:folder", "iFolderId", where=lambda t: t.c.sName == name)[0][0]


def error_of(call) -> DataApiError:
    with pytest.raises(DataApiError) as info:
        call()
    return info.value


# --- reconciliation and operations ----------------------------------------------------------------


def test_insert_then_update_by_key_with_patch_semantics(inst: Instance):
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="ann@x.org" firstName="Ann" '
            'lastName="Lee" gender="female" birthDate="1956/05/04"><location city="Newton"/></recipient>')
    (rid, created, modified, by, mod_by, folder), = rows(
        inst, "nms:recipient", "iRecipientId", "tsCreated", "tsLastModified", "iCreatedById", "iModifiedById",
        "iFolderId")
    assert rid >= 1000 and by == mod_by == 1234 and created == modified is not None
    assert folder == folder_id(inst, "nmsRootRecipient")  # DefaultFolder('nmsRootRecipient')
    other = CallContext(login="bob", login_id=77)
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="ann@x.org" lastName="Smith"/>', other)
    assert rows(inst, "nms:recipient", "iRecipientId", "sEmail", "sFirstName", "sLastName", "iGender", "sCity",
                "tsBirthDate", "iCreatedById", "iModifiedById") == [
        (rid, "ann@x.org", "Ann", "Smith", 2, "Newton", rows(inst, "nms:recipient", "tsBirthDate")[0][0], 1234, 77)]
    assert str(rows(inst, "nms:recipient", "tsBirthDate")[0][0])[:10] == "1956-05-04"
    # by @id, then an empty value clears the field
    w(inst, f'<recipient xtkschema="nms:recipient" id="{rid}" firstName=""/>')
    assert rows(inst, "nms:recipient", "sFirstName") == [(None,)]


def test_every_operation(inst: Instance):
    w(inst, '<service xtkschema="nms:service" _operation="insert" name="SVC4" label="News"/>')
    err = error_of(lambda: w(inst, '<service xtkschema="nms:service" _operation="insert" name="SVC4"/>'))
    assert err.code == "XSV-350023"
    assert err.message == "Unable to save document of type 'Services (nms:service)'."
    assert err.detail_chain[0] == "A 'Service' with the same key 'SVC4' already exists."
    # update of a missing row is a no-op (docs/write.md)
    w(inst, '<service xtkschema="nms:service" _operation="update" name="NOPE" label="x"/>')
    w(inst, '<service xtkschema="nms:service" _operation="update" name="SVC4" label="Daily news"/>')
    assert rows(inst, "nms:service", "sName", "sLabel") == [("SVC4", "Daily news")]
    # none: reconcile only; missing -> error
    w(inst, '<service xtkschema="nms:service" _operation="none" name="SVC4" label="ignored"/>')
    assert rows(inst, "nms:service", "sLabel") == [("Daily news",)]
    err = error_of(lambda: w(inst, '<service xtkschema="nms:service" _operation="none" name="NOPE"/>'))
    assert "Unable to find document with path 'Service' from key 'NOPE'" in err.detail_chain[0]
    # delete, and delete of a missing row (no-op)
    w(inst, '<service xtkschema="nms:service" _operation="delete" name="SVC4"/>')
    w(inst, '<service xtkschema="nms:service" _operation="delete" name="SVC4"/>')
    assert rows(inst, "nms:service", "sName") == []
    err = error_of(lambda: w(inst, '<service xtkschema="nms:service" _operation="merge" name="x"/>'))
    assert "Invalid value 'merge' for attribute '_operation'" in err.detail_chain[0]


def test_first_complete_key_and_missing_key(inst: Instance):
    w(inst, '<store xtkschema="cus:store" code="S1" name="One"/>')
    w(inst, '<store xtkschema="cus:store" code="S1" name="Uno"/>')  # first key whose fields are present
    assert rows(inst, "cus:store", "sCode", "sName") == [("S1", "Uno")]
    err = error_of(lambda: w(inst, '<option xtkschema="xtk:option" stringValue="v"/>'))
    assert err.detail_chain[0] == "Unable to find key values for element 'Option' (document with schema 'option')"
    w(inst, '<option xtkschema="xtk:option" _operation="insertOrUpdate" _key="@name" name="MyOpt" dataType="6" '
            'stringValue="v1"/>')
    w(inst, '<option xtkschema="xtk:option" _key="@name" name="MyOpt" stringValue="v2"/>')
    assert rows(inst, "xtk:option", "sName", "iDataType", "sStringValue", "iModifiedById") == [
        ("MyOpt", 6, "v2", 1234)]


def test_links_by_key(inst: Instance):
    w(inst, '<folder xtkschema="xtk:folder" name="vip" label="VIP"/>')
    vip = folder_id(inst, "vip")
    w(inst, '<recipient xtkschema="nms:recipient" email="a@x.org"><folder name="vip" _operation="none"/></recipient>')
    assert rows(inst, "nms:recipient", "sEmail", "iFolderId") == [("a@x.org", vip)]
    # none on a missing target: error, nothing written
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="b@x.org">'
                                   '<folder name="missing" _operation="none"/></recipient>'))
    assert "Unable to find document with path 'Folder' from key 'missing'" in err.detail_chain[0]
    assert "recipient/folder" in err.detail_chain[1]
    assert rows(inst, "nms:recipient", "sEmail") == [("a@x.org",)]
    # without none the linked row is written too
    w(inst, '<recipient xtkschema="nms:recipient" email="c@x.org"><folder name="new" label="New one"/></recipient>')
    new = folder_id(inst, "new")
    assert rows(inst, "xtk:folder", "sLabel", where=lambda t: t.c.sName == "new") == [("New one",)]
    # a key through a link
    w(inst, '<recipient xtkschema="nms:recipient" _key="[folder/@name], @email" email="c@x.org" firstName="C">'
            '<folder name="new" _operation="none"/></recipient>')
    w(inst, '<recipient xtkschema="nms:recipient" _key="[folder/@name], @email" email="c@x.org" firstName="D">'
            '<folder name="vip" _operation="none"/></recipient>')
    assert rows(inst, "nms:recipient", "sEmail", "sFirstName", "iFolderId",
                where=lambda t: t.c.sEmail == "c@x.org") == sorted([("c@x.org", "C", new), ("c@x.org", "D", vip)])
    # a FK given directly
    w(inst, f'<recipient xtkschema="nms:recipient" email="e@x.org" folder-id="{vip}"/>')
    assert rows(inst, "nms:recipient", "iFolderId", where=lambda t: t.c.sEmail == "e@x.org") == [(vip,)]


def test_collections_subscriptions_and_lists(inst: Instance):
    w(inst, '<service xtkschema="nms:service" name="news" label="News"/>')
    w(inst, '<service xtkschema="nms:service" name="promo" label="Promo"/>')
    document = ('<recipient xtkschema="nms:recipient" _key="@email" email="s@x.org">'
                '<subscription><service name="news" _operation="none"/></subscription>'
                '<subscription origin="web"><service name="promo" _operation="none"/></subscription>'
                '<rcpGrpRel _key="[rcpGroup/@name]"><rcpGroup name="GRP1" label="Group 1"/></rcpGrpRel>'
                '</recipient>')
    w(inst, document)
    w(inst, document)  # idempotent: members reconciled on (recipient, service) / (group, recipient)
    (rid,), = rows(inst, "nms:recipient", "iRecipientId")
    subs = rows(inst, "nms:subscription", "iRecipientId", "sOrigin")
    assert subs == [(rid, None), (rid, "web")]
    assert rows(inst, "nms:group", "sName", "sLabel") == [("GRP1", "Group 1")]
    assert rows(inst, "nms:rcpGrpRel", "iRecipientId") == [(rid,)]
    # deleting the recipient deletes what it owns (subscriptions and memberships), not the list
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="s@x.org" _operation="delete"/>')
    assert rows(inst, "nms:subscription", "iRecipientId") == []
    assert rows(inst, "nms:rcpGrpRel", "iRecipientId") == []
    assert rows(inst, "nms:group", "sName") == [("GRP1",)]


def test_member_operations(inst: Instance):
    w(inst, '<service xtkschema="nms:service" name="news"/>')
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="m@x.org">'
            '<subscription><service name="news" _operation="none"/></subscription></recipient>')
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="m@x.org" _operation="none">'
            '<subscription _operation="delete"><service name="news" _operation="none"/></subscription></recipient>')
    assert rows(inst, "nms:subscription", "iServiceId") == []


def test_integrity_define_and_normal(inst: Instance):
    w(inst, '<folder xtkschema="xtk:folder" name="f1"/>')
    w(inst, '<recipient xtkschema="nms:recipient" email="r@x.org"><folder name="f1" _operation="none"/></recipient>')
    err = error_of(lambda: w(inst, '<folder xtkschema="xtk:folder" name="f1" _operation="delete"/>'))
    assert "integrity 'define'" in err.detail_chain[0]
    assert rows(inst, "xtk:folder", "sName", where=lambda t: t.c.sName == "f1") == [("f1",)]
    w(inst, '<folder xtkschema="xtk:folder" name="f2"/>')
    w(inst, '<profile xtkschema="tst:profile" code="P1"><folder name="f2" _operation="none"/></profile>')
    assert rows(inst, "tst:profile", "iFolderId")[0][0] == folder_id(inst, "f2")
    w(inst, '<folder xtkschema="xtk:folder" name="f2" _operation="delete"/>')  # normal: FK reset to 0
    assert rows(inst, "tst:profile", "sCode", "iFolderId") == [("P1", 0)]


# --- values ---------------------------------------------------------------------------------------


def test_enumerations_types_and_unknown_names(inst: Instance):
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="x@x.org" gender="x"/>'))
    assert err.detail_chain[0] == ("The value 'x' is not valid for the 'nms:recipient:gender' enumeration "
                                   "of the '@gender' field")
    w(inst, '<recipient xtkschema="nms:recipient" email="g@x.org" gender="female" loyaltyTier="gold"/>')
    w(inst, '<recipient xtkschema="nms:recipient" email="h@x.org" gender="1" blackList="true"/>')
    assert rows(inst, "nms:recipient", "sEmail", "iGender", "iLoyaltyTier", "iBlackList") == [
        ("g@x.org", 2, 2, 0), ("h@x.org", 1, 0, 1)]
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" loyaltyPoints="abc"/>'))
    assert "@loyaltyPoints" in err.detail_chain[0] and "not an integer" in err.detail_chain[0]
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="' + "a" * 129 + '"/>'))
    assert "too long (129 characters, at most 128)" in err.detail_chain[0]
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" nickname="x"/>'))
    assert err.detail_chain[0] == "Attribute 'nickname' unknown (see definition of schema 'Recipients (nms:recipient)')"
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient"><x/></recipient>'))
    assert err.detail_chain[0] == "Element 'x' unknown (see definition of schema 'Recipients (nms:recipient)')"
    err = error_of(lambda: w(inst, '<recipient email="x"/>'))
    assert "has no 'xtkschema' attribute" in err.detail_chain[0]
    # calculated fields are ignored, so a queried document can be written back
    w(inst, '<recipient xtkschema="nms:recipient" email="g@x.org" _key="@email" domain="x.org" age="3"/>')
    assert rows(inst, "nms:recipient", "sEmail") == [("g@x.org",), ("h@x.org",)]


def test_xml_fields_and_collections(inst: Instance):
    w(inst, '<profile xtkschema="tst:profile" code="P1" level="high" note="n1" score="7" seen="2024-01-02T03:04:05Z">'
            '<prefs color="red"><pref name="a" value="1"/><pref name="b" value="2"/></prefs>'
            '<comment>Hello &amp; bye</comment><extra><any thing="1"><deep/></any></extra></profile>')
    memo = persist.xmldata.read_memo(rows(inst, "tst:profile", "mData")[0][0])
    assert memo is not None and memo.tag == "profile"
    assert (memo.get("note"), memo.get("score"), memo.get("seen")) == ("n1", "7", "2024-01-02 03:04:05.000Z")
    assert [(p.get("name"), p.get("value")) for p in memo.findall("prefs/pref")] == [("a", "1"), ("b", "2")]
    assert memo.findtext("comment") == "Hello & bye" and memo.find("extra/any/deep") is not None
    assert rows(inst, "tst:profile", "sLevel") == [("H",)]
    # patch: a collection without _operation replaces the stored one; other fields are kept
    w(inst, '<profile xtkschema="tst:profile" code="P1" note="n2"><prefs><pref name="c" value="3"/></prefs></profile>')
    memo = persist.xmldata.read_memo(rows(inst, "tst:profile", "mData")[0][0])
    assert (memo.get("note"), memo.get("score"), memo.find("prefs").get("color")) == ("n2", "7", "red")
    assert [p.get("name") for p in memo.findall("prefs/pref")] == ["c"]
    # every member with _operation: per-element merge
    w(inst, '<profile xtkschema="tst:profile" code="P1"><prefs>'
            '<pref _operation="insert" name="d" value="4"/><pref _operation="update" name="c" value="33"/>'
            '<pref _operation="delete" name="zz"/></prefs></profile>')
    memo = persist.xmldata.read_memo(rows(inst, "tst:profile", "mData")[0][0])
    assert [(p.get("name"), p.get("value")) for p in memo.findall("prefs/pref")] == [("c", "33"), ("d", "4")]
    assert all(p.get("_operation") is None for p in memo.iter())
    w(inst, '<profile xtkschema="tst:profile" code="P1"><prefs><pref _operation="delete" name="c"/></prefs></profile>')
    memo = persist.xmldata.read_memo(rows(inst, "tst:profile", "mData")[0][0])
    assert [p.get("name") for p in memo.findall("prefs/pref")] == ["d"]
    err = error_of(lambda: w(inst, '<profile xtkschema="tst:profile" code="P1"><prefs><pref bad="1"/></prefs></profile>'))
    assert err.detail_chain[0] == "Attribute 'bad' unknown (see definition of schema 'Profiles (tst:profile)')"
    err = error_of(lambda: w(inst, '<profile xtkschema="tst:profile" code="P1" score="x"/>'))
    assert "@score" in err.detail_chain[0]


# --- errors, atomicity --------------------------------------------------------------------------


def _collection(n: int, bad: int | None = None) -> str:
    items = [f'<recipient _key="@email" email="r{i}@x.org" firstName="F{i}" gender="{"nope" if i == bad else 1}"/>'
             for i in range(n)]
    return '<recipient-collection xtkschema="nms:recipient">' + "".join(items) + "</recipient-collection>"


def test_collection_validation_failure_writes_nothing(inst: Instance):
    err = error_of(lambda: wc(inst, _collection(1000, bad=500)))
    assert err.detail_chain[0].startswith("The value 'nope' is not valid")
    assert "recipient[501]" in err.detail_chain[1]
    assert rows(inst, "nms:recipient", "sEmail") == []
    wc(inst, _collection(1000))
    assert len(rows(inst, "nms:recipient", "sEmail")) == 1000


def test_database_failure_mid_collection_writes_nothing(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<store xtkschema="cus:store" code="S500" name="taken"/>')
    stores = "".join(f'<store _operation="insert" code="S{i}"/>' for i in range(1000))
    err = error_of(lambda: wc(inst, f'<store-collection xtkschema="cus:store">{stores}</store-collection>'))
    assert err.detail_chain[0] == "A 'Store' with the same key 'S500' already exists."
    # the same, found by the database itself (the pre-check is switched off)
    monkeypatch.setattr("opencampaign.query.write.check_unique_keys", lambda plan: None)
    err = error_of(lambda: wc(inst, f'<store-collection xtkschema="cus:store">{stores}</store-collection>'))
    assert err.detail_chain[0] == "A 'Store' with the same key 'S500' already exists."
    assert err.detail_chain[1][:10] in ("PGS-220000", "ODB-240000")
    assert rows(inst, "cus:store", "sCode") == [("S500",)]


def test_engine_unique_violation_is_mapped(inst: Instance):
    """Each engine's duplicate-key error becomes Campaign's message (run below the pre-check)."""
    w(inst, '<service xtkschema="nms:service" name="SVC4"/>')
    schema = inst.registry.get("nms:service")
    with persist.Plan(inst.storage, inst.registry, CTX) as plan:
        statement = persist.Statement("insert", schema, plan.role(schema), plan.table(schema), ["iServiceId"],
                                      rows=[{"iServiceId": 99999, "sName": "SVC4"}])
    role = statement.role
    with inst.storage.engine(role).connect() as conn:
        with pytest.raises(sa.exc.IntegrityError) as info:
            persist.run_statement(conn, statement)
        mapped = persist.map_database_error(info.value, statement, inst.storage.dialect(role), conn)
        conn.rollback()
    assert mapped.lines[0] == "A 'Service' with the same key 'SVC4' already exists."
    assert mapped.lines[1].startswith("PGS-220000" if inst.storage.dialect(role) == "postgresql" else "ODB-240000")


def test_cross_database_commit_failure_is_compensated(inst: Instance):
    if inst.storage.single:
        pytest.skip("one database: one transaction")
    w(inst, '<folder xtkschema="xtk:folder" name="shared" label="Before"/>')
    cloud = inst.storage.engine(CLOUD)

    def refuse(conn):  # noqa: ANN001
        raise RuntimeError("simulated cloud commit failure")

    sa.event.listen(cloud, "commit", refuse)
    try:
        err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="z@x.org">'
                                       '<folder name="shared" label="After"/></recipient>'))
    finally:
        sa.event.remove(cloud, "commit", refuse)
    assert "nothing was written" in "\n".join(err.detail_chain)
    assert rows(inst, "xtk:folder", "sLabel", where=lambda t: t.c.sName == "shared") == [("Before",)]
    assert rows(inst, "nms:recipient", "sEmail") == []
    # a new folder inserted by the failed write is removed again
    sa.event.listen(cloud, "commit", refuse)
    try:
        error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="z@x.org"><folder name="brand-new"/>'
                                 '</recipient>'))
    finally:
        sa.event.remove(cloud, "commit", refuse)
    assert rows(inst, "xtk:folder", "sName", where=lambda t: t.c.sName == "brand-new") == []


def test_local_write_refreshes_the_cloud_replica(inst: Instance):
    w(inst, '<service xtkschema="nms:service" name="replicated" label="R"/>')
    assert rows(inst, "nms:service", "sName", "sLabel", role=CLOUD) == [("replicated", "R")]


def test_hostile_input_is_plain_data(inst: Instance):
    nasty = "x'); DROP TABLE NmsRecipient; --&quot;&lt;&gt;&amp;"
    w(inst, f'<recipient xtkschema="nms:recipient" _key="@email" email="{nasty}" lastName="O\'Brien"/>')
    w(inst, f'<recipient xtkschema="nms:recipient" _key="@email" email="{nasty}" firstName="again"/>')
    assert rows(inst, "nms:recipient", "sEmail", "sLastName", "sFirstName") == [
        ("x'); DROP TABLE NmsRecipient; --\"<>&", "O'Brien", "again")]
    big = "y" * 200_000
    w(inst, f'<profile xtkschema="tst:profile" code="BIG"><comment>{big}</comment></profile>')
    memo = persist.xmldata.read_memo(rows(inst, "tst:profile", "mData")[0][0])
    assert memo.findtext("comment") == big
    err = error_of(lambda: w(inst, f'<profile xtkschema="tst:profile" code="BIG" note="{big}"/>'))
    assert "too long (200000 characters, at most 255)" in err.detail_chain[0]
    err = error_of(lambda: w(inst, '<!DOCTYPE x [<!ENTITY e "boom">]><recipient xtkschema="nms:recipient" '
                                   'email="&e;"/>'))
    assert "DTD" in err.detail_chain[0]
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" email="unterminated'))
    assert err.code == "XSV-350023"
    err = error_of(lambda: w(inst, '<recipient xtkschema="x:y"/>'))
    assert err.code == "XSV-350000"
    err = error_of(lambda: w(inst, '<recipient xtkschema="nms:recipient" _key="@email; DROP TABLE x" email="a"/>'))
    assert "unknown" in err.detail_chain[0]


def test_simplejson_documents(inst: Instance):
    w(inst, {"xtkschema": "nms:recipient", "_key": "@email", "email": "j@x.org", "firstName": "J",
             "location": {"city": "Lyon"}, "folder": {"_operation": "none", "name": "nmsRootRecipient"}})
    wc(inst, {"xtkschema": "nms:recipient", "recipient": [{"_key": "@email", "email": "j@x.org", "lastName": "K"},
                                                          {"email": "k@x.org"}]})
    assert rows(inst, "nms:recipient", "sEmail", "sFirstName", "sLastName", "sCity") == [
        ("j@x.org", "J", "K", "Lyon"), ("k@x.org", None, None, None)]


def test_same_key_twice_in_one_collection_updates_the_first(inst: Instance):
    wc(inst, '<c xtkschema="nms:recipient"><recipient _key="@email" email="d@x.org" firstName="A"/>'
             '<recipient _key="@email" email="d@x.org" lastName="B"/></c>')
    assert rows(inst, "nms:recipient", "sEmail", "sFirstName", "sLastName") == [("d@x.org", "A", "B")]
    err = error_of(lambda: wc(inst, '<c xtkschema="nms:service"><service _operation="insert" name="dup"/>'
                                    '<service _operation="insert" name="dup"/></c>'))
    assert err.detail_chain[0] == "A 'Service' with the same key 'dup' already exists."
    assert rows(inst, "nms:service", "sName") == []


def test_key_with_id_zero_updates_the_matched_row(inst: Instance):
    """id="0" means "no id" (docs/write.md "Reconciliation"): beside a `_key` that matches a
    row, that row is updated and keeps its id; the id-0 row is left alone."""
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="z@x.org" firstName="Z"/>')
    (rid,), = rows(inst, "nms:recipient", "iRecipientId")
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" id="0" email="z@x.org" lastName="Zed"/>')
    assert rows(inst, "nms:recipient", "iRecipientId", "sEmail", "sFirstName", "sLastName") == [
        (rid, "z@x.org", "Z", "Zed")]
    # in a collection: a stored row, then a row the collection inserts and matches again
    wc(inst, '<c xtkschema="nms:recipient"><recipient _key="@email" id="0" email="z@x.org" firstName="Z2"/>'
             '<recipient _key="@email" id="0" email="n@x.org" firstName="N"/>'
             '<recipient _key="@email" id="" email="n@x.org" lastName="N2"/></c>')
    (zid, z_first), (nid, n_first, n_last) = (
        rows(inst, "nms:recipient", "iRecipientId", "sFirstName", where=lambda t: t.c.sEmail == "z@x.org")[0],
        rows(inst, "nms:recipient", "iRecipientId", "sFirstName", "sLastName", where=lambda t: t.c.sEmail == "n@x.org")[0])
    assert (zid, z_first) == (rid, "Z2") and nid not in (0, rid) and (n_first, n_last) == ("N", "N2")
    table = inst.storage.table("nms:recipient")
    with inst.storage.engine_for("nms:recipient").connect() as conn:
        assert conn.execute(sa.select(table.c.sEmail).where(table.c.iRecipientId == 0)).all() == [(None,)]


def test_read_back_through_querydef(inst: Instance):
    from opencampaign.query.querydef import execute_query

    w(inst, '<recipient xtkschema="nms:recipient" email="q@x.org" gender="female"><location city="Paris"/>'
            '</recipient>')
    w(inst, '<profile xtkschema="tst:profile" code="P1" note="n1" score="7"><prefs color="red"/></profile>')
    recipients = execute_query(inst.storage, inst.registry, '<queryDef schema="nms:recipient" operation="select">'
                               '<select><node expr="@email"/><node expr="@gender"/><node expr="location/@city"/>'
                               '</select></queryDef>', CTX)
    assert etree.tostring(recipients) == (b'<recipient-collection><recipient email="q@x.org" gender="2">'
                                          b'<location city="Paris"/></recipient></recipient-collection>')
    profiles = execute_query(inst.storage, inst.registry, '<queryDef schema="tst:profile" operation="select">'
                             '<select><node expr="@code"/><node expr="@note"/><node expr="@score"/>'
                             '<node expr="prefs/@color"/></select></queryDef>', CTX)
    assert etree.tostring(profiles) == (b'<profile-collection><profile code="P1" note="n1" score="7">'
                                        b'<prefs color="red"/></profile></profile-collection>')


def test_same_stored_values_on_every_engine(inst: Instance):
    """One document, one expected table content, whatever the engine."""
    wc(inst, '<store-collection xtkschema="cus:store">'
             '<store code="A" name="Ann\'s &amp; co" opened="2001/02/03" surface="12.5"><address city="Nice"/></store>'
             '<store code="B" surface="1e3" opened="2020-12-31T23:59:59Z"/>'
             '<store code="C" name="" surface=""/>'
             '</store-collection>')
    got = [(code, name, None if opened is None else str(opened)[:10], surface, city)
           for code, name, opened, surface, city in rows(inst, "cus:store", "sCode", "sName", "tsOpened", "dSurface",
                                                          "sCity")]
    assert got == [("A", "Ann's & co", "2001-02-03", 12.5, "Nice"), ("B", None, "2020-12-31", 1000.0, None),
                   ("C", None, None, 0.0, None)]


def test_write_access_filter(inst: Instance):
    """xtk:operator's writeAccess filter: only admin or operatorWrite may write operators."""
    user = CallContext(login="user", login_id=55, rights=frozenset())
    err = error_of(lambda: w(inst, '<operator xtkschema="xtk:operator" name="hacker"/>', user))
    assert "not allowed to modify documents of type 'Operators (xtk:operator)'" in err.detail_chain[0]
    w(inst, '<operator xtkschema="xtk:operator" name="helper"/>',
      CallContext(login="ops", login_id=56, rights=frozenset({"operatorWrite"})))
    assert rows(inst, "xtk:operator", "sName", where=lambda t: t.c.sName != "admin") == [("helper",)]
    w(inst, '<recipient xtkschema="nms:recipient" email="u@x.org"/>', user)  # no filter on recipients


def test_operator_passwords_are_hashed_and_secrets_refused(inst: Instance):
    """access/@password is stored as an argon2 hash (insert and update; a hash is kept as is);
    a technical account's @secretHash cannot be written through Write."""
    from opencampaign.security.passwords import hash_password, verify_password

    w(inst, '<operator xtkschema="xtk:operator" name="pw"><access password="s3cret!"/></operator>')
    stored = rows(inst, "xtk:operator", "sPassword", where=lambda t: t.c.sName == "pw")[0][0]
    assert stored.startswith("$argon2") and "s3cret!" not in stored
    assert verify_password(stored, "s3cret!")
    w(inst, {"xtkschema": "xtk:operator", "_key": "@name", "name": "pw", "access": {"password": "changed"}})
    stored = rows(inst, "xtk:operator", "sPassword", where=lambda t: t.c.sName == "pw")[0][0]
    assert stored.startswith("$argon2") and verify_password(stored, "changed")
    ready = hash_password("prehashed")
    w(inst, f'<operator xtkschema="xtk:operator" _key="@name" name="pw"><access password="{ready}"/></operator>')
    assert rows(inst, "xtk:operator", "sPassword", where=lambda t: t.c.sName == "pw")[0][0] == ready
    wc(inst, '<operator-collection xtkschema="xtk:operator"><operator name="pw2"><access password="a"/></operator>'
             '<operator name="pw3"><access password="b"/></operator></operator-collection>')
    for name, clear in (("pw2", "a"), ("pw3", "b")):
        stored = rows(inst, "xtk:operator", "sPassword", where=lambda t, n=name: t.c.sName == n)[0][0]
        assert stored.startswith("$argon2") and verify_password(stored, clear)

    err = error_of(lambda: w(inst, '<technicalAccount xtkschema="xtk:technicalAccount" name="ta" clientId="c1" '
                                   'secretHash="clear"/>'))
    assert err.code == "XSV-350023"
    assert "cannot be written through Write" in err.detail_chain[0]
    assert rows(inst, "xtk:technicalAccount", "sName") == []
    w(inst, '<technicalAccount xtkschema="xtk:technicalAccount" name="ta" clientId="c1"/>')  # other fields: fine
    assert rows(inst, "xtk:technicalAccount", "sName", "sSecretHash") == [("ta", None)]
