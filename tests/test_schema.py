"""Loading, extending and compiling schemas: built-ins, custom folders, and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from opencampaign.schema.errors import SchemaError
from opencampaign.schema.registry import load_registry
from opencampaign.storage.placement import CLOUD, LOCAL, Placement, home_of

from .conftest import CUSTOM_SCHEMAS

REQUIRED = [
    "xtk:session", "xtk:persist", "xtk:queryDef", "xtk:operator", "xtk:folder", "xtk:option", "xtk:workflow",
    "xtk:javascript", "nms:recipient", "nms:service", "nms:subscription", "nms:subHisto", "nms:delivery",
    "nms:broadLogRcp", "nms:trackingLogRcp", "nms:rtEvent", "nms:batchEvent", "nms:extAccount", "nms:seedMember",
]


@pytest.fixture(scope="module")
def builtin():
    return load_registry()


@pytest.fixture(scope="module")
def custom():
    return load_registry([CUSTOM_SCHEMAS])


def test_every_required_builtin_schema_is_shipped(builtin):
    missing = [sid for sid in REQUIRED if sid not in builtin]
    assert not missing
    assert builtin.find("xtk:operatorGroup") or builtin.find("xtk:group")


def test_recipient_follows_campaign_sql_naming(builtin):
    recipient = builtin.get("nms:recipient")
    assert recipient.sqltable == "NmsRecipient"
    columns = {a.xpath: a.sqlname for a in recipient.sql_attributes()}
    assert columns["@id"] == "iRecipientId"
    assert columns["@email"] == "sEmail"
    assert columns["@folder-id"] == "iFolderId"
    assert columns["@created"] == "tsCreated"
    assert columns["@gender"] == "iGender"
    assert recipient.primary_key is not None and recipient.primary_key.fields == ["@id"]
    folder_link = recipient.node("folder")
    assert folder_link.is_link and folder_link.target == "xtk:folder"
    assert [(j.src, j.dst) for j in folder_link.joins] == [("@folder-id", "@id")]
    domain = recipient.attribute("@domain")
    assert domain is not None and domain.is_calculated and domain.sqlname is None


def test_enumerations_keep_their_values(builtin):
    gender = builtin.get("nms:recipient").enumerations["gender"]
    assert {v.name: v.value for v in gender.values}.items() >= {"male": "1", "female": "2"}.items()
    ext_account = builtin.get("nms:extAccount")
    assert "encryptionType" in ext_account.enumerations


def test_session_declares_methods_for_clients(builtin):
    session = builtin.get("xtk:session")
    assert not session.has_table
    logon = session.method("Logon")
    assert logon is not None and logon.static
    assert [p.name for p in logon.outputs][:1] == ["sessionToken"]
    assert any(m.interface == "persist" and m.name == "Write" for m in session.methods)
    compiled = session.compiled_xml
    assert compiled.tag == "schema" and compiled.get("implements") == "xtk:persist"
    assert compiled.find("interface[@name='persist']") is not None
    assert compiled.find("methods/method[@name='GetOption']") is not None


def test_extension_merges_into_base_and_keeps_base_id(custom):
    recipient = custom.get("nms:recipient")
    points = recipient.attribute("@loyaltyPoints")
    assert points is not None and points.sqlname == "iLoyaltyPoints" and points.belongs_to == "cus:recipient"
    assert recipient.attribute("@loyaltyTier").enum == "nms:recipient:loyaltyTier"
    assert "cus:recipient" in recipient.extensions
    assert "cus:recipient" not in custom  # extensions are not schemas of their own
    compiled = recipient.compiled_xml
    assert compiled.get("dependingSchemas") == "cus:recipient"
    assert compiled.get("extendedSchema") is None
    assert compiled.get("md5") == recipient.md5
    store_link = recipient.node("store")
    assert store_link.target == "cus:store" and store_link.cardinality == "N-1"
    assert recipient.attribute("@store-id").sqlname == "iStoreId"
    assert any(ix.name == "storeId" for ix in recipient.dbindexes)


def test_reverse_links_are_generated_in_the_target(custom):
    store = custom.get("cus:store")
    reverse = store.node("customer")
    assert reverse.is_link and reverse.unbound and reverse.target == "nms:recipient" and reverse.reverse
    assert [(j.src, j.dst) for j in reverse.joins] == [("@id", "@store-id")]
    assert store.attribute("address/@city").sqlname == "sCity"


def test_source_schema_is_kept_for_clients(custom):
    source = custom.source("cus:recipient")
    assert source is not None and source.root.get("extendedSchema") == "nms:recipient"


def test_placement_follows_ffda_rules(custom):
    assert home_of(custom.get("nms:recipient")) == CLOUD
    assert home_of(custom.get("nms:subscription")) == CLOUD
    assert home_of(custom.get("xtk:operator")) == LOCAL
    assert home_of(custom.get("nms:service")) == LOCAL
    assert home_of(custom.get("cus:store")) == CLOUD  # new custom tables default to the cloud, as in v8
    placement = Placement(custom, single_database=False)
    assert placement.is_replicated("xtk:folder")  # recipients join to folders inside the cloud engine
    assert placement.is_replicated("nms:service")
    assert not placement.is_replicated("xtk:workflow")
    assert not Placement(custom, single_database=True).replicated


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


BROKEN = {
    "unknown type": (
        '<srcSchema name="a" namespace="cus"><element name="a" autopk="true"><attribute name="x" type="gigantic"/></element></srcSchema>',
        "attribute[@name='x']", "unknown type 'gigantic'"),
    "link to a missing schema": (
        '<srcSchema name="a" namespace="cus"><element name="a" autopk="true"><element name="b" type="link" target="cus:nothere"/></element></srcSchema>',
        "element[@name='b']", "link to unknown schema 'cus:nothere'"),
    "duplicate attribute": (
        '<srcSchema name="a" namespace="cus"><element name="a" autopk="true"><attribute name="x"/><attribute name="x"/></element></srcSchema>',
        "attribute[@name='x']", "duplicate attribute 'x'"),
    "key on a missing field": (
        '<srcSchema name="a" namespace="cus"><element name="a"><key name="k"><keyfield xpath="@nope"/></key></element></srcSchema>',
        "key[@name='k']", "refers to missing field '@nope'"),
    "extension of an unknown schema": (
        '<srcSchema name="a" namespace="cus" extendedSchema="nms:nothere"><element name="a"/></srcSchema>',
        "/srcSchema", "extends unknown schema 'nms:nothere'"),
    "malformed XML": ('<srcSchema name="a" namespace="cus"><element name="a">', "/", "(1:"),
    "DTD": ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><srcSchema name="a" namespace="cus"/>', "/",
            "DTD and entity declarations are not allowed"),
    "reserved namespace": ('<srcSchema name="a" namespace="nms"><element name="a" autopk="true"/></srcSchema>',
                           "/srcSchema", "namespace 'nms' is reserved"),
    "table without key": ('<srcSchema name="a" namespace="cus"><element name="a"><attribute name="x"/></element></srcSchema>',
                          "element[@name='a']", "needs at least one <key>"),
    "unknown enumeration": (
        '<srcSchema name="a" namespace="cus"><element name="a" autopk="true"><attribute name="x" type="byte" enum="nope"/></element></srcSchema>',
        "attribute[@name='x']", "unknown enumeration 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_schema_is_refused_with_file_xpath_and_reason(tmp_path: Path, case: str):
    text, xpath, reason = BROKEN[case]
    _write(tmp_path, "broken.xml", text)
    with pytest.raises(SchemaError) as info:
        load_registry([tmp_path])
    problem = info.value.problems[0]
    assert problem.source == str(tmp_path / "broken.xml")
    assert xpath in problem.xpath
    assert reason in problem.message
    assert str(tmp_path / "broken.xml") in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path):
    _write(tmp_path, "one.xml", BROKEN["unknown type"][0])
    _write(tmp_path, "two.xml", BROKEN["link to a missing schema"][0].replace('name="a"', 'name="b"'))
    with pytest.raises(SchemaError) as info:
        load_registry([tmp_path])
    assert {Path(p.source).name for p in info.value.problems} == {"one.xml", "two.xml"}


def test_schema_defined_twice_is_refused(tmp_path: Path):
    text = '<srcSchema name="a" namespace="cus"><element name="a" autopk="true"/></srcSchema>'
    _write(tmp_path, "one.xml", text)
    sub = tmp_path / "sub"
    sub.mkdir()
    _write(sub, "two.xml", text)
    with pytest.raises(SchemaError, match="already defined"):
        load_registry([tmp_path])


def test_extension_operations_update_and_delete(tmp_path: Path):
    _write(tmp_path, "ext.xml", """
<srcSchema name="recipient" namespace="cus" extendedSchema="nms:recipient">
  <element name="recipient">
    <attribute name="email" _operation="update" length="120" label="E-mail address"/>
    <attribute name="fax" _operation="delete"/>
  </element>
</srcSchema>""")
    recipient = load_registry([tmp_path]).get("nms:recipient")
    email = recipient.attribute("@email")
    assert email.length == 120 and email.label == "E-mail address" and email.sqlname == "sEmail"
    assert recipient.attribute("@fax") is None


def test_compiled_xml_is_serialisable_and_stable(builtin):
    again = load_registry()
    for schema in builtin:
        assert etree.tostring(schema.compiled_xml) == etree.tostring(again.get(schema.id).compiled_xml)
        assert len(schema.md5) == 32
